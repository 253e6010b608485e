package nft_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
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
		dm.PutElements(e)
	}
	c := s.Chains["pod-in-bench"]
	c.Rules = append([]nft.Rule{{Exprs: []nft.Expr{nft.VerdictMapLookup{
		Fields: []nft.Field{nft.FieldIPSaddr, nft.FieldL4Proto, nft.FieldTHDport}, Map: "decide-bench"}}}}, c.Rules...)
	return s
}

// classMapState is connRateLoaded(true) with, first in b's pod chain, the
// form enforcer/TIERS.md plans instead: a verdict map of n peer addresses
// (a hash: cost independent of n) that jumps to the chain of the address's
// peer class, where the class's decisions are a few port comparisons; a
// chain that decides nothing returns, and b's policies follow. Pod a is in
// the map, in a class whose decisions do not match its port, so each
// connection pays the lookup, the jump, the comparisons and the return.
func classMapState(n int) *nft.State {
	s := connRateLoaded(true)
	const classes = 10
	for c := range classes {
		lo := uint16(9000 + 200*c)
		addChain(s, nft.Chain{Name: fmt.Sprintf("class-%d", c), Rules: []nft.Rule{
			{Exprs: []nft.Expr{
				nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(nft.ProtoTCP)},
				nft.Range{Field: nft.FieldTHDport, From: nft.PortValue(lo), To: nft.PortValue(lo + 100)},
				nft.Verdict{Kind: nft.VerdictDrop}}},
			{Exprs: []nft.Expr{
				nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(nft.ProtoUDP)},
				nft.Cmp{Field: nft.FieldTHDport, Value: nft.PortValue(lo)},
				nft.Verdict{Kind: nft.VerdictAccept}}},
		}})
	}
	cm := addSet(s, nft.Set{Name: "class-bench", VerdictMap: true, Key: []nft.KeyType{nft.TypeIPv4Addr}})
	put := func(a netip.Addr, c int) {
		e := nft.Element{Key: []nft.Value{nft.AddrValue(a)}, Verdict: &nft.Verdict{Kind: nft.VerdictJump, Chain: fmt.Sprintf("class-%d", c)}}
		cm.PutElements(e)
	}
	for i := range n - 1 {
		put(netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}), i%classes)
	}
	put(connRateA, 3)
	c := s.Chains["pod-in-bench"]
	c.Rules = append([]nft.Rule{{Exprs: []nft.Expr{nft.VerdictMapLookup{
		Fields: []nft.Field{nft.FieldIPSaddr}, Map: "class-bench"}}}}, c.Rules...)
	return s
}

// BenchmarkKernelDecisionMap measures new TCP connections per second through
// loaded-dual (BenchmarkKernelConnRate) with a decision map of 1,000, 10,000
// and 100,000 elements in front of b's policies, and with the class map of
// 100,000 addresses (classMapState) there instead, in alternating batches
// with no table and loaded-dual alone; reported as medians of per-round
// ratios against no table.
func BenchmarkKernelDecisionMap(b *testing.B) {
	setups := []*nfttest.ConnRateSetup{
		newConnRateSetup(b, "no-table", nil, false, connRatePort),
		newConnRateSetup(b, "loaded-dual", connRateLoaded(true), true, connRatePort),
	}
	for _, n := range []int{1_000, 10_000, 100_000} {
		setups = append(setups, newConnRateSetup(b, fmt.Sprintf("decide-%d", n), decisionMapState(n), true, connRatePort))
	}
	setups = append(setups, newConnRateSetup(b, "class-100000", classMapState(100_000), true, connRatePort))
	nfttest.RunConnRateRounds(b, setups)
	nfttest.ReportConnRateMedians(b, setups)
}
