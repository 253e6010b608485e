package nft_test

// New-connection rate through a node namespace, with and without the program
// loaded: the topology and the measuring are nfttest's (NewConnRateSetup,
// whose IP plan puts pod a at 198.19.250.10 and pod b at 198.19.250.11).
// Those addresses lie outside the range nodeState fills (198.18.0.0 up to
// about 198.19.139.0), so only the elements added here match the two pods.
// Pod a connects to b's connRatePort, or connRateWorstPort in the worst case.

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

var (
	connRateA = nfttest.ConnRateA
	connRateB = nfttest.ConnRateB
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
	peers.PutElements(ea)

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
		s.Sets[m].PutElements(e)
	}
	put("ingress-v4", connRateB, "pod-in-bench")
	put("egress-v4", connRateA, "pod-eg-bench")
	return s
}

// newConnRateSetup is nfttest.NewConnRateSetup programming state into the
// node (nil: no nftables at all).
func newConnRateSetup(b *testing.B, name string, state *nft.State, isolated bool, port uint16) *nfttest.ConnRateSetup {
	b.Helper()
	var program func(node *nfttest.NetNS)
	if state != nil {
		program = func(node *nfttest.NetNS) {
			k, err := nft.NewKernel(nft.WithTable(testTable), nft.WithNetNS(node.FD))
			if err != nil {
				b.Fatalf("%s: NewKernel: %v", name, err)
			}
			b.Cleanup(func() { _ = k.Close() })
			applyState(b, k, state)
		}
	}
	return nfttest.NewConnRateSetup(b, name, program, isolated, port)
}

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
	setups := []*nfttest.ConnRateSetup{
		newConnRateSetup(b, "no-table", nil, false, connRatePort),
		newConnRateSetup(b, "skeleton", skeleton(), false, connRatePort),
		newConnRateSetup(b, "loaded-ipv4", loaded, true, connRatePort),
		newConnRateSetup(b, "loaded-dual", dual, true, connRatePort),
		newConnRateSetup(b, "worst-dual", dual, true, connRateWorstPort),
	}
	nfttest.RunConnRateRounds(b, setups)
	base := setups[0]
	for _, s := range setups {
		b.ReportMetric(s.Rate(), s.Name+"-conns/s")
		b.ReportMetric(s.CPUPerConn(), s.Name+"-cpu-µs/conn")
	}
	nfttest.LogSlowConns(b, setups)
	b.ReportMetric(0, "ns/op") // the loop's time per op mixes the setups
	line := fmt.Sprintf("policies=10000 elements=%d, %d conns per setup in batches of %d:", countElements(loaded), base.Conns, nfttest.ConnRateBatch)
	for _, s := range setups {
		line += fmt.Sprintf(" %s %.0f conns/s %.1f cpu-µs/conn;", s.Name, s.Rate(), s.CPUPerConn())
	}
	b.Log(line)
	line = "against no-table:"
	for _, s := range setups[1:] {
		wall, cpu := nfttest.MedianRatio(s.BatchWall, base.BatchWall), nfttest.MedianRatio(s.BatchCPU, base.BatchCPU)
		b.ReportMetric(s.Rate()/base.Rate(), s.Name+"/no-table")
		b.ReportMetric(wall, s.Name+"/no-table-median")
		line += fmt.Sprintf(" %s rate %.3f (median per round %.3f), cpu %.3f (median per round %.3f);",
			s.Name, s.Rate()/base.Rate(), wall, base.CPUPerConn()/s.CPUPerConn(), cpu)
	}
	b.Log(line)
}
