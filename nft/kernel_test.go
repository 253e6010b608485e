package nft_test

// IP plan of the kernel tests (all inside throwaway network namespaces):
//
//	pods a, b, c      198.18.0.10, .11, .12 and 2001:db8::10, ::11, ::12
//	ipBlock v4        198.19.0.0/16 except 198.19.1.0/24, and 203.0.113.0-255.255.255.255
//	ipBlock v6        2001:db8:100::/48
//	ports             tcp 80, tcp 8000-8080, udp 0-65535
//	named ports       198.18.0.10 . tcp . 8443, 2001:db8::10 . tcp . 8443
//	tagged peers      group 1: 198.18.0.10, 2001:db8::10; group 2: 198.18.0.11,
//	                  198.18.0.12, 2001:db8::11; tagged named ports in group 2

import (
	"context"
	"flag"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/kernel")

const testTable = "nftwarden-test"

// newKernel returns a Kernel programming a fresh network namespace, with
// further options if given.
func newKernel(t testing.TB, opts ...nft.KernelOption) (*nfttest.NetNS, *nft.Kernel) {
	t.Helper()
	ns := nfttest.NewNetNS(t)
	k, err := nft.NewKernel(append([]nft.KernelOption{nft.WithTable(testTable), nft.WithNetNS(ns.FD)}, opts...)...)
	if err != nil {
		t.Fatalf("NewKernel: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return ns, k
}

func addr(s string) nft.Value { return nft.AddrValue(netip.MustParseAddr(s)) }

func v4(s string) nft.Element { return nft.Element{Key: []nft.Value{addr(s)}} }

func rng(from, to string) nft.Element {
	return nft.Element{Key: []nft.Value{addr(from)}, KeyEnd: []nft.Value{addr(to)}}
}

func portRange(proto uint8, from, to uint16) nft.Element {
	e := nft.Element{Key: []nft.Value{nft.ProtoValue(proto), nft.PortValue(from)}}
	if to != from {
		e.KeyEnd = []nft.Value{nft.ProtoValue(proto), nft.PortValue(to)}
	}
	return e
}

func namedPort(ip string, proto uint8, port uint16) nft.Element {
	return nft.Element{Key: []nft.Value{addr(ip), nft.ProtoValue(proto), nft.PortValue(port)}}
}

func gotoChain(ip, chain string) nft.Element {
	return nft.Element{Key: []nft.Value{addr(ip)}, Verdict: &nft.Verdict{Kind: nft.VerdictGoto, Chain: chain}}
}

func accept() nft.Verdict { return nft.Verdict{Kind: nft.VerdictAccept} }

// addSet adds a set with elements to a state.
func addSet(s *nft.State, set nft.Set, elems ...nft.Element) *nft.Set {
	set.Elements.Clear()
	for _, e := range elems {
		set.PutElements(e)
	}
	s.Sets[set.Name] = &set
	return &set
}

func addChain(s *nft.State, c nft.Chain) { s.Chains[c.Name] = &c }

// skeleton is the fixed part of the program (PROGRAM.md): base chains and
// dispatch maps.
func skeleton() *nft.State {
	s := nft.NewState()
	for _, dir := range []struct {
		name  string
		prio  int
		field [2]nft.Field
		// peer are the fields of the other end of the pod's connections.
		peer [2]nft.Field
	}{
		{"egress", nft.PriorityFilter, [2]nft.Field{nft.FieldIPSaddr, nft.FieldIP6Saddr}, [2]nft.Field{nft.FieldIPDaddr, nft.FieldIP6Daddr}},
		{"ingress", nft.PriorityFilter + 1, [2]nft.Field{nft.FieldIPDaddr, nft.FieldIP6Daddr}, [2]nft.Field{nft.FieldIPSaddr, nft.FieldIP6Saddr}},
	} {
		addSet(s, nft.Set{Name: dir.name + "-v4", Key: []nft.KeyType{nft.TypeIPv4Addr}, VerdictMap: true})
		addSet(s, nft.Set{Name: dir.name + "-v6", Key: []nft.KeyType{nft.TypeIPv6Addr}, VerdictMap: true})
		addChain(s, nft.Chain{
			Name: dir.name,
			Base: &nft.BaseChain{Hook: nft.HookForward, Priority: dir.prio, Policy: nft.VerdictAccept},
			Rules: []nft.Rule{
				{Exprs: []nft.Expr{nft.MatchCtState{States: nft.CtEstablished | nft.CtRelated}, accept()}},
				{Exprs: []nft.Expr{nft.MatchCtState{States: nft.CtInvalid}, nft.Verdict{Kind: nft.VerdictDrop}}},
				pickupDrop(dir.peer[0], dir.name+"-v4"),
				pickupDrop(dir.peer[1], dir.name+"-v6"),
				{Exprs: []nft.Expr{nft.VerdictMapLookup{Fields: []nft.Field{dir.field[0]}, Map: dir.name + "-v4"}}},
				{Exprs: []nft.Expr{nft.VerdictMapLookup{Fields: []nft.Field{dir.field[1]}, Map: dir.name + "-v6"}}},
			},
		})
	}
	return s
}

// pickupDrop is the base-chain rule that drops a TCP segment conntrack sees
// as new that does not start a connection (an entry picked up mid-stream)
// when field, the address of its sender (ingress) or receiver (egress), is
// in the dispatch map m (PROGRAM.md).
func pickupDrop(field nft.Field, m string) nft.Rule {
	return nft.Rule{Exprs: []nft.Expr{
		nft.MatchCtState{States: nft.CtNew},
		nft.MatchTCPFlags{Flags: nft.TCPSyn, Mask: nft.TCPStartMask, Neq: true},
		nft.Lookup{Fields: []nft.Field{field}, Set: m},
		nft.Verdict{Kind: nft.VerdictDrop},
	}}
}

// tcpFlags is a chain of every form of tcp flags match.
func tcpFlags() *nft.State {
	s := nft.NewState()
	addSet(s, nft.Set{Name: "in-v4", Key: []nft.KeyType{nft.TypeIPv4Addr}, VerdictMap: true},
		nft.Element{Key: []nft.Value{addr("198.18.0.10")}, Verdict: &nft.Verdict{Kind: nft.VerdictAccept}})
	l4tcp := nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(nft.ProtoTCP)}
	dport := nft.Cmp{Field: nft.FieldTHDport, Value: nft.PortValue(22)}
	drop := nft.Verdict{Kind: nft.VerdictDrop}
	rule := func(exprs ...nft.Expr) nft.Rule { return nft.Rule{Exprs: exprs} }
	addChain(s, nft.Chain{Name: "flags", Rules: []nft.Rule{
		pickupDrop(nft.FieldIPSaddr, "in-v4"),
		rule(nft.MatchTCPFlags{Flags: nft.TCPSyn, Mask: nft.TCPStartMask}, accept()),
		rule(nft.MatchTCPFlags{Flags: nft.TCPSyn, Mask: 0xff}, accept()),
		rule(nft.MatchTCPFlags{Flags: nft.TCPSyn | nft.TCPAck, Mask: 0xff, Neq: true}, accept()),
		rule(nft.MatchTCPFlags{Mask: 0xff}, drop),
		rule(nft.MatchTCPFlags{Mask: nft.TCPSyn | nft.TCPAck, Neq: true}, accept()),
		rule(nft.MatchTCPFlags{Mask: nft.TCPFin | nft.TCPRst}, accept()),
		rule(nft.MatchTCPFlags{Flags: nft.TCPAck, Mask: nft.TCPAck}, dport, drop),
		rule(nft.MatchTCPFlags{Flags: nft.TCPAck, Mask: nft.TCPAck}, l4tcp, dport, drop),
		rule(l4tcp, nft.MatchTCPFlags{Flags: nft.TCPFin, Mask: nft.TCPFin | nft.TCPSyn}, drop),
		rule(nft.MatchTCPFlags{Flags: nft.TCPSyn, Mask: nft.TCPSyn}, nft.MatchTCPFlags{Mask: nft.TCPCwr}, drop),
		rule(nft.MatchTCPFlags{Flags: nft.TCPRst, Mask: nft.TCPRst, Neq: true}, nft.MatchTCPFlags{Mask: nft.TCPUrg, Neq: true}, drop),
		rule(nft.MatchTCPFlags{Flags: nft.TCPSyn | nft.TCPAck, Mask: nft.TCPSyn | nft.TCPAck, Neq: true}, accept()),
		rule(nft.MatchTCPFlags{Flags: nft.TCPFin | nft.TCPSyn | nft.TCPRst | nft.TCPPsh | nft.TCPAck | nft.TCPUrg | nft.TCPEcn | nft.TCPCwr, Mask: 0xff}, drop),
	}})
	return s
}

// program is the skeleton with pods a (ingress isolated by two policies) and
// b (egress isolated), peer sets, ipBlock sets, port sets and named ports.
func program() *nft.State {
	s := skeleton()
	s.Sets["ingress-v4"].Elements.Clear()
	for _, e := range []nft.Element{gotoChain("198.18.0.10", "pod-in-a")} {
		s.Sets["ingress-v4"].PutElements(e)
	}
	for _, e := range []nft.Element{gotoChain("2001:db8::10", "pod-in-a")} {
		s.Sets["ingress-v6"].PutElements(e)
	}
	for _, e := range []nft.Element{gotoChain("198.18.0.11", "pod-eg-b")} {
		s.Sets["egress-v4"].PutElements(e)
	}

	addSet(s, nft.Set{Name: "peer-v4-web", Key: []nft.KeyType{nft.TypeIPv4Addr}, Comment: "ns1: app=web"},
		v4("198.18.0.11"), v4("198.18.0.12"))
	addSet(s, nft.Set{Name: "peer-v6-web", Key: []nft.KeyType{nft.TypeIPv6Addr}, Comment: "ns1: app=web"},
		nft.Element{Key: []nft.Value{addr("2001:db8::11")}})
	addSet(s, nft.Set{Name: "peer-v4-empty", Key: []nft.KeyType{nft.TypeIPv4Addr}, Comment: "ns1: app=none"})
	addSet(s, nft.Set{Name: "cidr-v4-blk", Key: []nft.KeyType{nft.TypeIPv4Addr}, Interval: true,
		Comment: "198.19.0.0/16 except 198.19.1.0/24"},
		rng("198.19.0.0", "198.19.0.255"), rng("198.19.2.0", "198.19.255.255"),
		v4("198.18.7.7"), rng("203.0.113.0", "255.255.255.255"))
	addSet(s, nft.Set{Name: "cidr-v6-blk", Key: []nft.KeyType{nft.TypeIPv6Addr}, Interval: true},
		rng("2001:db8:100::", "2001:db8:100:ffff:ffff:ffff:ffff:ffff"))
	addSet(s, nft.Set{Name: "ports-web", Key: []nft.KeyType{nft.TypeInetProto, nft.TypeInetService}, Interval: true},
		portRange(nft.ProtoTCP, 80, 80), portRange(nft.ProtoTCP, 8000, 8080), portRange(nft.ProtoUDP, 0, 65535))
	addSet(s, nft.Set{Name: "named-v4-https", Key: []nft.KeyType{nft.TypeIPv4Addr, nft.TypeInetProto, nft.TypeInetService}},
		namedPort("198.18.0.10", nft.ProtoTCP, 8443))
	addSet(s, nft.Set{Name: "named-v6-https", Key: []nft.KeyType{nft.TypeIPv6Addr, nft.TypeInetProto, nft.TypeInetService}},
		nft.Element{Key: []nft.Value{addr("2001:db8::10"), nft.ProtoValue(nft.ProtoTCP), nft.PortValue(8443)}})

	l4port := []nft.Field{nft.FieldL4Proto, nft.FieldTHDport}
	addChain(s, nft.Chain{Name: "pol-in-allow-web", Comment: "ns1/allow-web ingress rule list", Rules: []nft.Rule{
		{Comment: "rule 0", Exprs: []nft.Expr{
			nft.Lookup{Fields: []nft.Field{nft.FieldIPSaddr}, Set: "peer-v4-web"},
			nft.Lookup{Fields: l4port, Set: "ports-web"}, accept()}},
		{Comment: "rule 0", Exprs: []nft.Expr{
			nft.Lookup{Fields: []nft.Field{nft.FieldIP6Saddr}, Set: "peer-v6-web"},
			nft.Lookup{Fields: l4port, Set: "ports-web"}, accept()}},
		{Comment: "rule 1", Exprs: []nft.Expr{
			nft.Lookup{Fields: []nft.Field{nft.FieldIPSaddr}, Set: "cidr-v4-blk"}, accept()}},
		{Comment: "rule 1", Exprs: []nft.Expr{
			nft.Lookup{Fields: []nft.Field{nft.FieldIP6Saddr}, Set: "cidr-v6-blk"}, accept()}},
		{Comment: "rule 2", Exprs: []nft.Expr{
			nft.Lookup{Fields: []nft.Field{nft.FieldIPDaddr, nft.FieldL4Proto, nft.FieldTHDport}, Set: "named-v4-https"}, accept()}},
		{Comment: "rule 2", Exprs: []nft.Expr{
			nft.Lookup{Fields: []nft.Field{nft.FieldIP6Daddr, nft.FieldL4Proto, nft.FieldTHDport}, Set: "named-v6-https"}, accept()}},
	}})
	addChain(s, nft.Chain{Name: "pol-in-misc", Comment: "ns1/misc ingress rule list", Rules: []nft.Rule{
		{Exprs: []nft.Expr{nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(nft.ProtoTCP)},
			nft.Range{Field: nft.FieldTHDport, From: nft.PortValue(1000), To: nft.PortValue(2000)}, accept()}},
		{Exprs: []nft.Expr{nft.Cmp{Field: nft.FieldIifname, Value: nft.IfnameValue("veth-a")},
			nft.Cmp{Field: nft.FieldIPSaddr, Neq: true, Value: addr("198.18.0.12")}, accept()}},
		{Exprs: []nft.Expr{nft.Lookup{Fields: []nft.Field{nft.FieldIPSaddr}, Set: "peer-v4-empty", Neq: true},
			nft.Log{Prefix: "nftw "}, nft.Verdict{Kind: nft.VerdictReturn}}},
	}})
	addChain(s, nft.Chain{Name: "pod-in-a", Comment: "ns1/a ingress", Rules: []nft.Rule{
		{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: "pol-in-allow-web"}}},
		{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: "pol-in-misc"}}},
		{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}},
	}})
	addChain(s, nft.Chain{Name: "pod-eg-b", Comment: "ns1/b egress", Rules: []nft.Rule{
		{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}},
	}})
	return s
}

// edgeRanges holds interval elements at the edges of the key space and
// ranges that touch, which the kernel's rbtree stores as an end and a start
// with the same key.
func edgeRanges() *nft.State {
	s := nft.NewState()
	addSet(s, nft.Set{Name: "v4", Key: []nft.KeyType{nft.TypeIPv4Addr}, Interval: true},
		rng("0.0.0.0", "0.0.0.255"), rng("198.18.0.0", "198.18.0.127"), rng("198.18.0.128", "198.18.0.255"),
		v4("198.18.1.1"), v4("198.18.1.2"), rng("255.255.255.0", "255.255.255.255"))
	addSet(s, nft.Set{Name: "v6-all", Key: []nft.KeyType{nft.TypeIPv6Addr}, Interval: true},
		rng("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
	addSet(s, nft.Set{Name: "v6", Key: []nft.KeyType{nft.TypeIPv6Addr}, Interval: true},
		nft.Element{Key: []nft.Value{addr("2001:db8::1")}}, rng("2001:db8::2", "2001:db8::ff"))
	addSet(s, nft.Set{Name: "ports", Key: []nft.KeyType{nft.TypeInetProto, nft.TypeInetService}, Interval: true},
		portRange(nft.ProtoTCP, 0, 0), portRange(nft.ProtoTCP, 1, 65535), portRange(nft.ProtoSCTP, 65535, 65535))
	addSet(s, nft.Set{Name: "ifaces", Key: []nft.KeyType{nft.TypeIfname}},
		nft.Element{Key: []nft.Value{nft.IfnameValue("veth-a")}})
	addSet(s, nft.Set{Name: "v6-vmap", Key: []nft.KeyType{nft.TypeIPv6Addr}, VerdictMap: true},
		nft.Element{Key: []nft.Value{addr("2001:db8::1")}, Verdict: &nft.Verdict{Kind: nft.VerdictAccept}},
		nft.Element{Key: []nft.Value{addr("2001:db8::2")}, Verdict: &nft.Verdict{Kind: nft.VerdictDrop}})
	return s
}

// tagged is a peer set shared by two groups (tags 1 and 2) per family, and a
// named-port set shared the same way, each group's rule looking up its own
// tag.
func tagged() *nft.State {
	s := nft.NewState()
	tag := nft.TagValue
	peer := func(ip string, t uint32) nft.Element { return nft.Element{Key: []nft.Value{addr(ip), tag(t)}} }
	addSet(s, nft.Set{Name: "peers-v4", Key: []nft.KeyType{nft.TypeIPv4Addr, nft.TypeTag}, Comment: "peer groups"},
		peer("198.18.0.10", 1), peer("198.18.0.11", 2), peer("198.18.0.12", 2))
	addSet(s, nft.Set{Name: "peers-v6", Key: []nft.KeyType{nft.TypeIPv6Addr, nft.TypeTag}},
		peer("2001:db8::10", 1), peer("2001:db8::11", 2))
	addSet(s, nft.Set{Name: "named-v4", Key: []nft.KeyType{nft.TypeIPv4Addr, nft.TypeInetProto, nft.TypeInetService, nft.TypeTag}},
		nft.Element{Key: []nft.Value{addr("198.18.0.11"), nft.ProtoValue(nft.ProtoTCP), nft.PortValue(8443), tag(2)}})
	addSet(s, nft.Set{Name: "named-v6", Key: []nft.KeyType{nft.TypeIPv6Addr, nft.TypeInetProto, nft.TypeInetService, nft.TypeTag}},
		nft.Element{Key: []nft.Value{addr("2001:db8::11"), nft.ProtoValue(nft.ProtoTCP), nft.PortValue(8443), tag(2)}})
	lookup := func(set string, t uint32, fields ...nft.Field) nft.Lookup {
		return nft.Lookup{Fields: fields, Set: set, Tag: tag(t)}
	}
	addChain(s, nft.Chain{Name: "groups", Rules: []nft.Rule{
		{Comment: "group 1", Exprs: []nft.Expr{lookup("peers-v4", 1, nft.FieldIPSaddr), accept()}},
		{Comment: "group 1", Exprs: []nft.Expr{lookup("peers-v6", 1, nft.FieldIP6Saddr), accept()}},
		{Comment: "group 2", Exprs: []nft.Expr{lookup("peers-v4", 2, nft.FieldIPSaddr), nft.Counter{}, accept()}},
		{Comment: "not group 2", Exprs: []nft.Expr{func() nft.Lookup { l := lookup("peers-v6", 2, nft.FieldIP6Saddr); l.Neq = true; return l }(),
			nft.Verdict{Kind: nft.VerdictDrop}}},
		{Comment: "named, group 2", Exprs: []nft.Expr{lookup("named-v4", 2, nft.FieldIPDaddr, nft.FieldL4Proto, nft.FieldTHDport), accept()}},
		{Comment: "named, group 2", Exprs: []nft.Expr{lookup("named-v6", 2, nft.FieldIP6Daddr, nft.FieldL4Proto, nft.FieldTHDport), accept()}},
	}})
	return s
}

func applyState(t testing.TB, k *nft.Kernel, s *nft.State) {
	t.Helper()
	if err := k.Apply(context.Background(), nft.Diff(nil, s, nil)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// goldenPrograms are the states the golden and render tests program.
var goldenPrograms = []struct {
	name  string
	state func() *nft.State
}{
	{"skeleton", skeleton},
	{"program", program},
	{"edge-ranges", edgeRanges},
	{"tcp-flags", tcpFlags},
	{"objects", objectsProgram},
	{"tagged", tagged},
}

func TestKernelGolden(t *testing.T) {
	for _, tc := range goldenPrograms {
		t.Run(tc.name, func(t *testing.T) {
			ns, k := newKernel(t)
			st := tc.state()
			applyState(t, k, st)
			got := nfttest.ListTable(t, ns, testTable)
			golden := filepath.Join("testdata", "kernel", tc.name+".nft")
			want := nfttest.Golden(t, golden, nfttest.Normalize(got), *update)
			if diff := cmp.Diff(want, nfttest.Normalize(got)); diff != "" {
				t.Errorf("nft list differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestKernelReadRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state func() *nft.State
	}{
		{"empty", nft.NewState},
		{"skeleton", skeleton},
		{"program", program},
		{"edge ranges", edgeRanges},
		{"tcp flags", tcpFlags},
		{"objects", objectsProgram},
		{"tagged", tagged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, k := newKernel(t)
			want := tc.state()
			applyState(t, k, want)
			got, err := k.Read(context.Background())
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if tx := nft.Diff(got, want, nil); !tx.Empty() {
				t.Errorf("Diff(Read(), desired) is not empty:\n%s", tx)
				for _, op := range tx.Ops {
					if op.Kind == nft.OpReplaceRules {
						t.Logf("chain %s: got %#v\nwant %#v", op.Name, got.Chains[op.Name].Rules, want.Chains[op.Name].Rules)
					}
				}
			}
			for name, s := range want.Sets {
				if g := got.Sets[name]; g == nil || g.Comment != s.Comment {
					t.Errorf("set %q comment: got %+v, want %q", name, g, s.Comment)
				}
			}
		})
	}
}
