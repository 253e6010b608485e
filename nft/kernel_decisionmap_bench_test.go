package nft_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
)

// decisionMapState is connRateLoaded(true) with, first in b's pod chain, a
// lookup of (source address, protocol, destination port) in a concatenated
// interval verdict map of n elements, none of which matches pod a: the
// shape of a compiled tier of cluster-wide policies (issue #13), where the
// engine resolves priorities and rule order itself and every pod of a
// subject group shares one decision map of peer address . protocol . port
// range -> verdict. The kernel stores such a map in its pipapo set type,
// whose lookup walks a bitmap as long as the number of elements: the cost
// measured here is what decides between one map per group and a first
// lookup that maps the address to a peer class.
func decisionMapState(n int) *nft.State {
	s := connRateLoaded(true)
	dm := addSet(s, nft.Set{Name: "decide-bench", Interval: true, VerdictMap: true,
		Key: []nft.KeyType{nft.TypeIPv4Addr, nft.TypeInetProto, nft.TypeInetService}})
	for i := range n {
		// 198.18.0.0/16 and up: never pod a (198.19.250.10).
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		e := nft.Element{
			Key:     []nft.Value{nft.AddrValue(a), nft.ProtoValue(nft.ProtoTCP), nft.PortValue(8000)},
			KeyEnd:  []nft.Value{nft.AddrValue(a), nft.ProtoValue(nft.ProtoTCP), nft.PortValue(8100)},
			Verdict: &nft.Verdict{Kind: nft.VerdictDrop},
		}
		dm.Elements[nft.ElementID(dm, e)] = e
	}
	c := s.Chains["pod-in-bench"]
	c.Rules = append([]nft.Rule{{Exprs: []nft.Expr{nft.VerdictMapLookup{
		Fields: []nft.Field{nft.FieldIPSaddr, nft.FieldL4Proto, nft.FieldTHDport}, Map: "decide-bench"}}}}, c.Rules...)
	return s
}

// BenchmarkKernelDecisionMap measures new TCP connections per second through
// loaded-dual (BenchmarkKernelConnRate) with a decision map of 1,000, 10,000
// and 100,000 elements in front of b's policies, in alternating batches with
// no table and loaded-dual alone; reported as medians of per-round ratios
// against no table.
func BenchmarkKernelDecisionMap(b *testing.B) {
	setups := []*connRateSetup{
		newConnRateSetup(b, "no-table", nil, false, connRatePort),
		newConnRateSetup(b, "loaded-dual", connRateLoaded(true), true, connRatePort),
	}
	for _, n := range []int{1_000, 10_000, 100_000} {
		setups = append(setups, newConnRateSetup(b, fmt.Sprintf("decide-%d", n), decisionMapState(n), true, connRatePort))
	}
	runConnRateRounds(b, setups)
	base := setups[0]
	b.ReportMetric(0, "ns/op")
	for _, s := range setups[1:] {
		b.ReportMetric(medianRatio(s.batchWall, base.batchWall), s.name+"/no-table-median")
		b.ReportMetric(medianRatio(s.batchCPU, base.batchCPU), s.name+"/no-table-cpu-median")
	}
}
