package nft

// Trace tests. The program tests use fxProgram and the IP plan in fake_test.go;
// the semantic tests build a tiny table per case:
//
//	198.18.0.1 / 2001:db8::1  source
//	198.18.0.2 / 2001:db8::2  destination
//	198.18.5.0/24             range used by interval sets

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func fxPacket(src, dst string, proto uint8, dport uint16) Packet {
	return Packet{
		Hook: HookForward, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		Proto: proto, Dport: dport, Iifname: "veth-src", Oifname: "veth-dst",
	}
}

// fxBase is a forward base chain.
func fxBase(name string, prio int, policy VerdictKind, rules ...Rule) *Chain {
	return &Chain{Name: name, Base: &BaseChain{Hook: HookForward, Priority: prio, Policy: policy}, Rules: rules}
}

func fxChain(name string, rules ...Rule) *Chain { return &Chain{Name: name, Rules: rules} }

func fxState(sets []*Set, chains ...*Chain) *State {
	s := NewState()
	fxAdd(s, sets...)
	fxAddChains(s, chains...)
	return s
}

func TestTraceSemantics(t *testing.T) {
	var (
		accept, drop = fxRule(fxAccept()), fxRule(fxDrop())
		ret          = fxRule(Verdict{Kind: VerdictReturn})
		tcp80        = fxPacket("198.18.0.1", "198.18.0.2", ProtoTCP, 80)
		v6tcp80      = fxPacket("2001:db8::1", "2001:db8::2", ProtoTCP, 80)
		src4         = Cmp{Field: FieldIPSaddr, Value: fxAddr("198.18.0.1")}
		dport        = func(p uint16) Cmp { return Cmp{Field: FieldTHDport, Value: PortValue(p)} }
		with         = func(p Packet, tweak func(*Packet)) Packet { tweak(&p); return p }
		v4           = []KeyType{TypeIPv4Addr}
		ports        = []KeyType{TypeInetProto, TypeInetService}
		addrPorts    = []KeyType{TypeIPv4Addr, TypeInetProto, TypeInetService}
		midStream    = MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask, Neq: true}
	)
	// Each case: policy-drop base chain "base" (or the given chains) and a packet.
	for _, tc := range []struct {
		name   string
		state  *State
		packet Packet
		want   VerdictKind
		// inPath must each appear in some step of the path, in this order.
		inPath []string
	}{
		// Base chains.
		{"no base chain accepts", fxState(nil, fxChain("x", drop)), tcp80, VerdictAccept, []string{"no base chain on hook forward"}},
		{"other hook ignored", fxState(nil, &Chain{Name: "in", Base: &BaseChain{Hook: HookInput, Policy: VerdictDrop}}), tcp80, VerdictAccept, nil},
		{"policy accept", fxState(nil, fxBase("base", 0, VerdictAccept)), tcp80, VerdictAccept, []string{"end of base chain, policy accept"}},
		{"policy drop", fxState(nil, fxBase("base", 0, VerdictDrop)), tcp80, VerdictDrop, []string{"policy drop"}},
		{"accept ends only its base chain", fxState(nil, fxBase("a", 0, VerdictAccept, accept), fxBase("b", 1, VerdictAccept, drop)),
			tcp80, VerdictDrop, []string{"a: accept", "base chain b", "b[0]: drop"}},
		{"drop ends everything", fxState(nil, fxBase("a", -5, VerdictAccept, drop), fxBase("b", 1, VerdictAccept, accept)),
			tcp80, VerdictDrop, []string{"a[0]: drop", "a: drop"}},
		{"priority order not name order", fxState(nil, fxBase("a", 10, VerdictAccept, drop), fxBase("b", 0, VerdictAccept, fxRule(Log{Prefix: "b"}))),
			tcp80, VerdictDrop, []string{"base chain b", "base chain a"}},
		{"both base chains accept", fxState(nil, fxBase("a", 0, VerdictDrop, accept), fxBase("b", 1, VerdictDrop, accept)), tcp80, VerdictAccept, nil},

		// ct state.
		{"ct new by default", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(MatchCtState{States: CtNew}, fxAccept()))), tcp80, VerdictAccept, nil},
		{"ct established in established,related", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(MatchCtState{States: CtEstablished | CtRelated}, fxAccept()))),
			with(tcp80, func(p *Packet) { p.Ct = CtRelated }), VerdictAccept, nil},
		{"ct new not in established,related", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(MatchCtState{States: CtEstablished | CtRelated}, fxAccept()))),
			tcp80, VerdictDrop, nil},
		{"ct invalid", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(MatchCtState{States: CtInvalid}, fxDrop()))),
			with(tcp80, func(p *Packet) { p.Ct = CtInvalid }), VerdictDrop, nil},

		// tcp flags: a new connection's packet is a SYN unless told otherwise.
		{"tcp flags: new packet is a SYN", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(midStream, fxDrop()), fxRule(fxAccept()))),
			tcp80, VerdictAccept, nil},
		{"tcp flags: mid-stream segment picked up as new", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(midStream, fxDrop()))),
			with(tcp80, func(p *Packet) { p.TCPFlags = TCPAck | TCPPsh }), VerdictDrop, []string{"tcp flags != syn / fin,syn,rst,ack drop"}},
		{"tcp flags: established packet is an ACK", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(midStream, fxDrop()))),
			with(tcp80, func(p *Packet) { p.Ct = CtEstablished }), VerdictDrop, nil},
		{"tcp flags: SYN with ECN setup starts a connection", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(midStream, fxDrop()))),
			with(tcp80, func(p *Packet) { p.TCPFlags = TCPSyn | TCPEcn | TCPCwr }), VerdictAccept, nil},
		{"tcp flags: SYN-ACK", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(midStream, fxDrop()))),
			with(tcp80, func(p *Packet) { p.TCPFlags = TCPSyn | TCPAck }), VerdictDrop, nil},
		{"tcp flags: != does not match UDP", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(midStream, fxDrop()))),
			with(tcp80, func(p *Packet) { p.Proto = ProtoUDP; p.TCPFlags = TCPAck }), VerdictAccept, nil},
		{"tcp flags: one of a mask", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(MatchTCPFlags{Mask: TCPFin | TCPRst, Neq: true}, fxDrop()))),
			with(tcp80, func(p *Packet) { p.TCPFlags = TCPRst | TCPAck }), VerdictDrop, nil},
		{"tcp flags: none of a mask", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(MatchTCPFlags{Mask: TCPFin | TCPRst}, fxDrop()))),
			with(tcp80, func(p *Packet) { p.TCPFlags = TCPRst | TCPAck }), VerdictAccept, nil},
		{"tcp flags: exactly", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(MatchTCPFlags{Flags: TCPSyn, Mask: 0xff}, fxDrop()))),
			with(tcp80, func(p *Packet) { p.TCPFlags = TCPSyn | TCPEcn }), VerdictAccept, nil},
		{"lookup in a verdict map asks only for membership", fxState([]*Set{
			fxSet("m", v4, []Element{fxVmapElem(fxAddr("198.18.0.1"), fxAccept())}, fxVmap),
		}, fxBase("base", 0, VerdictAccept, fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "m"}, fxDrop()))), tcp80, VerdictDrop, nil},

		// Cmp and Range, families and ports.
		{"ip saddr matches", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(src4, fxAccept()))), tcp80, VerdictAccept, nil},
		{"ip saddr on IPv6", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(src4, fxAccept()))), v6tcp80, VerdictDrop, nil},
		{"ip saddr != on IPv6 does not match", fxState(nil, fxBase("base", 0, VerdictAccept,
			fxRule(Cmp{Field: FieldIPSaddr, Neq: true, Value: fxAddr("198.18.9.9")}, fxDrop()))), v6tcp80, VerdictAccept, nil},
		{"ip saddr != matches other address", fxState(nil, fxBase("base", 0, VerdictAccept,
			fxRule(Cmp{Field: FieldIPSaddr, Neq: true, Value: fxAddr("198.18.9.9")}, fxDrop()))), tcp80, VerdictDrop, nil},
		{"ip6 daddr on IPv6", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Cmp{Field: FieldIP6Daddr, Value: fxAddr("2001:db8::2")}, fxAccept()))),
			v6tcp80, VerdictAccept, nil},
		{"ip6 daddr on IPv4", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Cmp{Field: FieldIP6Daddr, Value: fxAddr("2001:db8::2")}, fxAccept()))),
			tcp80, VerdictDrop, nil},
		{"IPv4-mapped source is IPv4", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(src4, fxAccept()))),
			with(tcp80, func(p *Packet) { p.Src = netip.MustParseAddr("::ffff:198.18.0.1") }), VerdictAccept, nil},
		{"nfproto", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Cmp{Field: FieldNfproto, Value: Value{NfprotoIPv6}}, fxAccept()))),
			v6tcp80, VerdictAccept, nil},
		{"l4proto", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Cmp{Field: FieldL4Proto, Value: ProtoValue(ProtoUDP)}, fxAccept()))),
			with(tcp80, func(p *Packet) { p.Proto = ProtoUDP }), VerdictAccept, nil},
		{"th dport tcp", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(dport(80), fxAccept()))), tcp80, VerdictAccept, nil},
		{"th dport sctp", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(dport(80), fxAccept()))),
			with(tcp80, func(p *Packet) { p.Proto = ProtoSCTP }), VerdictAccept, nil},
		{"th dport udplite", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(dport(80), fxAccept()))),
			with(tcp80, func(p *Packet) { p.Proto = ProtoUDPLite }), VerdictAccept, nil},
		{"th dport icmp has no port", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(dport(80), fxAccept()))),
			with(tcp80, func(p *Packet) { p.Proto = 1 }), VerdictDrop, nil},
		{"th dport != icmp does not match", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(Cmp{Field: FieldTHDport, Neq: true, Value: PortValue(1)}, fxDrop()))),
			with(tcp80, func(p *Packet) { p.Proto = 1 }), VerdictAccept, nil},
		{"range inclusive start", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Range{Field: FieldTHDport, From: PortValue(80), To: PortValue(90)}, fxAccept()))),
			tcp80, VerdictAccept, nil},
		{"range inclusive end", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Range{Field: FieldTHDport, From: PortValue(70), To: PortValue(80)}, fxAccept()))),
			tcp80, VerdictAccept, nil},
		{"range outside", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Range{Field: FieldTHDport, From: PortValue(81), To: PortValue(90)}, fxAccept()))),
			tcp80, VerdictDrop, nil},
		{"address range", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Range{Field: FieldIPDaddr, From: fxAddr("198.18.0.0"), To: fxAddr("198.18.0.255")}, fxAccept()))),
			tcp80, VerdictAccept, nil},
		{"all matches must hold", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(src4, dport(81), fxAccept()))), tcp80, VerdictDrop, nil},
		{"iifname", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Cmp{Field: FieldIifname, Value: IfnameValue("veth-src")}, fxAccept()))),
			tcp80, VerdictAccept, nil},
		{"oifname absent", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(Cmp{Field: FieldOifname, Neq: true, Value: IfnameValue("x")}, fxDrop()))),
			with(tcp80, func(p *Packet) { p.Oifname = "" }), VerdictAccept, nil},

		// Lookups.
		{"plain set hit", fxState([]*Set{fxSet("s", v4, []Element{fxElem(fxAddr("198.18.0.1"))})},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s"}, fxAccept()))), tcp80, VerdictAccept, nil},
		{"plain set miss", fxState([]*Set{fxSet("s", v4, []Element{fxElem(fxAddr("198.18.0.3"))})},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s"}, fxAccept()))), tcp80, VerdictDrop, nil},
		{"empty set matches nothing", fxState([]*Set{fxSet("s", v4, nil)},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s"}, fxAccept()))), tcp80, VerdictDrop, nil},
		{"neq lookup miss matches", fxState([]*Set{fxSet("s", v4, []Element{fxElem(fxAddr("198.18.0.3"))})},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s", Neq: true}, fxAccept()))), tcp80, VerdictAccept, nil},
		{"neq lookup hit does not match", fxState([]*Set{fxSet("s", v4, []Element{fxElem(fxAddr("198.18.0.1"))})},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s", Neq: true}, fxAccept()))), tcp80, VerdictDrop, nil},
		{"neq lookup on other family does not match", fxState([]*Set{fxSet("s", v4, nil)},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s", Neq: true}, fxAccept()))), v6tcp80, VerdictDrop, nil},
		{"interval set inclusive end", fxState([]*Set{fxSet("s", v4, []Element{fxRange(fxAddr("198.18.0.0"), fxAddr("198.18.0.1"))}, fxInterval)},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s"}, fxAccept()))), tcp80, VerdictAccept, nil},
		{"interval set single value", fxState([]*Set{fxSet("s", v4, []Element{fxElem(fxAddr("198.18.0.1"))}, fxInterval)},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s"}, fxAccept()))), tcp80, VerdictAccept, nil},
		{"interval set gap (carved except)", fxState([]*Set{fxSet("s", v4, []Element{
			fxRange(fxAddr("198.18.0.0"), fxAddr("198.18.0.0")), fxRange(fxAddr("198.18.0.2"), fxAddr("198.18.0.255"))}, fxInterval)},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s"}, fxAccept()))), tcp80, VerdictDrop, nil},
		{"concatenated set", fxState([]*Set{fxSet("s", addrPorts, []Element{fxElem(fxAddr("198.18.0.2"), ProtoValue(ProtoTCP), PortValue(80))})},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPDaddr, FieldL4Proto, FieldTHDport}, Set: "s"}, fxAccept()))), tcp80, VerdictAccept, nil},
		{"concatenated set other proto", fxState([]*Set{fxSet("s", addrPorts, []Element{fxElem(fxAddr("198.18.0.2"), ProtoValue(ProtoTCP), PortValue(80))})},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPDaddr, FieldL4Proto, FieldTHDport}, Set: "s"}, fxAccept()))),
			with(tcp80, func(p *Packet) { p.Proto = ProtoUDP }), VerdictDrop, nil},
		{"concatenated set with icmp has no key", fxState([]*Set{fxSet("s", ports, []Element{fxPorts(1, 0, 65535)}, fxInterval)},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldL4Proto, FieldTHDport}, Set: "s"}, fxAccept()))),
			with(tcp80, func(p *Packet) { p.Proto = 1 }), VerdictDrop, nil},
		{"concatenated interval port range", fxState([]*Set{fxSet("s", ports, []Element{fxPorts(ProtoTCP, 8000, 8080), fxPorts(ProtoTCP, 70, 80)}, fxInterval)},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldL4Proto, FieldTHDport}, Set: "s"}, fxAccept()))), tcp80, VerdictAccept, nil},
		{"concatenated interval compares each component", fxState([]*Set{fxSet("s", addrPorts, []Element{{
			Key:    []Value{fxAddr("198.18.0.0"), ProtoValue(ProtoTCP), PortValue(81)},
			KeyEnd: []Value{fxAddr("198.18.0.255"), ProtoValue(ProtoTCP), PortValue(81)},
		}}, fxInterval)},
			// As one byte string 198.18.0.2.tcp.80 lies between the bounds; per
			// component the port is outside 81-81.
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPDaddr, FieldL4Proto, FieldTHDport}, Set: "s"}, fxAccept()))), tcp80, VerdictDrop, nil},
		{"concatenated interval all components in range", fxState([]*Set{fxSet("s", addrPorts, []Element{{
			Key:    []Value{fxAddr("198.18.0.0"), ProtoValue(ProtoTCP), PortValue(1)},
			KeyEnd: []Value{fxAddr("198.18.0.255"), ProtoValue(ProtoTCP), PortValue(80)},
		}}, fxInterval)},
			fxBase("base", 0, VerdictDrop, fxRule(Lookup{Fields: []Field{FieldIPDaddr, FieldL4Proto, FieldTHDport}, Set: "s"}, fxAccept()))), tcp80, VerdictAccept, nil},

		// Verdict maps.
		{"vmap absent key continues", fxState([]*Set{fxSet("m", v4, nil, fxVmap)},
			fxBase("base", 0, VerdictDrop, fxRule(VerdictMapLookup{Fields: []Field{FieldIPSaddr}, Map: "m"}), accept)), tcp80, VerdictAccept, []string{"base[1]: accept"}},
		{"vmap drop", fxState([]*Set{fxSet("m", v4, []Element{fxVmapElem(fxAddr("198.18.0.1"), fxDrop())}, fxVmap)},
			fxBase("base", 0, VerdictAccept, fxRule(VerdictMapLookup{Fields: []Field{FieldIPSaddr}, Map: "m"}), accept)), tcp80, VerdictDrop, []string{"-> drop"}},
		{"vmap goto", fxState([]*Set{fxSet("m", v4, []Element{fxVmapElem(fxAddr("198.18.0.1"), fxGoto("pod"))}, fxVmap)},
			fxBase("base", 0, VerdictAccept, fxRule(VerdictMapLookup{Fields: []Field{FieldIPSaddr}, Map: "m"}), accept), fxChain("pod", drop)),
			tcp80, VerdictDrop, []string{"-> goto pod", "pod[0]: drop"}},
		{"vmap on other family", fxState([]*Set{fxSet("m", v4, []Element{fxVmapElem(fxAddr("198.18.0.1"), fxDrop())}, fxVmap)},
			fxBase("base", 0, VerdictAccept, fxRule(VerdictMapLookup{Fields: []Field{FieldIPSaddr}, Map: "m"}))), v6tcp80, VerdictAccept, nil},
		{"interval vmap", fxState([]*Set{fxSet("m", v4, []Element{{Key: []Value{fxAddr("198.18.0.0")}, KeyEnd: []Value{fxAddr("198.18.0.7")}, Verdict: &Verdict{Kind: VerdictDrop}}}, fxVmap, fxInterval)},
			fxBase("base", 0, VerdictAccept, fxRule(VerdictMapLookup{Fields: []Field{FieldIPSaddr}, Map: "m"}))), tcp80, VerdictDrop, nil},

		// Jump, goto, return, continue.
		{"jump returns at end of chain", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(fxJump("sub")), accept), fxChain("sub", fxRule(Counter{}))),
			tcp80, VerdictAccept, []string{"base[0]: jump sub", "sub[0]: counter", "sub: end of chain, return to base", "base[1]: accept"}},
		{"accept in jumped chain ends base chain", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(fxJump("sub")), drop), fxChain("sub", accept)),
			tcp80, VerdictAccept, nil},
		{"return pops", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(fxJump("sub")), accept), fxChain("sub", ret, drop)), tcp80, VerdictAccept, nil},
		{"goto does not return", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(fxGoto("sub")), accept), fxChain("sub", fxRule(Counter{}))),
			tcp80, VerdictDrop, []string{"base[0]: goto sub", "end of base chain, policy drop"}},
		{"goto inside jump returns to jumper", fxState(nil,
			fxBase("base", 0, VerdictDrop, fxRule(fxJump("a")), accept), fxChain("a", fxRule(fxGoto("b")), drop), fxChain("b")),
			tcp80, VerdictAccept, []string{"b: end of chain, return to base"}},
		{"return from base chain applies policy", fxState(nil, fxBase("base", 0, VerdictDrop, ret, accept)), tcp80, VerdictDrop, []string{"return from base chain, policy drop"}},
		{"continue goes on", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Verdict{Kind: VerdictContinue}), accept)), tcp80, VerdictAccept, nil},
		{"counter and log are no-ops", fxState(nil, fxBase("base", 0, VerdictDrop, fxRule(Counter{}, Log{Prefix: "x"}), fxRule(Log{}, fxAccept()))), tcp80, VerdictAccept, nil},
		{"jump stack overflow drops", fxState(nil, fxJumpChainLength(maxJumpDepth+1)...), tcp80, VerdictDrop, []string{"jump stack overflow"}},
		{"jump stack at the limit", fxState(nil, fxJumpChainLength(maxJumpDepth)...), tcp80, VerdictAccept, nil},
		{"goto loop ends", fxState(nil, fxBase("base", 0, VerdictAccept, fxRule(fxGoto("a"))), fxChain("a", fxRule(fxGoto("a")))),
			tcp80, VerdictDrop, []string{"goto loop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Trace(tc.state, tc.packet)
			if got.Verdict != tc.want {
				t.Errorf("verdict %v, want %v; %s", got.Verdict, tc.want, got)
			}
			i := 0
			for _, step := range got.Path {
				if i < len(tc.inPath) && strings.Contains(step, tc.inPath[i]) {
					i++
				}
			}
			if i < len(tc.inPath) {
				t.Errorf("path lacks %q (in order); %s", tc.inPath[i], got)
			}
		})
	}
}

// fxJumpChainLength is a base chain that jumps n chains deep and accepts at the
// bottom (policy drop).
func fxJumpChainLength(n int) []*Chain {
	chains := []*Chain{fxBase("base", 0, VerdictDrop, fxRule(fxJump("j1")))}
	for i := 1; i <= n; i++ {
		r := fxRule(fxJump(fmt.Sprintf("j%d", i+1)))
		if i == n {
			r = fxRule(fxAccept())
		}
		chains = append(chains, fxChain(fmt.Sprintf("j%d", i), r))
	}
	return chains
}

// midStream makes p a TCP segment from the middle of a stream that conntrack
// sees as new (its entry is gone).
func midStream(p Packet) Packet {
	p.TCPFlags = TCPAck | TCPPsh
	return p
}

// TestTraceProgram traces flows of the IP plan through the full program, as
// installed through a Fake.
func TestTraceProgram(t *testing.T) {
	f := NewFake("nftwarden")
	if got := f.Trace(fxPacket("198.18.0.20", "198.18.0.10", ProtoTCP, 80)); got.Verdict != VerdictAccept {
		t.Fatalf("trace before the table exists: %v", got)
	}
	if _, err := f.Reconcile(context.Background(), fxProgram()); err != nil {
		t.Fatal(err)
	}
	const (
		web4, web6   = "198.18.0.10", "2001:db8::a"
		fe4, fe6     = "198.18.0.20", "2001:db8::20"
		fe2v4, fe2v6 = "198.18.0.21", "2001:db8::21"
		db4, db6     = "198.18.0.30", "2001:db8::30"
	)
	for _, tc := range []struct {
		name   string
		packet Packet
		want   VerdictKind
	}{
		{"frontend to web tcp 80", fxPacket(fe4, web4, ProtoTCP, 80), VerdictAccept},
		{"frontend to web tcp 80 v6", fxPacket(fe6, web6, ProtoTCP, 80), VerdictAccept},
		{"frontend egress allows only tcp 80", fxPacket(fe4, web4, ProtoTCP, 8000), VerdictDrop},
		{"frontend egress only to web", fxPacket(fe4, db4, ProtoTCP, 80), VerdictDrop},
		{"frontend-2 (not isolated) to web tcp 8000", fxPacket(fe2v4, web4, ProtoTCP, 8000), VerdictAccept},
		{"frontend-2 to web tcp 8080 end of range", fxPacket(fe2v4, web4, ProtoTCP, 8080), VerdictAccept},
		{"frontend-2 to web tcp 8081", fxPacket(fe2v4, web4, ProtoTCP, 8081), VerdictDrop},
		{"frontend-2 to web udp any", fxPacket(fe2v6, web6, ProtoUDP, 9999), VerdictAccept},
		{"frontend-2 to web sctp", fxPacket(fe2v4, web4, ProtoSCTP, 80), VerdictDrop},
		{"frontend-2 to web icmp", fxPacket(fe2v4, web4, 1, 0), VerdictDrop},
		{"frontend-2 to db", fxPacket(fe2v4, db4, ProtoTCP, 80), VerdictDrop},
		{"frontend-2 to db v6", fxPacket(fe2v6, db6, ProtoUDP, 53), VerdictDrop},
		{"frontend-2 to frontend (not isolated)", fxPacket(fe2v4, fe4, ProtoTCP, 1), VerdictAccept},
		{"external to web any port", fxPacket("198.19.0.5", web4, ProtoTCP, 22), VerdictAccept},
		{"external to web icmp", fxPacket("198.19.200.1", web4, 1, 0), VerdictAccept},
		{"external except to web", fxPacket("198.19.1.5", web4, ProtoTCP, 22), VerdictDrop},
		{"external except to web named port", fxPacket("198.19.1.5", web4, ProtoTCP, 8080), VerdictAccept},
		{"external except to web named port v6", fxPacket("2001:db8:100:1::5", web6, ProtoTCP, 8080), VerdictAccept},
		{"external except to web named port udp", fxPacket("198.19.1.5", web4, ProtoUDP, 8080), VerdictDrop},
		{"external v6 to web", fxPacket("2001:db8:100:ffff::1", web6, ProtoUDP, 1), VerdictAccept},
		{"external v6 except to web", fxPacket("2001:db8:100:1::1", web6, ProtoUDP, 1), VerdictDrop},
		{"established reply to frontend", func() Packet {
			p := fxPacket(db4, fe4, ProtoTCP, 40000)
			p.Ct = CtEstablished
			return p
		}(), VerdictAccept},
		{"invalid dropped", func() Packet {
			p := fxPacket(fe2v4, fe4, ProtoTCP, 1)
			p.Ct = CtInvalid
			return p
		}(), VerdictDrop},
		// A TCP segment conntrack picks up as new that starts no connection
		// (the entry was revoked or lost) is dropped when it comes from a pod
		// isolated for ingress or goes to one isolated for egress, even where
		// policy would admit it as a new connection.
		{"mid-stream from web (ingress isolated) to frontend-2", midStream(fxPacket(web4, fe2v4, ProtoTCP, 40000)), VerdictDrop},
		{"mid-stream from web v6", midStream(fxPacket(web6, fe2v6, ProtoTCP, 40000)), VerdictDrop},
		{"SYN from web to frontend-2", fxPacket(web4, fe2v4, ProtoTCP, 40000), VerdictAccept},
		{"mid-stream from web to frontend-2, established", func() Packet {
			p := midStream(fxPacket(web4, fe2v4, ProtoTCP, 40000))
			p.Ct = CtEstablished
			return p
		}(), VerdictAccept},
		{"mid-stream to frontend (egress isolated) from frontend-2", midStream(fxPacket(fe2v4, fe4, ProtoTCP, 40000)), VerdictDrop},
		{"mid-stream to frontend v6", midStream(fxPacket(fe2v6, fe6, ProtoTCP, 40000)), VerdictDrop},
		{"SYN to frontend from frontend-2", fxPacket(fe2v4, fe4, ProtoTCP, 1), VerdictAccept},
		{"mid-stream between addresses that are not isolated so", midStream(fxPacket("198.19.0.5", fe2v4, ProtoTCP, 40000)), VerdictAccept},
		{"mid-stream from frontend (egress isolated) that its policies admit", midStream(fxPacket(fe4, web4, ProtoTCP, 80)), VerdictAccept},
		{"mid-stream into web that policy admits", midStream(fxPacket(fe2v4, web4, ProtoTCP, 8000)), VerdictAccept},
		{"UDP from web to frontend-2", fxPacket(web4, fe2v4, ProtoUDP, 40000), VerdictAccept},
		{"input hook has no base chains", func() Packet {
			p := fxPacket(fe4, db4, ProtoTCP, 80)
			p.Hook = HookInput
			return p
		}(), VerdictAccept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := f.Trace(tc.packet); got.Verdict != tc.want {
				t.Errorf("verdict %v, want %v; %s", got.Verdict, tc.want, got)
			}
		})
	}

	// The path names chains, rule indexes and comments.
	got := f.Trace(fxPacket("198.18.0.1", web4, ProtoTCP, 8080))
	want := []string{
		"forward: base chain egress (priority 0, policy accept)",
		"egress: end of base chain, policy accept",
		"forward: base chain ingress (priority 1, policy accept)",
		"ingress[4]: ip daddr vmap @ingress-v4 -> goto pod-in-web",
		"pod-in-web[0]: jump pol-in-allow-web",
		`pol-in-allow-web[4]: ip daddr . meta l4proto . th dport @named-v4-http accept comment "rule 2: port http"`,
		"ingress: accept",
	}
	if strings.Join(got.Path, "\n") != strings.Join(want, "\n") {
		t.Errorf("path:\n%s\nwant:\n%s", strings.Join(got.Path, "\n"), strings.Join(want, "\n"))
	}
}

func BenchmarkTraceProgram(b *testing.B) {
	s := fxProgram()
	p := fxPacket("198.19.1.5", "198.18.0.10", ProtoTCP, 8080)
	for b.Loop() {
		if Trace(s, p).Verdict != VerdictAccept {
			b.Fatal("wrong verdict")
		}
	}
}

// TestTraceConcurrentWithApply: Trace reads the table while Apply replaces it
// (run with -race).
func TestTraceConcurrentWithApply(t *testing.T) {
	ctx := context.Background()
	f := NewFake("t")
	states := []*State{fxProgram(), fxSkeleton()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			if _, err := f.Reconcile(ctx, states[i%2]); err != nil {
				t.Errorf("Reconcile: %v", err)
				return
			}
		}
	}()
	p := fxPacket("198.18.0.21", "198.18.0.30", ProtoTCP, 80)
	for {
		select {
		case <-done:
			return
		default:
			// Either program: db isolated (drop) or no pods isolated (accept).
			if v := f.Trace(p).Verdict; v != VerdictAccept && v != VerdictDrop {
				t.Fatalf("verdict %v", v)
			}
		}
	}
}

func ExampleFake_Trace() {
	s := NewState()
	s.Chains["forward"] = &Chain{
		Name: "forward",
		Base: &BaseChain{Hook: HookForward, Priority: PriorityFilter, Policy: VerdictAccept},
		Rules: []Rule{
			{Exprs: []Expr{MatchCtState{States: CtEstablished | CtRelated}, Verdict{Kind: VerdictAccept}}},
			{Exprs: []Expr{VerdictMapLookup{Fields: []Field{FieldIPDaddr}, Map: "pods"}}},
		},
	}
	s.Chains["pod-a"] = &Chain{Name: "pod-a", Rules: []Rule{
		{Exprs: []Expr{Lookup{Fields: []Field{FieldL4Proto, FieldTHDport}, Set: "web"}, Verdict{Kind: VerdictAccept}}, Comment: "web ports"},
		{Exprs: []Expr{Verdict{Kind: VerdictDrop}}},
	}}
	s.Sets["pods"] = &Set{Name: "pods", Key: []KeyType{TypeIPv4Addr}, VerdictMap: true}
	s.Sets["web"] = &Set{Name: "web", Key: []KeyType{TypeInetProto, TypeInetService}, Interval: true}

	f := NewFake("example")
	if _, err := f.Reconcile(context.Background(), s); err != nil {
		fmt.Println(err)
		return
	}
	// Elements go in after the chains they point to exist.
	var tx Transaction
	tx.AddElements("pods", Element{Key: []Value{AddrValue(netip.MustParseAddr("198.18.0.10"))}, Verdict: &Verdict{Kind: VerdictGoto, Chain: "pod-a"}})
	tx.AddElements("web", Element{
		Key:    []Value{ProtoValue(ProtoTCP), PortValue(80)},
		KeyEnd: []Value{ProtoValue(ProtoTCP), PortValue(89)},
	})
	if err := f.Apply(context.Background(), &tx); err != nil {
		fmt.Println(err)
		return
	}
	for _, port := range []uint16{85, 443} {
		r := f.Trace(Packet{
			Hook: HookForward, Src: netip.MustParseAddr("198.18.0.20"), Dst: netip.MustParseAddr("198.18.0.10"),
			Proto: ProtoTCP, Dport: port,
		})
		fmt.Println(r)
	}
	// Output:
	// accept:
	//   forward: base chain forward (priority 0, policy accept)
	//   forward[1]: ip daddr vmap @pods -> goto pod-a
	//   pod-a[0]: meta l4proto . th dport @web accept comment "web ports"
	//   forward: accept
	// drop:
	//   forward: base chain forward (priority 0, policy accept)
	//   forward[1]: ip daddr vmap @pods -> goto pod-a
	//   pod-a[1]: drop
	//   forward: drop
}
