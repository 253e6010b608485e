package nfttest

// New-connection rate through a node namespace, for the benchmarks that
// compare a program against no table (nft's BenchmarkKernelConnRate and
// BenchmarkKernelDecisionMap, enforcer's BenchmarkKernelTiersConnRate). IP
// plan (one routed topology per setup, each its own namespaces, so the same
// addresses are reused):
//
//	pod a  198.19.250.10  eth0 ── veth-a ┐
//	pod b  198.19.250.11  eth0 ── veth-b ┴─ node (forwarding on), gateway 198.19.255.1
//
// Pod a opens TCP connections to a port of pod b one after another and closes
// each at once with SO_LINGER 0 (an RST: no TIME_WAIT, so the client's ports
// never run out); pod b accepts and closes. Every connection is a new
// conntrack entry in the node, so its SYN is judged by the policy chains, not
// by the established fast path. A setup derived with WithLoad opens them from
// several clients at once, or opens UDP flows instead: one datagram from a
// source port of its own to b's UDP echo server on the same port, and the
// echo.

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	// ConnRateA is the address of pod a, the client.
	ConnRateA = netip.MustParseAddr("198.19.250.10")
	// ConnRateB is the address of pod b, the server.
	ConnRateB = netip.MustParseAddr("198.19.250.11")
)

// ConnRateDeniedPort is the port of b that an isolated setup's program must
// not let a connect to (NewConnRateSetup proves it before measuring).
const ConnRateDeniedPort = 9090

// ConnRateBatch is the size of one measured batch. Batches of the setups
// alternate, so drifting load on a shared machine hits all of them alike.
const ConnRateBatch = 250

// ConnRateSetup is one node with pods a and b and what was measured on it.
type ConnRateSetup struct {
	Name      string
	Conns     int           // connections made
	Wall, CPU time.Duration // their wall and process CPU time
	SlowConns int           // connects that took a SYN retransmission (≥ 1 s)

	// Per batch, in order: wall and CPU time per connection, and the
	// process's context switches (voluntary and not) per connection: a
	// thread that sleeps and is woken again costs far more wall time than
	// the CPU it uses, so this tells a latency-bound batch from a busy one.
	BatchWall, BatchCPU, BatchSwitches []float64
	// Per batch, in order: packets the node forwarded, and packets its
	// conntrack found invalid, per connection; the machine's wake-up
	// interrupts per connection (wakeIPIs).
	BatchForwarded, BatchInvalid, BatchWakeIPIs []float64

	a, node  *NetNS
	port     uint16 // b's port the connections go to
	isolated bool   // the program must drop connections to ConnRateDeniedPort
	load     ConnRateLoad
	// nextUDPPort is the source port of the next UDP flow, shared by the
	// setups of one node (see udpFlow).
	nextUDPPort *atomic.Uint32
}

// ConnRateLoad is what the batches of a setup open.
type ConnRateLoad struct {
	// UDP: UDP flows (a datagram and its echo) instead of TCP connections.
	UDP bool
	// Workers is how many clients in pod a open them at the same time (0:
	// one).
	Workers int
	// Blocking (TCP only): each client opens its connections with
	// blocking system calls on its own thread (socket, connect, close), as
	// a C client does, instead of through Go's netpoller. A client runs on a thread
	// locked into pod a's namespace, and a goroutine of a locked thread
	// that waits for the poller puts the thread to sleep and has it woken
	// again (futex) for every connection; with one client that chain of
	// wake-ups, not the packets, sets the pace.
	Blocking bool
}

// String names the load as "tcp-1", "tcp-4", "udp-1".
func (l ConnRateLoad) String() string {
	proto := "tcp"
	if l.UDP {
		proto = "udp"
	}
	if l.Blocking {
		return fmt.Sprintf("%s-%d-blocking", proto, l.workers())
	}
	return fmt.Sprintf("%s-%d", proto, l.workers())
}

func (l ConnRateLoad) workers() int { return max(l.Workers, 1) }

// The source ports of UDP flows: a flow's conntrack entry outlives it (by
// udpConnRateTimeout), so each flow takes the next port of this range, and a
// port comes back only after as many flows as the range holds, long after
// its last entry expired. Random ephemeral ports would sometimes land on a
// live entry, and that flow would pass as established.
const (
	udpConnRateFirstPort = 20000
	udpConnRatePorts     = 40000
	udpConnRateTimeout   = "1" // seconds, both UDP conntrack timeouts of the node
)

// NewConnRateSetup wires a node with pods a and b, starts the
// accept-and-close server in b on port, and calls program (nil: no nftables
// at all) to program the node. When isolated, a connection to
// ConnRateDeniedPort must be dropped, which proves the measured connections
// really pass the policy path. A warm-up batch (neighbor entries, routes,
// caches) is made and not counted. Everything lives in namespaces of
// NewNetNS, removed at the end of the benchmark.
func NewConnRateSetup(b *testing.B, name string, program func(node *NetNS), isolated bool, port uint16) *ConnRateSetup {
	b.Helper()
	node := NewNetNS(b)
	EnableForwarding(b, node)
	pa, pb := NewNetNS(b), NewNetNS(b)
	ConnectRouted(b, node, pa, ConnRateA, netip.Addr{}, Gateway4, netip.Addr{}, "veth-a")
	ConnectRouted(b, node, pb, ConnRateB, netip.Addr{}, Gateway4, netip.Addr{}, "veth-b")

	var l net.Listener
	if err := pb.Run(func() error {
		var err error
		l, err = net.Listen("tcp", netip.AddrPortFrom(ConnRateB, port).String())
		return err
	}); err != nil {
		b.Fatalf("%s: listen in pod b: %v", name, err)
	}
	b.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // e.g. a connection reset while queued
			}
			_ = c.Close()
		}
	}()

	ServeUDPEcho(b, &Pod{Name: "b", V4: ConnRateB, NS: pb}, int(port))

	if program != nil {
		program(node)
	}
	s := &ConnRateSetup{Name: name, a: pa, node: node, port: port, isolated: isolated, nextUDPPort: new(atomic.Uint32)}
	return s.WithLoad(b, name, ConnRateLoad{})
}

// WithLoad returns a setup named name on the same node and pods as s (same
// program, same servers) whose batches open load, with nothing measured yet.
// Like NewConnRateSetup, it proves first that an isolated setup drops what
// load sends to ConnRateDeniedPort, and makes a warm-up batch.
func (s *ConnRateSetup) WithLoad(b *testing.B, name string, load ConnRateLoad) *ConnRateSetup {
	b.Helper()
	d := &ConnRateSetup{Name: name, a: s.a, node: s.node, port: s.port, isolated: s.isolated, load: load, nextUDPPort: s.nextUDPPort}
	if load.UDP {
		for _, key := range []string{"net/netfilter/nf_conntrack_udp_timeout", "net/netfilter/nf_conntrack_udp_timeout_stream"} {
			// Absent when conntrack is not loaded: no entry then outlives
			// its flow.
			if err := SetSysctl(d.node, key, udpConnRateTimeout); err != nil && !errors.Is(err, fs.ErrNotExist) {
				b.Fatalf("%s: %v", name, err)
			}
		}
	}
	if d.isolated {
		if err := d.a.Run(d.deniedProbe); err != nil {
			b.Fatalf("%s: denied probe: %v", name, err)
		}
	}
	d.batch(b, 100)
	d.Conns, d.Wall, d.CPU, d.SlowConns, d.BatchWall, d.BatchCPU, d.BatchSwitches, d.BatchForwarded, d.BatchInvalid, d.BatchWakeIPIs = 0, 0, 0, 0, nil, nil, nil, nil, nil, nil
	return d
}

// deniedProbe (run in pod a) fails unless a connection or flow of the load
// to ConnRateDeniedPort goes unanswered: dropped, not refused.
func (s *ConnRateSetup) deniedProbe() error {
	dst := netip.AddrPortFrom(ConnRateB, ConnRateDeniedPort).String()
	if !s.load.UDP {
		c, err := net.DialTimeout("tcp", dst, 300*time.Millisecond)
		if err == nil {
			c.Close()
			return fmt.Errorf("connected to a port no policy allows")
		}
		if IsTimeout(err) {
			return nil
		}
		return fmt.Errorf("want the SYN dropped (a timeout), got %w", err)
	}
	c, err := net.Dial("udp", dst)
	if err != nil {
		return err
	}
	defer c.Close()
	// Nobody listens there: a datagram let through is refused (ICMP).
	if err := EchoWithin(c, "probe", 300*time.Millisecond); !IsTimeout(err) {
		return fmt.Errorf("want the datagram dropped (no answer), got %v", err)
	}
	return nil
}

// batch opens and closes n connections (or flows) from a to b, split over
// the load's workers, each one after another.
func (s *ConnRateSetup) batch(b *testing.B, n int) {
	b.Helper()
	dst := netip.AddrPortFrom(ConnRateB, s.port)
	open := s.tcpConn
	switch {
	case s.load.UDP:
		open = s.udpFlow
	case s.load.Blocking:
		open = tcpConnBlocking
	}
	var slow atomic.Int64
	var wg sync.WaitGroup
	workers := s.load.workers()
	errs := make([]error, workers)
	n0, err := readNodeCounters(s.node)
	if err != nil {
		b.Fatal(err)
	}
	ipi0, err := wakeIPIs()
	if err != nil {
		b.Fatal(err)
	}
	c0, sw0, t0 := CPUTime(b), contextSwitches(b), time.Now()
	for w := range workers {
		share := n / workers
		if w < n%workers {
			share++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker its own thread in a's namespace (Run).
			errs[w] = s.a.Run(func() error {
				for range share {
					start := time.Now()
					if err := open(dst); err != nil {
						return err
					}
					if time.Since(start) >= time.Second {
						slow.Add(1)
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	wall, cpu, sw := time.Since(t0), CPUTime(b)-c0, contextSwitches(b)-sw0
	n1, nerr := readNodeCounters(s.node)
	ipi1, ierr := wakeIPIs()
	err = errors.Join(append(errs, nerr, ierr)...)
	s.Wall += wall
	s.CPU += cpu
	s.BatchWall = append(s.BatchWall, wall.Seconds()/float64(n))
	s.BatchCPU = append(s.BatchCPU, cpu.Seconds()/float64(n))
	s.BatchSwitches = append(s.BatchSwitches, float64(sw)/float64(n))
	s.BatchForwarded = append(s.BatchForwarded, float64(n1.forwarded-n0.forwarded)/float64(n))
	s.BatchInvalid = append(s.BatchInvalid, float64(n1.invalid-n0.invalid)/float64(n))
	s.BatchWakeIPIs = append(s.BatchWakeIPIs, float64(ipi1-ipi0)/float64(n))
	if err != nil {
		b.Fatalf("%s: %s a -> %s: %v", s.Name, s.load, dst, err)
	}
	s.Conns += n
	s.SlowConns += int(slow.Load())
}

// tcpConn connects to dst and resets the connection at once.
func (s *ConnRateSetup) tcpConn(dst netip.AddrPort) error {
	c, err := net.DialTimeout("tcp", dst.String(), 5*time.Second)
	if err != nil {
		return err
	}
	tc := c.(*net.TCPConn)
	if err := tc.SetLinger(0); err != nil {
		tc.Close()
		return fmt.Errorf("SO_LINGER 0: %w", err)
	}
	return tc.Close()
}

// tcpConnBlocking is tcpConn with blocking system calls on the calling
// thread: no goroutine parks, so the thread sleeps only if the kernel has
// not finished the handshake when connect returns.
func tcpConnBlocking(dst netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := connectBlocking(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("connect %s: %w", dst, err)
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("SO_LINGER 0: %w", err)
	}
	return unix.Close(fd)
}

// connectBlocking connects the blocking socket fd to sa within 5 s. A
// signal (the Go runtime preempts with SIGURG) can interrupt connect while
// the handshake goes on: then it waits for the socket to be writable and
// takes the handshake's outcome from SO_ERROR.
func connectBlocking(fd int, sa unix.Sockaddr) error {
	err := unix.Connect(fd, sa)
	if !errors.Is(err, unix.EINTR) {
		return err
	}
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 5000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.ETIMEDOUT
		}
		soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soErr != 0 {
			return unix.Errno(soErr)
		}
		return nil
	}
}

// udpFlow sends a datagram to dst from the next source port and waits for
// its echo.
func (s *ConnRateSetup) udpFlow(dst netip.AddrPort) error {
	src := udpConnRateFirstPort + int(s.nextUDPPort.Add(1)%udpConnRatePorts)
	d := net.Dialer{LocalAddr: &net.UDPAddr{IP: ConnRateA.AsSlice(), Port: src}}
	c, err := d.Dial("udp", dst.String())
	if err != nil {
		return err
	}
	defer c.Close()
	return EchoWithin(c, "flow", 5*time.Second)
}

// Rate is the setup's connections per second (wall time).
func (s *ConnRateSetup) Rate() float64 { return float64(s.Conns) / s.Wall.Seconds() }

// CPUPerConn is the process's CPU time per connection, in microseconds.
func (s *ConnRateSetup) CPUPerConn() float64 {
	return float64(s.CPU.Microseconds()) / float64(s.Conns)
}

// MedianRatio is the median over rounds of the per-connection cost of base
// divided by that of s (for wall time: the rate of s over the rate of base).
// A round's batches ran back to back, so their ratio is little affected by
// load that drifts between rounds.
func MedianRatio(s, base []float64) float64 {
	m, _, _ := MedianRatioInterval(s, base)
	return m
}

// MedianRatioInterval is MedianRatio with a 95% confidence interval of the
// median [lo, hi]: the order statistics of the ratios whose ranks the
// binomial distribution (normal approximation) gives, with no assumption
// on how the ratios are distributed. With fewer than about ten rounds it is
// the whole range.
func MedianRatioInterval(s, base []float64) (median, lo, hi float64) {
	r := make([]float64, len(s))
	for i := range s {
		r[i] = base[i] / s[i]
	}
	slices.Sort(r)
	n := len(r)
	if n == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	median = sortedMedian(r)
	// 1-based ranks l and n+1-l.
	l := int(math.Floor(float64(n)/2 - 0.98*math.Sqrt(float64(n))))
	return median, r[max(l-1, 0)], r[min(n-l, n-1)]
}

// RunConnRateRounds runs b.N connections per setup in rounds of one batch
// (ConnRateBatch connections) per setup, timed.
func RunConnRateRounds(b *testing.B, setups []*ConnRateSetup) {
	b.ResetTimer()
	for round := 0; setups[0].Conns < b.N; round++ {
		n := min(ConnRateBatch, b.N-setups[0].Conns)
		// Rotate which setup goes first so none always follows another.
		for i := range setups {
			setups[(round+i)%len(setups)].batch(b, n)
		}
	}
	b.StopTimer()
}

// ReportConnRateMedians reports, for every setup after the first (the base,
// usually no table), the medians of its per-round wall and CPU ratios against
// the base ("<name>/no-table-median", "<name>/no-table-cpu-median": below 1
// means slower or costlier than the base), and logs the connects that waited
// for a SYN retransmission. The loop's own time per op is reported as 0: it
// mixes the setups.
func ReportConnRateMedians(b *testing.B, setups []*ConnRateSetup) {
	base := setups[0]
	b.ReportMetric(0, "ns/op")
	for _, s := range setups[1:] {
		b.ReportMetric(MedianRatio(s.BatchWall, base.BatchWall), s.Name+"/no-table-median")
		b.ReportMetric(MedianRatio(s.BatchCPU, base.BatchCPU), s.Name+"/no-table-cpu-median")
	}
	LogSlowConns(b, setups)
}

// LogSlowConns logs, per setup, the connects that waited for a SYN
// retransmission (they stretch a batch by a second each).
func LogSlowConns(b *testing.B, setups []*ConnRateSetup) {
	for _, s := range setups {
		if s.SlowConns > 0 {
			b.Logf("%s: %d of %d connects waited for a SYN retransmission", s.Name, s.SlowConns, s.Conns)
		}
	}
}

// CPUTime is the process's user plus system CPU time. The machine running the
// benchmarks is shared, so wall time mostly measures the queue for a CPU;
// CPU time (which includes the kernel's work in our netlink calls and, for
// packets sent from our threads, the node's forwarding) does not.
func CPUTime(tb testing.TB) time.Duration {
	u, s := CPUTimes(tb)
	return u + s
}

// contextSwitches is the number of times the process's threads gave up a
// CPU, waiting (voluntary) or preempted (involuntary).
func contextSwitches(tb testing.TB) int64 {
	ru := rusage(tb)
	return ru.Nvcsw + ru.Nivcsw
}

// CPUTimes returns user and system CPU time apart: system time is the
// kernel's work for our netlink messages, which a Go CPU profile cannot see
// (one long sendmsg yields one sample).
func CPUTimes(tb testing.TB) (user, sys time.Duration) {
	ru := rusage(tb)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// rusage is the process's resource usage.
func rusage(tb testing.TB) unix.Rusage {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return ru
}

// Median is the median of xs (NaN when empty).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return sortedMedian(slices.Sorted(slices.Values(xs)))
}

// sortedMedian is the median of the sorted, non-empty s.
func sortedMedian(s []float64) float64 {
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
