// Command podagent runs inside a simulated pod's network namespace (started with
// `ip netns exec`). It serves the pod's ports and answers probe requests from the test
// harness, so that a test can ask "can pod A reach B:port/proto?" with real packets.
//
// Serving: every TCP port greets each connection with one line "podagent <name>", then
// answers each "ping <seq>" line with "pong <seq> <name>" until the client closes;
// every UDP port answers a "ping <seq>" datagram the same way and any other datagram
// with the greeting; every SCTP port answers an INIT chunk with an INIT-ACK whose state
// cookie carries the name (see sctp.go: the kernel here has no SCTP sockets, so SCTP
// is spoken over raw IP sockets). All ports listen on IPv4 and IPv6.
//
// Control: requests arrive on stdin and answers leave on stdout, one JSON object per
// line (see request and response). The first line written is {"ready":true}, after
// every listener is bound. A request is a probe (one new connection), or opens or
// closes a session (a long-lived flow, see session.go) whose progress the agent reports
// as events. The agent ends when stdin is closed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nftwarden/nftwarden/integration/internal/agentwire"
)

// request and response are the protocol's (package agentwire).
type (
	request  = agentwire.Request
	response = agentwire.Response
)

const greetingPrefix = "podagent "

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "podagent:", err)
		os.Exit(1)
	}
}

func run() error {
	name := flag.String("name", "", "name this pod answers with (namespace/pod)")
	tcp := flag.String("tcp", "", "comma-separated TCP ports to serve")
	udp := flag.String("udp", "", "comma-separated UDP ports to serve")
	sctp := flag.String("sctp", "", "comma-separated SCTP ports to serve")
	flag.Parse()
	if *name == "" {
		return errors.New("-name is required")
	}
	greeting := []byte(greetingPrefix + *name + "\n")

	tcpPorts, err := parsePorts(*tcp)
	if err != nil {
		return fmt.Errorf("-tcp: %w", err)
	}
	udpPorts, err := parsePorts(*udp)
	if err != nil {
		return fmt.Errorf("-udp: %w", err)
	}
	sctpPorts, err := parsePorts(*sctp)
	if err != nil {
		return fmt.Errorf("-sctp: %w", err)
	}
	for _, p := range tcpPorts {
		// ":port" listens on IPv4 and IPv6 at once.
		l, err := net.Listen("tcp", ":"+strconv.Itoa(int(p)))
		if err != nil {
			return fmt.Errorf("listen tcp %d: %w", p, err)
		}
		go serveTCP(l, greeting, *name)
	}
	for _, p := range udpPorts {
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(int(p)))
		if err != nil {
			return fmt.Errorf("listen udp %d: %w", p, err)
		}
		go serveUDP(pc, greeting, *name)
	}
	if len(sctpPorts) > 0 {
		for _, network := range []string{"ip4:132", "ip6:132"} {
			c, err := net.ListenIP(network, nil)
			if err != nil {
				return fmt.Errorf("listen %s (raw SCTP): %w", network, err)
			}
			go serveSCTP(c, sctpPorts, *name)
		}
	}

	out := &writer{enc: json.NewEncoder(os.Stdout)}
	ss := &sessions{out: out, m: map[int64]*session{}}
	out.write(response{Ready: true})
	sc := bufio.NewScanner(os.Stdin)
	var wg sync.WaitGroup
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return fmt.Errorf("bad request %q: %w", sc.Text(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch req.Op {
			case agentwire.OpProbe:
				out.write(probe(req))
			case agentwire.OpOpen:
				ss.open(req)
			case agentwire.OpClose:
				ss.close(req)
			default:
				out.write(response{ID: req.ID, Error: fmt.Sprintf("unknown op %q", req.Op)})
			}
		}()
	}
	wg.Wait()
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read requests: %w", err)
	}
	return nil
}

// writer serialises answers written by concurrent probes.
type writer struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *writer) write(r response) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// A failed write means the harness went away; the agent ends when stdin closes.
	_ = w.enc.Encode(r)
}

func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("bad port %q", f)
		}
		ports = append(ports, uint16(n))
	}
	return ports, nil
}

// idleTimeout ends a served TCP connection on which nothing arrives for that long: a
// client whose namespace is deleted never closes its side.
const idleTimeout = time.Minute

func serveTCP(l net.Listener, greeting []byte, name string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(greeting); err != nil {
				return
			}
			// A probe reads the greeting and closes; a session sends pings.
			r := bufio.NewReader(c)
			for {
				_ = c.SetReadDeadline(time.Now().Add(idleTimeout))
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				seq, ok := strings.CutPrefix(strings.TrimSpace(line), "ping ")
				if !ok {
					return
				}
				_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write([]byte(pongLine(seq, name))); err != nil {
					return
				}
			}
		}()
	}
}

func serveUDP(pc net.PacketConn, greeting []byte, name string) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		answer := greeting
		if seq, ok := strings.CutPrefix(strings.TrimSpace(string(buf[:n])), "ping "); ok {
			answer = []byte(pongLine(seq, name))
		}
		_, _ = pc.WriteTo(answer, from)
	}
}

// probe runs one request; an unreachable peer is a normal answer (OK false), not an
// error of the agent.
func probe(req request) response {
	resp := response{ID: req.ID}
	addr, err := netip.ParseAddr(req.Addr)
	if err != nil {
		resp.Error = fmt.Sprintf("bad address %q: %v", req.Addr, err)
		return resp
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout(req))
	defer cancel()
	var peer string
	switch req.Proto {
	case "tcp":
		peer, err = probeTCP(ctx, addr, req.Port)
	case "udp":
		peer, err = probeUDP(ctx, addr, req.Port)
	case "sctp":
		peer, err = probeSCTP(ctx, addr, req.Port)
	default:
		err = fmt.Errorf("unknown protocol %q", req.Proto)
	}
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	resp.OK, resp.Peer = true, peer
	return resp
}

// requestTimeout is the request's timeout, 1 s if it has none or an absurd one.
func requestTimeout(req request) time.Duration {
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	if timeout <= 0 || timeout > 30*time.Second {
		timeout = time.Second
	}
	return timeout
}

func probeTCP(ctx context.Context, addr netip.Addr, port uint16) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, port).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read greeting: %w", err)
	}
	return parseGreeting(line)
}

func probeUDP(ctx context.Context, addr netip.Addr, port uint16) (string, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	// UDP has no handshake: send again every 200 ms until an answer or the deadline.
	for {
		if _, err := c.Write([]byte("probe\n")); err != nil {
			return "", err
		}
		next := time.Now().Add(200 * time.Millisecond)
		if dl, ok := ctx.Deadline(); ok && dl.Before(next) {
			next = dl
		}
		_ = c.SetReadDeadline(next)
		n, err := c.Read(buf)
		if err == nil {
			return parseGreeting(string(buf[:n]))
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("no answer: %w", ctx.Err())
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			// ECONNREFUSED from an ICMP port unreachable: the path is open but
			// nothing listens; report it like the other protocols do.
			return "", err
		}
	}
}

func parseGreeting(s string) (string, error) {
	peer, ok := strings.CutPrefix(strings.TrimSpace(s), greetingPrefix)
	if !ok {
		return "", fmt.Errorf("unexpected greeting %q", s)
	}
	return peer, nil
}
