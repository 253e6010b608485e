package enforcer_test

// IP plan: as kernel_tiers_connrate_bench_test.go (the generated cluster,
// pod a 198.19.250.10, pod b 198.19.250.11, gateway 198.19.255.1).

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// skeletonRateLoads are the loads BenchmarkKernelSkeletonConnRate measures:
// new TCP connections from one client and from four at once, new UDP flows,
// and new TCP connections from one client that uses blocking system calls
// (nfttest.ConnRateLoad.Blocking: the packets' own cost, without the Go
// client's thread wake-ups).
var skeletonRateLoads = []nfttest.ConnRateLoad{{}, {Workers: 4}, {UDP: true}, {Blocking: true}}

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
// for new UDP flows (udp-1), and for new TCP connections from one client
// with blocking system calls (tcp-1-blocking). Setups, each a fresh routed
// node namespace:
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
//   - walk-only: the same program for the probing pods and b's policies
//     alone (walkOnlyNode): the measured connection walks the same rules,
//     in a table that holds nothing else;
//   - two-chains and policies=10000-two-chains: the same two programs in the
//     shape of the releases before the single base chain (twoBaseChains:
//     a base chain per direction, each asking conntrack's state).
//
// All setup-load pairs run in one loop of rounds (b.N connections
// or flows each, in batches of nfttest.ConnRateBatch, the order rotating
// every round). Reported per load and setup: the median over rounds of the
// per-round rate ratio against no-table and against floor, with its 95%
// interval (logged), the CPU ratio against no-table, and the process's
// context switches per connection (logged: with one Go client most of a
// connection's time is its threads sleeping and being woken). Needs
// CAP_NET_ADMIN; run with -benchtime=<connections>x, enough rounds that the
// intervals are narrower than the differences.
func BenchmarkKernelSkeletonConnRate(b *testing.B) {
	nfttest.RequireNetAdmin(b)
	loaded := skeletonRateNode(b)
	walk := walkOnlyNode(b)
	skeleton := skeletonState(b)
	nodes := []*nfttest.ConnRateSetup{
		nfttest.NewConnRateSetup(b, "no-table", nil, false, tierRatePort),
		programSetup(b, "floor", floorState(), tierRatePort, false),
		programSetup(b, "two-chains", twoBaseChains(b, skeleton), tierRatePort, false),
		programSetup(b, "skeleton", skeleton, tierRatePort, false),
		programSetup(b, walk.name, walk.state, tierRatePort, true),
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
		line := fmt.Sprintf("%d rounds of %d (no-table %.0f/s; per conn %.2f switches, %.2f wake IPIs, %.2f forwarded):", len(base.BatchWall), nfttest.ConnRateBatch, base.Rate(), nfttest.Median(base.BatchSwitches), nfttest.Median(base.BatchWakeIPIs), nfttest.Median(base.BatchForwarded))
		for _, s := range setups[1:] {
			m, lo, hi := nfttest.MedianRatioInterval(s.BatchWall, base.BatchWall)
			fm, flo, fhi := nfttest.MedianRatioInterval(s.BatchWall, floor.BatchWall)
			cpu := nfttest.MedianRatio(s.BatchCPU, base.BatchCPU)
			b.ReportMetric(m, s.Name+"/no-table-median")
			b.ReportMetric(cpu, s.Name+"/no-table-cpu-median")
			if s != floor {
				b.ReportMetric(fm, s.Name+"/floor-median")
			}
			line += fmt.Sprintf("\n  %-26s %6.0f/s  against no-table %.3f [%.3f, %.3f] (cpu %.3f), against floor %.3f [%.3f, %.3f]; per conn %.2f switches, %.2f wake IPIs, %.2f forwarded, %.2f invalid",
				s.Name, s.Rate(), m, lo, hi, cpu, fm, flo, fhi, nfttest.Median(s.BatchSwitches), nfttest.Median(s.BatchWakeIPIs), nfttest.Median(s.BatchForwarded), nfttest.Median(s.BatchInvalid))
		}
		b.Log(line)
	}
	nfttest.LogSlowConns(b, all)
}

// skeletonRateNode is the policies=10000 node of
// BenchmarkKernelSkeletonConnRate: tierRateFeed's node plus a policy that
// allows a's UDP to b's port, checked (Decide and a trace) for the measured
// TCP connection and UDP flow.
func skeletonRateNode(b *testing.B) tierRateProgram {
	return skeletonRateProgram(b, "policies=10000", tierRateFeed(b, enforcer.Config{}))
}

// walkOnlyNode is skeletonRateNode without the generated cluster: only the
// probing pods and b's policies, so that the measured connection walks the
// same rules (the same chains, lookups in sets of one element) in a table
// that holds nothing else.
func walkOnlyNode(b *testing.B) tierRateProgram {
	node, _ := (&genCluster{}).build(b, nil)
	tierRateAddProbes(b, node)
	return skeletonRateProgram(b, "walk-only", node)
}

// skeletonRateProgram adds the UDP policy to node (tierRateFeed's or
// walkOnlyNode's) and checks the measured TCP connection and UDP flow.
func skeletonRateProgram(b *testing.B, name string, node *enforcer.Engine) tierRateProgram {
	udp := mkPolicy(tierRateNSB, "allow-udp", selecting(sel("role", "server")),
		ingress(peers(nsPodPeer(sel("team", "t0"), sel("client", "c0"))), port(UDP, tierRatePort)))
	if err := node.UpsertNetworkPolicy(udp); err != nil {
		b.Fatal(err)
	}
	tierRateFlush(b, node)
	podB := "pol-in-" + tierRateNSB + "/allow-"
	loaded := tierRateProgram{name: name, state: node.Desired(), port: tierRatePort, through: []string{podB + "0", podB + "9"}}
	tierRateCheck(b, node, loaded)
	udpFlow := loaded
	udpFlow.udp, udpFlow.through = true, []string{podB + "0", podB + "9", podB + "udp"}
	tierRateCheck(b, node, udpFlow)
	return loaded
}

// skeletonState is the engine's program with no pod and no policy.
func skeletonState(b *testing.B) *nft.State {
	empty, _ := (&genCluster{}).build(b, nil)
	return empty.Desired()
}

// BenchmarkKernelConnRateOneSetup runs b.N new connections (or flows) of
// one load through one setup of BenchmarkKernelSkeletonConnRate alone, so
// that a profiler of the whole machine can attribute them: the setup is
// named by NFTW_CONNRATE_SETUP (no-table, floor, skeleton, walk-only,
// policies=10000; several, comma-separated, run in rounds), the load by
// NFTW_CONNRATE_LOAD (tcp-1, tcp-4, udp-1, tcp-1-blocking). With
// NFTW_PERF_CTL=<ctl fifo>,<ack fifo> (perf record --control
// fifo:<ctl>,<ack> -D -1), the profiler records only the measured
// connections, not the setup. Reports conns/s and the process's CPU per
// connection. Needs CAP_NET_ADMIN.
//
//	mkfifo /tmp/ctl /tmp/ack
//	NFTW_CONNRATE_SETUP=floor NFTW_PERF_CTL=/tmp/ctl,/tmp/ack perf record -a -g \
//	    --control fifo:/tmp/ctl,/tmp/ack -D -1 -- ./enforcer.test -test.run '^$' \
//	    -test.bench KernelConnRateOneSetup -test.benchtime 30000x
func BenchmarkKernelConnRateOneSetup(b *testing.B) {
	nfttest.RequireNetAdmin(b)
	load := cmp.Or(os.Getenv("NFTW_CONNRATE_LOAD"), "tcp-1")
	i := slices.IndexFunc(skeletonRateLoads, func(l nfttest.ConnRateLoad) bool { return l.String() == load })
	if i < 0 {
		b.Fatalf("NFTW_CONNRATE_LOAD=%q: want one of %v", load, skeletonRateLoads)
	}
	var setups []*nfttest.ConnRateSetup
	for _, name := range strings.Split(cmp.Or(os.Getenv("NFTW_CONNRATE_SETUP"), "no-table"), ",") {
		var s *nfttest.ConnRateSetup
		switch name {
		case "no-table":
			s = nfttest.NewConnRateSetup(b, name, nil, false, tierRatePort)
		case "floor":
			s = programSetup(b, name, floorState(), tierRatePort, false)
		case "skeleton":
			s = programSetup(b, name, skeletonState(b), tierRatePort, false)
		case "policies=10000":
			s = programSetup(b, name, skeletonRateNode(b).state, tierRatePort, true)
		case "walk-only":
			s = programSetup(b, name, walkOnlyNode(b).state, tierRatePort, true)
		default:
			b.Fatalf("NFTW_CONNRATE_SETUP=%q: want no-table, floor, skeleton, walk-only or policies=10000", name)
		}
		setups = append(setups, s.WithLoad(b, load+"/"+name, skeletonRateLoads[i]))
	}
	window := nfttest.PerfWindow(b, os.Getenv("NFTW_PERF_CTL"))
	nfttest.RunConnRateRounds(b, setups)
	window.Close()
	b.ReportMetric(0, "ns/op")
	for _, s := range setups {
		b.ReportMetric(s.Rate(), s.Name+"/conns/s")
		b.ReportMetric(s.CPUPerConn(), s.Name+"/cpu-µs/conn")
		b.ReportMetric(nfttest.Median(s.BatchSwitches), s.Name+"/switches/conn")
		b.ReportMetric(nfttest.Median(s.BatchWakeIPIs), s.Name+"/wake-ipis/conn")
		b.ReportMetric(nfttest.Median(s.BatchForwarded), s.Name+"/forwarded/conn")
		b.ReportMetric(nfttest.Median(s.BatchInvalid), s.Name+"/invalid/conn")
		if s != setups[0] {
			b.ReportMetric(nfttest.MedianRatio(s.BatchWall, setups[0].BatchWall), s.Name+"/first-median")
			b.ReportMetric(nfttest.MedianRatio(s.BatchCPU, setups[0].BatchCPU), s.Name+"/first-cpu-median")
		}
	}
}
