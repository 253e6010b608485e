package enforcer_test

// IP plan: as kernel_tiers_connrate_bench_test.go (the generated cluster,
// pod a 198.19.250.10, pod b 198.19.250.11, gateway 198.19.255.1).

import (
	"fmt"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// skeletonRateLoads are the loads BenchmarkKernelSkeletonConnRate measures:
// new TCP connections from one client and from four at once, new UDP flows.
var skeletonRateLoads = []nfttest.ConnRateLoad{{}, {Workers: 4}, {UDP: true}}

// floorState is the least a stateful filter on the forward hook can be: one
// base chain whose only rule accepts the packets of tracked connections, so
// that every packet pays conntrack and one chain with one rule.
func floorState() *nft.State {
	s := nft.NewState()
	s.Chains["floor"] = &nft.Chain{Name: "floor", Rules: []nft.Rule{{Exprs: []nft.Expr{
		nft.MatchCtState{States: nft.CtEstablished | nft.CtRelated}, nft.Verdict{Kind: nft.VerdictAccept},
	}}}, Base: &nft.BaseChain{Hook: nft.HookForward, Priority: nft.PriorityFilter, Policy: nft.VerdictAccept}}
	return s
}

// BenchmarkKernelSkeletonConnRate measures what the fixed part of the
// program costs per new connection, against no table and against the floor
// any stateful filter pays, beside the 10,000-policy node, for new TCP
// connections from one client (tcp-1) and from four at once (tcp-4), and
// for new UDP flows (udp-1). Setups, each a fresh routed node namespace:
//
//   - no-table: no nftables in the node (so no conntrack either);
//   - floor: floorState;
//   - skeleton: the engine's program with no pod and no policy (one base
//     chain, empty dispatch maps);
//   - policies=10000: the node of BenchmarkKernelTiersConnRate's cnps=0
//     (tierRateFeed: b's ingress walks ten policy chains, the last allows;
//     a's egress is not isolated), plus a policy that allows a's UDP to b's
//     port, which sorts after them: a UDP flow walks the ten, which fail on
//     the protocol, and then it;
//   - two-chains and policies=10000-two-chains: the same two programs in the
//     shape of the releases before the single base chain (twoBaseChains:
//     a base chain per direction, each asking conntrack's state).
//
// All eighteen setup-load pairs run in one loop of rounds (b.N connections
// or flows each, in batches of nfttest.ConnRateBatch, the order rotating
// every round). Reported per load and setup: the median over rounds of the
// per-round rate ratio against no-table and against floor, with its 95%
// interval (logged), and the CPU ratio against no-table. Needs
// CAP_NET_ADMIN; run with -benchtime=<connections>x, enough rounds that the
// intervals are narrower than the differences.
func BenchmarkKernelSkeletonConnRate(b *testing.B) {
	nfttest.RequireNetAdmin(b)
	node := tierRateFeed(b, enforcer.Config{})
	udp := mkPolicy(tierRateNSB, "allow-udp", selecting(sel("role", "server")),
		ingress(peers(nsPodPeer(sel("team", "t0"), sel("client", "c0"))), port(UDP, tierRatePort)))
	if err := node.UpsertNetworkPolicy(udp); err != nil {
		b.Fatal(err)
	}
	tierRateFlush(b, node)
	podB := "pol-in-" + tierRateNSB + "/allow-"
	loaded := tierRateProgram{name: "policies=10000", state: node.Desired(), port: tierRatePort, through: []string{podB + "0", podB + "9"}}
	tierRateCheck(b, node, loaded)
	loaded.udp, loaded.through = true, []string{podB + "0", podB + "9", podB + "udp"}
	tierRateCheck(b, node, loaded)

	empty, _ := (&genCluster{}).build(b, nil)
	skeleton := empty.Desired()
	nodes := []*nfttest.ConnRateSetup{
		nfttest.NewConnRateSetup(b, "no-table", nil, false, tierRatePort),
		programSetup(b, "floor", floorState(), tierRatePort, false),
		programSetup(b, "two-chains", twoBaseChains(b, skeleton), tierRatePort, false),
		programSetup(b, "skeleton", skeleton, tierRatePort, false),
		programSetup(b, loaded.name+"-two-chains", twoBaseChains(b, loaded.state), tierRatePort, true),
		programSetup(b, loaded.name, loaded.state, tierRatePort, true),
	}
	byLoad := make([][]*nfttest.ConnRateSetup, len(skeletonRateLoads))
	var all []*nfttest.ConnRateSetup
	for i, l := range skeletonRateLoads {
		for _, n := range nodes {
			s := n.WithLoad(b, l.String()+"/"+n.Name, l)
			byLoad[i] = append(byLoad[i], s)
			all = append(all, s)
		}
	}
	nfttest.RunConnRateRounds(b, all)
	b.ReportMetric(0, "ns/op") // the loop's time per op mixes the setups
	for _, setups := range byLoad {
		base, floor := setups[0], setups[1]
		line := fmt.Sprintf("%d rounds of %d:", len(base.BatchWall), nfttest.ConnRateBatch)
		for _, s := range setups[1:] {
			m, lo, hi := nfttest.MedianRatioInterval(s.BatchWall, base.BatchWall)
			fm, flo, fhi := nfttest.MedianRatioInterval(s.BatchWall, floor.BatchWall)
			cpu := nfttest.MedianRatio(s.BatchCPU, base.BatchCPU)
			b.ReportMetric(m, s.Name+"/no-table-median")
			b.ReportMetric(cpu, s.Name+"/no-table-cpu-median")
			if s != floor {
				b.ReportMetric(fm, s.Name+"/floor-median")
			}
			line += fmt.Sprintf("\n  %-26s %6.0f/s  against no-table %.3f [%.3f, %.3f] (cpu %.3f), against floor %.3f [%.3f, %.3f]",
				s.Name, s.Rate(), m, lo, hi, cpu, fm, flo, fhi)
		}
		b.Log(line)
	}
	nfttest.LogSlowConns(b, all)
}
