package enforcer_test

// IP plan: the generated cluster of bench_test.go and the probing pods of
// kernel_tiers_connrate_bench_test.go (pod a 198.19.250.10, pod b
// 198.19.250.11); with first-packet isolation the node's pod CIDRs are
// 198.19.250.0/24 (a and b, known local pods) and 2001:db8:100::/64.

import (
	"net/netip"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// BenchmarkKernelLoggedConnRate measures new TCP connections per second
// between two real pods through the program of BenchmarkKernelTiersConnRate's
// node (10,000 NetworkPolicies, no ClusterNetworkPolicy; b's ingress walks
// ten policy chains, the last allows), against no table, in interleaved
// batches, with the log and counters off and on:
//
//   - off: the program as it always was;
//   - log+counters: Config.LogDenied, LogAllowed and Counters: every policy
//     chain b's connection walks counts it on entry and (but the last) on
//     its way out, and the flow log's base chain logs it to an NFLOG group
//     nobody reads, within its limit (100/s, burst 200), which the
//     benchmark's rate exceeds: most connections meet an empty bucket;
//   - first-packet: Config.PodCIDRs (first-packet isolation) holding a and
//     b: each base chain looks both up in the pod CIDRs and in the known
//     local addresses (found: not dropped) before its dispatch.
//
// Reported: medians of the per-round ratios against no-table (wall and
// CPU), and log+counters and first-packet against off. Needs
// CAP_NET_ADMIN.
func BenchmarkKernelLoggedConnRate(b *testing.B) {
	nfttest.RequireNetAdmin(b)
	type program struct {
		name  string
		state *nft.State
	}
	var programs []program
	for _, p := range []struct {
		name string
		cfg  enforcer.Config
	}{
		{"off", enforcer.Config{}},
		{"log+counters", enforcer.Config{LogDenied: true, LogAllowed: true, Counters: true, LogGroup: 100}},
		{"first-packet", enforcer.Config{PodCIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.250.0/24"), netip.MustParsePrefix("2001:db8:100::/64")}}},
	} {
		e := tierRateFeed(b, p.cfg)
		tierRateCheck(b, e, tierRateProgram{name: p.name, state: e.Desired(), port: tierRatePort,
			through: []string{"pol-in-" + tierRateNSB + "/allow-0", "pol-in-" + tierRateNSB + "/allow-9"}})
		programs = append(programs, program{p.name, e.Desired()})
	}
	setups := []*nfttest.ConnRateSetup{nfttest.NewConnRateSetup(b, "no-table", nil, false, tierRatePort)}
	for _, p := range programs {
		setups = append(setups, programSetup(b, p.name, p.state, tierRatePort, true))
	}
	nfttest.RunConnRateRounds(b, setups)
	nfttest.ReportConnRateMedians(b, setups)
	for _, s := range setups[2:] {
		b.ReportMetric(nfttest.MedianRatio(s.BatchWall, setups[1].BatchWall), s.Name+"/off-median")
	}
}
