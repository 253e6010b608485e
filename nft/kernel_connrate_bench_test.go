package nft_test

// New-connection rate through a node namespace, with and without the program
// loaded. IP plan (one routed topology per setup, each its own namespaces, so
// the same addresses are reused):
//
//	pod a  198.19.250.10  eth0 ── veth-a ┐
//	pod b  198.19.250.11  eth0 ── veth-b ┴─ node (forwarding on), gateway 198.19.255.1
//
// The addresses lie outside the range nodeState fills (198.18.0.0 up to about
// 198.19.139.0), so only the elements added here match the two pods.
//
// Pod a opens TCP connections to pod b's port (connRatePort, or
// connRateWorstPort in the worst case) one after another and
// closes each at once with SO_LINGER 0 (an RST: no TIME_WAIT, so the client's
// ports never run out); pod b accepts and closes. Every connection is a new
// conntrack entry in the node, so its SYN is judged by the policy chains,
// not by the established fast path.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

var (
	connRateA = netip.MustParseAddr("198.19.250.10")
	connRateB = netip.MustParseAddr("198.19.250.11")
	// connRatePort is allowed by the last of b's ten policies only: it is in
	// its range (tcp 8000-8100) and in none of the other nine's (tcp
	// 8000+p-8100+p), as when a pod's policies allow other peers on other
	// ports. connRateWorstPort is in all ten ranges, so each of the nine
	// policies that do not allow a matches the port and walks its peer chain
	// before it fails on the address: the most work the policy chains can do
	// for a connection they let through.
	connRatePort      = uint16(8000)
	connRateWorstPort = uint16(8080)
)

// connRateLoaded is nodeState(10_000, dualStack, false) (10,000 policy chains, about
// 100,000 elements) plus the path a real new connection from a to b takes:
//
//   - egress: a in egress-v4 → pod-eg-bench → pol-eg-bench, which matches
//     tcp 8000-8100 and jumps to to-bench, which allows ip daddr in a peer set
//     holding b;
//   - ingress: b in ingress-v4 → pod-in-bench, which jumps to ten policy
//     chains of the generator as every generated pod does; the first nine
//     (pol-in-00001..9) do not allow the connection, the last, pol-in-00000,
//     does: a is added to its group's peer set peer-v4-00000.
//
// Both pod chains end in counter + drop like the generator's.
func connRateLoaded(dualStack bool) *nft.State {
	s := nodeState(10_000, dualStack, false)
	ea := nft.Element{Key: []nft.Value{nft.AddrValue(connRateA)}}
	peers := s.Sets["peer-v4-00000"]
	peers.Elements[nft.ElementID(peers, ea)] = ea

	drop := nft.Rule{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}}
	var in []nft.Rule
	for _, p := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 0} {
		in = append(in, nft.Rule{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: fmt.Sprintf("pol-in-%05d", p)}}})
	}
	addChain(s, nft.Chain{Name: "pod-in-bench", Rules: append(in, drop)})

	addSet(s, nft.Set{Name: "peer-v4-bench", Key: []nft.KeyType{nft.TypeIPv4Addr}},
		nft.Element{Key: []nft.Value{nft.AddrValue(connRateB)}})
	addChain(s, nft.Chain{Name: "to-bench", Rules: []nft.Rule{{Exprs: []nft.Expr{
		nft.Lookup{Fields: []nft.Field{nft.FieldIPDaddr}, Set: "peer-v4-bench"}, accept(),
	}}}})
	addChain(s, nft.Chain{Name: "pol-eg-bench", Rules: []nft.Rule{{Exprs: []nft.Expr{
		nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(nft.ProtoTCP)},
		nft.Range{Field: nft.FieldTHDport, From: nft.PortValue(8000), To: nft.PortValue(8100)},
		nft.Verdict{Kind: nft.VerdictJump, Chain: "to-bench"},
	}}}})
	addChain(s, nft.Chain{Name: "pod-eg-bench", Rules: []nft.Rule{
		{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: "pol-eg-bench"}}}, drop}})

	put := func(m string, ip netip.Addr, chain string) {
		e := nft.Element{Key: []nft.Value{nft.AddrValue(ip)}, Verdict: &nft.Verdict{Kind: nft.VerdictGoto, Chain: chain}}
		s.Sets[m].Elements[nft.ElementID(s.Sets[m], e)] = e
	}
	put("ingress-v4", connRateB, "pod-in-bench")
	put("egress-v4", connRateA, "pod-eg-bench")
	return s
}

// connRateSetup is one node with pods a and b and what was measured on it.
type connRateSetup struct {
	name     string
	a        *nfttest.NetNS
	port     uint16 // b's port the connections go to
	conns    int
	wall     time.Duration
	cpu      time.Duration
	slowConn int // connects that took a SYN retransmission (≥ 1 s)

	// Per batch, in order: wall and CPU time per connection.
	batchWall, batchCPU []float64
}

// newConnRateSetup wires a node with pods a and b, starts the accept-and-close
// server in b, and programs state into the node (nil: no nftables at all).
// When isolated, a connection to a port outside the policy must be dropped,
// which proves the measured connections really pass the policy path.
func newConnRateSetup(b *testing.B, name string, state *nft.State, isolated bool, port uint16) *connRateSetup {
	b.Helper()
	node := nfttest.NewNetNS(b)
	nfttest.EnableForwarding(b, node)
	pa, pb := nfttest.NewNetNS(b), nfttest.NewNetNS(b)
	nfttest.ConnectRouted(b, node, pa, connRateA, netip.Addr{}, nfttest.Gateway4, netip.Addr{}, "veth-a")
	nfttest.ConnectRouted(b, node, pb, connRateB, netip.Addr{}, nfttest.Gateway4, netip.Addr{}, "veth-b")

	var l net.Listener
	if err := pb.Run(func() error {
		var err error
		l, err = net.Listen("tcp", netip.AddrPortFrom(connRateB, port).String())
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

	if state != nil {
		k, err := nft.NewKernel(nft.WithTable(testTable), nft.WithNetNS(node.FD))
		if err != nil {
			b.Fatalf("%s: NewKernel: %v", name, err)
		}
		b.Cleanup(func() { _ = k.Close() })
		applyState(b, k, state)
	}
	if isolated {
		if err := pa.Run(func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(connRateB, 9090).String(), 300*time.Millisecond)
			if err == nil {
				c.Close()
				return fmt.Errorf("connected to a port no policy allows")
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return fmt.Errorf("want the SYN dropped (a timeout), got %w", err)
		}); err != nil {
			b.Fatalf("%s: denied probe: %v", name, err)
		}
	}
	s := &connRateSetup{name: name, a: pa, port: port}
	s.batch(b, 100) // warm up: neighbor entries, routes, caches
	*s = connRateSetup{name: s.name, a: s.a, port: port}
	return s
}

// batch opens and closes n connections from a to b, one at a time.
func (s *connRateSetup) batch(b *testing.B, n int) {
	b.Helper()
	dst := netip.AddrPortFrom(connRateB, s.port).String()
	d := net.Dialer{Timeout: 5 * time.Second}
	var slow int
	c0, t0 := cpuTime(b), time.Now()
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
	wall, cpu := time.Since(t0), cpuTime(b)-c0
	s.wall += wall
	s.cpu += cpu
	s.batchWall = append(s.batchWall, wall.Seconds()/float64(n))
	s.batchCPU = append(s.batchCPU, cpu.Seconds()/float64(n))
	if err != nil {
		b.Fatalf("%s: connect a -> %s: %v", s.name, dst, err)
	}
	s.conns += n
	s.slowConn += slow
}

// medianRatio is the median over rounds of the per-connection cost of base
// divided by that of s (for wall time: the rate of s over the rate of base).
// A round's batches ran back to back, so their ratio is little affected by
// load that drifts between rounds.
func medianRatio(s, base []float64) float64 {
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

func (s *connRateSetup) rate() float64 { return float64(s.conns) / s.wall.Seconds() }

func (s *connRateSetup) cpuPerConn() float64 {
	return float64(s.cpu.Microseconds()) / float64(s.conns)
}

// runConnRateRounds runs b.N connections per setup in rounds of one batch
// per setup, timed.
func runConnRateRounds(b *testing.B, setups []*connRateSetup) {
	b.ResetTimer()
	for round := 0; setups[0].conns < b.N; round++ {
		n := min(connRateBatch, b.N-setups[0].conns)
		// Rotate which setup goes first so none always follows another.
		for i := range setups {
			setups[(round+i)%len(setups)].batch(b, n)
		}
	}
	b.StopTimer()
}

// connRateBatch is the size of one measured batch. Batches of the setups
// alternate, so drifting load on a shared machine hits all of them alike.
const connRateBatch = 250

// BenchmarkKernelConnRate measures new TCP connections per second between two
// pods of a routed node, b.N connections per setup, in five setups measured
// in alternating batches:
//
//   - no-table: no nftables in the node at all (and so no conntrack there);
//   - skeleton: only the base chains and empty dispatch maps (conntrack on,
//     every packet passes two base chains, no pod is isolated);
//   - loaded-ipv4 and loaded-dual: connRateLoaded, 10,000 policies and about
//     100,000 elements, with both pods isolated and the connection allowed by
//     policy, as a single-stack node and as a dual-stack one (whose peer
//     chains hold an IPv6 rule beside each IPv4 rule that an IPv4 packet
//     passes too);
//   - worst-dual: loaded-dual with connections to connRateWorstPort, which
//     every one of b's policies allows (from other peers).
//
// Reported: conns/s (wall) and cpu-µs/conn (user+system time of the whole
// process, which includes the kernel's forwarding work done in our threads)
// per setup, and against no-table both the ratio of the totals and the median
// of the per-round ratios (rate ratio, and no-table CPU/conn over the setup's,
// so below 1 means slower or costlier than no-table).
func BenchmarkKernelConnRate(b *testing.B) {
	loaded, dual := connRateLoaded(false), connRateLoaded(true)
	setups := []*connRateSetup{
		newConnRateSetup(b, "no-table", nil, false, connRatePort),
		newConnRateSetup(b, "skeleton", skeleton(), false, connRatePort),
		newConnRateSetup(b, "loaded-ipv4", loaded, true, connRatePort),
		newConnRateSetup(b, "loaded-dual", dual, true, connRatePort),
		newConnRateSetup(b, "worst-dual", dual, true, connRateWorstPort),
	}
	runConnRateRounds(b, setups)
	base := setups[0]
	for _, s := range setups {
		b.ReportMetric(s.rate(), s.name+"-conns/s")
		b.ReportMetric(s.cpuPerConn(), s.name+"-cpu-µs/conn")
		if s.slowConn > 0 {
			b.Logf("%s: %d of %d connects waited for a SYN retransmission", s.name, s.slowConn, s.conns)
		}
	}
	b.ReportMetric(0, "ns/op") // the loop's time per op mixes the setups
	line := fmt.Sprintf("policies=10000 elements=%d, %d conns per setup in batches of %d:", countElements(loaded), base.conns, connRateBatch)
	for _, s := range setups {
		line += fmt.Sprintf(" %s %.0f conns/s %.1f cpu-µs/conn;", s.name, s.rate(), s.cpuPerConn())
	}
	b.Log(line)
	line = "against no-table:"
	for _, s := range setups[1:] {
		wall, cpu := medianRatio(s.batchWall, base.batchWall), medianRatio(s.batchCPU, base.batchCPU)
		b.ReportMetric(s.rate()/base.rate(), s.name+"/no-table")
		b.ReportMetric(wall, s.name+"/no-table-median")
		line += fmt.Sprintf(" %s rate %.3f (median per round %.3f), cpu %.3f (median per round %.3f);",
			s.name, s.rate()/base.rate(), wall, base.cpuPerConn()/s.cpuPerConn(), cpu)
	}
	b.Log(line)
}
