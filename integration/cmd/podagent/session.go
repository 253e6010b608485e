package main

// Sessions: long-lived flows.
//
// A session is one TCP connection, or one connected UDP socket (so one 5-tuple), from
// this pod to a serving agent, on which the agent exchanges a small request and its
// answer every interval:
//
//	request  "ping <seq>\n"
//	answer   "pong <seq> <name>\n"   (name: the serving pod, namespace/pod)
//
// A TCP exchange fails when the answer does not arrive within the timeout (TCP
// retransmits meanwhile) or the connection breaks. A UDP exchange resends the same
// request every udpTry until the timeout and fails only if no answer came: one lost
// datagram is not a broken flow. An answer from another pod than the first one is a
// failure too. The first failure ends the session: it is reported as an event with the
// time the failed exchange started, and no exchange is tried after it.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// udpTry is how long a UDP exchange waits for its answer before sending the request
// again.
const udpTry = 250 * time.Millisecond

// openTimeout bounds the connection and first exchange of a session: the first packets
// between two new namespaces wait for neighbour resolution (proxy ARP answers after a
// random delay of up to 0.8 s).
const openTimeout = 5 * time.Second

// exchanger is one open flow that can run an exchange.
type exchanger interface {
	// exchange sends request seq and waits for its answer; it returns the name of the
	// pod that answered.
	exchange(seq uint64) (string, error)
	Close() error
}

func pingLine(seq uint64) string { return "ping " + strconv.FormatUint(seq, 10) + "\n" }

func pongLine(seq, name string) string { return "pong " + seq + " " + name + "\n" }

// parsePong returns the sequence number and name of an answer line.
func parsePong(line string) (uint64, string, error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "pong" {
		return 0, "", fmt.Errorf("unexpected answer %q", line)
	}
	seq, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("unexpected answer %q: %w", line, err)
	}
	return seq, f[2], nil
}

// tcpExchanger is a TCP connection to a serving agent, past its greeting.
type tcpExchanger struct {
	c       net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

func dialTCPSession(ctx context.Context, ap netip.AddrPort, timeout time.Duration) (*tcpExchanger, string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		return nil, "", err
	}
	x := &tcpExchanger{c: c, r: bufio.NewReader(c), timeout: timeout}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	line, err := x.r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("read greeting: %w", err)
	}
	peer, err := parseGreeting(line)
	if err != nil {
		c.Close()
		return nil, "", err
	}
	return x, peer, nil
}

func (x *tcpExchanger) exchange(seq uint64) (string, error) {
	_ = x.c.SetDeadline(time.Now().Add(x.timeout))
	if _, err := x.c.Write([]byte(pingLine(seq))); err != nil {
		return "", err
	}
	line, err := x.r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("no answer to ping %d: %w", seq, err)
	}
	got, name, err := parsePong(line)
	if err != nil {
		return "", err
	}
	if got != seq {
		return "", fmt.Errorf("answer to ping %d, want %d", got, seq)
	}
	return name, nil
}

func (x *tcpExchanger) Close() error { return x.c.Close() }

// udpExchanger is a connected UDP socket: every datagram has the same 5-tuple.
type udpExchanger struct {
	c       *net.UDPConn
	timeout time.Duration
	buf     []byte
}

func dialUDPSession(ap netip.AddrPort, timeout time.Duration) (*udpExchanger, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, err
	}
	return &udpExchanger{c: c, timeout: timeout, buf: make([]byte, 1500)}, nil
}

func (x *udpExchanger) exchange(seq uint64) (string, error) {
	deadline := time.Now().Add(x.timeout)
	for {
		if _, err := x.c.Write([]byte(pingLine(seq))); err != nil {
			return "", err
		}
		next := time.Now().Add(udpTry)
		if next.After(deadline) {
			next = deadline
		}
		_ = x.c.SetReadDeadline(next)
		for {
			n, err := x.c.Read(x.buf)
			if err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					return "", err
				}
				break // resend, or give up at the deadline
			}
			got, name, err := parsePong(string(x.buf[:n]))
			if err != nil {
				return "", err
			}
			if got == seq {
				return name, nil
			}
			// A late answer to an earlier try or exchange: keep waiting.
		}
		if !time.Now().Before(deadline) {
			return "", fmt.Errorf("no answer to ping %d within %s", seq, x.timeout)
		}
	}
}

func (x *udpExchanger) Close() error { return x.c.Close() }

// sessions are the open sessions of this agent, by the ID of the request that opened
// them.
type sessions struct {
	out *writer
	mu  sync.Mutex
	m   map[int64]*session
}

type session struct {
	cancel context.CancelFunc
	done   chan struct{}
	x      exchanger
}

// open establishes the flow with a first exchange (within openTimeout), answers req,
// then runs an exchange every req.IntervalMS, each within req.TimeoutMS, until closed
// or broken.
func (ss *sessions) open(req request) {
	fail := func(err error) { ss.out.write(response{ID: req.ID, Error: err.Error()}) }
	addr, err := netip.ParseAddr(req.Addr)
	if err != nil {
		fail(fmt.Errorf("bad address %q: %w", req.Addr, err))
		return
	}
	timeout := requestTimeout(req)
	interval := time.Duration(req.IntervalMS) * time.Millisecond
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	ap := netip.AddrPortFrom(addr, req.Port)
	var x exchanger
	var setTimeout func(time.Duration)
	switch req.Proto {
	case "tcp":
		dctx, cancel := context.WithTimeout(context.Background(), openTimeout)
		var t *tcpExchanger
		t, _, err = dialTCPSession(dctx, ap, openTimeout)
		cancel()
		if err == nil {
			x, setTimeout = t, func(d time.Duration) { t.timeout = d }
		}
	case "udp":
		var u *udpExchanger
		u, err = dialUDPSession(ap, openTimeout)
		if err == nil {
			x, setTimeout = u, func(d time.Duration) { u.timeout = d }
		}
	default:
		err = fmt.Errorf("sessions are TCP or UDP, not %q", req.Proto)
	}
	if err != nil {
		fail(err)
		return
	}
	peer, err := x.exchange(1)
	if err != nil {
		x.Close()
		fail(fmt.Errorf("first exchange: %w", err))
		return
	}
	setTimeout(timeout)
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{cancel: cancel, done: make(chan struct{}), x: x}
	ss.mu.Lock()
	ss.m[req.ID] = s
	ss.mu.Unlock()
	ss.out.write(response{ID: req.ID, OK: true, Peer: peer})
	ss.out.write(response{Session: req.ID, Exchanges: 1})
	go ss.run(ctx, req.ID, s, peer, interval)
}

func (ss *sessions) run(ctx context.Context, id int64, s *session, peer string, interval time.Duration) {
	defer close(s.done)
	defer s.x.Close()
	t := time.NewTicker(interval)
	defer t.Stop()
	for seq := uint64(2); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		name, err := s.x.exchange(seq)
		if ctx.Err() != nil {
			return // closed by the harness, maybe in the middle of this exchange
		}
		if err == nil && name != peer {
			err = fmt.Errorf("ping %d answered by %s, not %s", seq, name, peer)
		}
		if err != nil {
			ss.out.write(response{Session: id, Exchanges: int(seq - 1), BrokenNS: start.UnixNano(), Error: err.Error()})
			return
		}
		ss.out.write(response{Session: id, Exchanges: int(seq)})
	}
}

// close ends session req.Session and answers req once its last event is written.
func (ss *sessions) close(req request) {
	ss.mu.Lock()
	s := ss.m[req.Session]
	delete(ss.m, req.Session)
	ss.mu.Unlock()
	if s == nil {
		ss.out.write(response{ID: req.ID, Error: fmt.Sprintf("no session %d", req.Session)})
		return
	}
	s.cancel()
	// Closing the flow cuts an exchange that waits for its answer.
	_ = s.x.Close()
	<-s.done
	ss.out.write(response{ID: req.ID, OK: true})
}
