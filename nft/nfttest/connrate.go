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
// by the established fast path.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
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

	// Per batch, in order: wall and CPU time per connection.
	BatchWall, BatchCPU []float64

	a    *NetNS
	port uint16 // b's port the connections go to
}

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

	if program != nil {
		program(node)
	}
	if isolated {
		if err := pa.Run(func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ConnRateB, ConnRateDeniedPort).String(), 300*time.Millisecond)
			if err == nil {
				c.Close()
				return fmt.Errorf("connected to a port no policy allows")
			}
			if IsTimeout(err) {
				return nil
			}
			return fmt.Errorf("want the SYN dropped (a timeout), got %w", err)
		}); err != nil {
			b.Fatalf("%s: denied probe: %v", name, err)
		}
	}
	s := &ConnRateSetup{Name: name, a: pa, port: port}
	s.batch(b, 100)
	*s = ConnRateSetup{Name: s.Name, a: s.a, port: port}
	return s
}

// batch opens and closes n connections from a to b, one at a time.
func (s *ConnRateSetup) batch(b *testing.B, n int) {
	b.Helper()
	dst := netip.AddrPortFrom(ConnRateB, s.port).String()
	d := net.Dialer{Timeout: 5 * time.Second}
	var slow int
	c0, t0 := CPUTime(b), time.Now()
	err := s.a.Run(func() error {
		for range n {
			start := time.Now()
			c, err := d.Dial("tcp", dst)
			if err != nil {
				return err
			}
			if time.Since(start) >= time.Second {
				slow++
			}
			tc := c.(*net.TCPConn)
			if err := tc.SetLinger(0); err != nil {
				tc.Close()
				return fmt.Errorf("SO_LINGER 0: %w", err)
			}
			if err := tc.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	wall, cpu := time.Since(t0), CPUTime(b)-c0
	s.Wall += wall
	s.CPU += cpu
	s.BatchWall = append(s.BatchWall, wall.Seconds()/float64(n))
	s.BatchCPU = append(s.BatchCPU, cpu.Seconds()/float64(n))
	if err != nil {
		b.Fatalf("%s: connect a -> %s: %v", s.Name, dst, err)
	}
	s.Conns += n
	s.SlowConns += slow
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
	r := make([]float64, len(s))
	for i := range s {
		r[i] = base[i] / s[i]
	}
	slices.Sort(r)
	if len(r)%2 == 1 {
		return r[len(r)/2]
	}
	return (r[len(r)/2-1] + r[len(r)/2]) / 2
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

// CPUTimes returns user and system CPU time apart: system time is the
// kernel's work for our netlink messages, which a Go CPU profile cannot see
// (one long sendmsg yields one sample).
func CPUTimes(tb testing.TB) (user, sys time.Duration) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
