package nft

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Unprivileged tests of the lowering: every vocabulary expression survives
// lowering and lifting unchanged, and the kernel expressions are the ones nft
// emits for the same rule text.

func a4(s string) Value { return AddrValue(netip.MustParseAddr(s)) }

func TestLowerLiftRoundTrip(t *testing.T) {
	l4port := []Field{FieldL4Proto, FieldTHDport}
	for _, tc := range []struct {
		name  string
		exprs []Expr
	}{
		{"ct state", []Expr{MatchCtState{States: CtEstablished | CtRelated}, Verdict{Kind: VerdictAccept}}},
		{"vmap v4", []Expr{VerdictMapLookup{Fields: []Field{FieldIPSaddr}, Map: "egress-v4"}}},
		{"vmap v6", []Expr{VerdictMapLookup{Fields: []Field{FieldIP6Daddr}, Map: "ingress-v6"}}},
		{"peer and ports", []Expr{Lookup{Fields: []Field{FieldIPSaddr}, Set: "p"}, Lookup{Fields: l4port, Set: "ports"}, Verdict{Kind: VerdictAccept}}},
		{"two v4 fields share one dependency", []Expr{Lookup{Fields: []Field{FieldIPSaddr}, Set: "p"}, Cmp{Field: FieldIPDaddr, Value: a4("198.18.0.1")}}},
		{"named ports v6", []Expr{Lookup{Fields: []Field{FieldIP6Daddr, FieldL4Proto, FieldTHDport}, Set: "n"}, Verdict{Kind: VerdictAccept}}},
		{"explicit nfproto before ip field", []Expr{Cmp{Field: FieldNfproto, Value: Value{NfprotoIPv4}}, Lookup{Fields: []Field{FieldIPSaddr}, Set: "p"}}},
		{"explicit nfproto alone", []Expr{Cmp{Field: FieldNfproto, Value: Value{NfprotoIPv6}}, Verdict{Kind: VerdictDrop}}},
		{"negations", []Expr{Lookup{Fields: []Field{FieldIPSaddr}, Set: "p", Neq: true}, Cmp{Field: FieldL4Proto, Neq: true, Value: ProtoValue(ProtoUDP)}}},
		{"range", []Expr{Cmp{Field: FieldL4Proto, Value: ProtoValue(ProtoTCP)}, Range{Field: FieldTHDport, From: PortValue(1000), To: PortValue(2000)}}},
		{"ip range", []Expr{Range{Field: FieldIP6Saddr, From: a4("2001:db8::"), To: a4("2001:db8::ff")}}},
		{"interfaces", []Expr{Cmp{Field: FieldIifname, Value: IfnameValue("eth0")}, Cmp{Field: FieldOifname, Neq: true, Value: IfnameValue("lo")}}},
		{"counter log jump", []Expr{Counter{}, Log{Prefix: "x "}, Verdict{Kind: VerdictJump, Chain: "c"}}},
		{"log without prefix", []Expr{Log{}, Verdict{Kind: VerdictGoto, Chain: "c"}}},
		{"named objects and nflog", []Expr{CounterRef{Name: "np/a:b"}, LimitRef{Name: "deny-log"}, Log{Prefix: "nftw deny in np", Group: 100, NFLog: true}, Verdict{Kind: VerdictDrop}}},
		{"nflog group 0 without prefix", []Expr{Log{NFLog: true}}},
		{"tcp flags", []Expr{MatchCtState{States: CtNew}, MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask, Neq: true},
			Lookup{Fields: []Field{FieldIPSaddr}, Set: "ingress-v4"}, Verdict{Kind: VerdictDrop}}},
		{"tcp flags without mask", []Expr{MatchTCPFlags{Flags: TCPSyn, Mask: 0xff}}},
		{"tcp flags any of a mask", []Expr{MatchTCPFlags{Mask: TCPSyn | TCPAck, Neq: true}}},
		{"two tcp flags matches share one dependency", []Expr{MatchTCPFlags{Flags: TCPSyn, Mask: TCPSyn}, MatchTCPFlags{Mask: TCPAck}}},
		{"explicit l4proto tcp before tcp flags", []Expr{Cmp{Field: FieldL4Proto, Value: ProtoValue(ProtoTCP)}, MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask}}},
		{"tcp flags then port", []Expr{MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask}, Cmp{Field: FieldL4Proto, Value: ProtoValue(ProtoTCP)},
			Cmp{Field: FieldTHDport, Value: PortValue(80)}}},
		{"l4proto tcp alone", []Expr{Cmp{Field: FieldL4Proto, Value: ProtoValue(ProtoTCP)}, Lookup{Fields: []Field{FieldIPSaddr}, Set: "p"}}},
		{"return", []Expr{Verdict{Kind: VerdictReturn}}},
		{"continue", []Expr{Verdict{Kind: VerdictContinue}}},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kexprs, ud, err := lowerRule(Rule{Exprs: tc.exprs, Comment: "c"})
			if err != nil {
				t.Fatalf("lowerRule: %v", err)
			}
			if len(ud) == 0 {
				t.Error("comment not in userdata")
			}
			got, err := liftRule(kexprs)
			if err != nil {
				t.Fatalf("liftRule: %v", err)
			}
			if RuleKey(Rule{Exprs: got}) != RuleKey(Rule{Exprs: tc.exprs}) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, tc.exprs)
			}
		})
	}
}

// TestLowerMatchesNft compares with `nft --debug=netlink` output for the same
// rules (nft 1.0.6).
func TestLowerMatchesNft(t *testing.T) {
	nfproto4 := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{2}},
	}
	for _, tc := range []struct {
		name  string
		exprs []Expr
		want  []expr.Any
	}{
		{"ct state established,related accept", []Expr{MatchCtState{States: CtEstablished | CtRelated}, Verdict{Kind: VerdictAccept}}, []expr.Any{
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{6, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}},
		{"ip saddr vmap @m", []Expr{VerdictMapLookup{Fields: []Field{FieldIPSaddr}, Map: "m"}}, append(nfproto4,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: "m", IsDestRegSet: true, DestRegister: 0},
		)},
		{"ip daddr . meta l4proto . th dport @n", []Expr{Lookup{Fields: []Field{FieldIPDaddr, FieldL4Proto, FieldTHDport}, Set: "n"}}, append(nfproto4,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
			&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: "n"},
		)},
		{"ct state new tcp flags != syn / fin,syn,rst,ack ip saddr @ingress-v4 drop", []Expr{
			MatchCtState{States: CtNew}, MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask, Neq: true},
			Lookup{Fields: []Field{FieldIPSaddr}, Set: "ingress-v4"}, Verdict{Kind: VerdictDrop}}, append(append([]expr.Any{
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{8, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{2}},
		}, nfproto4...),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: "ingress-v4"},
			&expr.Verdict{Kind: expr.VerdictDrop},
		)},
		{"tcp flags == syn", []Expr{MatchTCPFlags{Flags: TCPSyn, Mask: 0xff}}, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{2}},
		}},
		{`counter name "c" limit name "l" log prefix "p" group 5`, []Expr{CounterRef{Name: "c"}, LimitRef{Name: "l"}, Log{Prefix: "p", Group: 5, NFLog: true}}, []expr.Any{
			&expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: "c"},
			&expr.Objref{Type: unix.NFT_OBJECT_LIMIT, Name: "l"},
			&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: 5, Data: []byte("p")},
		}},
		{"log group 0", []Expr{Log{NFLog: true}}, []expr.Any{&expr.Log{Key: 1 << unix.NFTA_LOG_GROUP}}},
		{"counter (read values are not sent)", []Expr{Counter{Packets: 5, Bytes: 300}}, []expr.Any{&expr.Counter{}}},
		{"th dport 1000-2000", []Expr{Range{Field: FieldTHDport, From: PortValue(1000), To: PortValue(2000)}}, []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: []byte{0x03, 0xe8}},
			&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: []byte{0x07, 0xd0}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := lowerRule(Rule{Exprs: tc.exprs})
			if err != nil {
				t.Fatalf("lowerRule: %v", err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("kernel expressions (-want +got):\n%s", d)
			}
		})
	}
}

func TestLowerRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		exprs []Expr
	}{
		{"short value", []Expr{Cmp{Field: FieldIPSaddr, Value: Value{1, 2}}}},
		{"verdict not last", []Expr{Verdict{Kind: VerdictAccept}, Counter{}}},
		{"jump without chain", []Expr{Verdict{Kind: VerdictJump}}},
		{"lookup without set", []Expr{Lookup{Fields: []Field{FieldIPSaddr}}}},
		{"lookup without fields", []Expr{Lookup{Set: "s"}}},
		{"empty ct state", []Expr{MatchCtState{}}},
		{"tcp flags without a mask", []Expr{MatchTCPFlags{Flags: 0}}},
		{"tcp flags outside the mask", []Expr{MatchTCPFlags{Flags: TCPSyn | TCPAck, Mask: TCPSyn}}},
		{"log prefix too long", []Expr{Log{Prefix: string(make([]byte, MaxLogPrefix+1))}}},
		{"log group without nflog", []Expr{Log{Group: 1}}},
		{"counter name empty", []Expr{CounterRef{}}},
		{"limit name empty", []Expr{LimitRef{}}},
		{"concatenation too long", []Expr{Lookup{Set: "s", Fields: []Field{FieldIP6Saddr, FieldIP6Daddr, FieldIP6Saddr, FieldIP6Daddr, FieldL4Proto}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := lowerRule(Rule{Exprs: tc.exprs}); !IsInvalid(err) {
				t.Errorf("lowerRule: got %v, want ErrInvalid", err)
			}
		})
	}
}

// TestElementsRoundTrip encodes elements as the kernel receives them and
// decodes them as the kernel lists them (same elements, kernel order
// reversed, as rbtree dumps come in descending order).
func TestElementsRoundTrip(t *testing.T) {
	goto4 := func(ip, chain string) Element {
		return Element{Key: []Value{a4(ip)}, Verdict: &Verdict{Kind: VerdictGoto, Chain: chain}}
	}
	r := func(from, to string) Element { return Element{Key: []Value{a4(from)}, KeyEnd: []Value{a4(to)}} }
	pp := func(p uint8, from, to uint16) Element {
		e := Element{Key: []Value{ProtoValue(p), PortValue(from)}}
		if from != to {
			e.KeyEnd = []Value{ProtoValue(p), PortValue(to)}
		}
		return e
	}
	for _, tc := range []struct {
		name      string
		def       setDef
		elems     []Element
		kernelLen int // elements sent to the kernel
	}{
		{"plain", setDef{Key: []KeyType{TypeIPv4Addr}}, []Element{{Key: []Value{a4("198.18.0.1")}}, {Key: []Value{a4("198.18.0.2")}}}, 2},
		{"vmap", setDef{Key: []KeyType{TypeIPv4Addr}, VerdictMap: true}, []Element{goto4("198.18.0.1", "a"), goto4("198.18.0.2", "b")}, 2},
		{"concat", setDef{Key: []KeyType{TypeIPv6Addr, TypeInetProto, TypeInetService}},
			[]Element{{Key: []Value{a4("2001:db8::1"), ProtoValue(ProtoTCP), PortValue(443)}}}, 1},
		{"interval v4", setDef{Key: []KeyType{TypeIPv4Addr}, Interval: true}, []Element{
			r("0.0.0.0", "0.0.0.255"), r("198.19.0.0", "198.19.0.255"), r("198.19.1.0", "198.19.1.255"),
			{Key: []Value{a4("198.18.7.7")}}, r("203.0.113.0", "255.255.255.255"),
		}, 9},
		{"interval v6 to the top", setDef{Key: []KeyType{TypeIPv6Addr}, Interval: true}, []Element{
			r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
		}, 1},
		{"concat interval", setDef{Key: []KeyType{TypeInetProto, TypeInetService}, Interval: true}, []Element{
			pp(ProtoTCP, 80, 80), pp(ProtoTCP, 8000, 8080), pp(ProtoUDP, 0, 65535),
		}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kes, err := tc.def.encodeElements(tc.elems)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if len(kes) != tc.kernelLen {
				t.Errorf("encoded %d kernel elements, want %d", len(kes), tc.kernelLen)
			}
			// What the kernel lists: verdicts come back as raw attributes.
			listed := make([]nftables.SetElement, len(kes))
			for i, ke := range kes {
				listed[len(kes)-1-i] = ke
				if ke.VerdictData != nil {
					listed[len(kes)-1-i].Val = verdictAttrs(t, ke.VerdictData)
				}
			}
			got, err := tc.def.decodeElements(listed)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			s := &Set{Key: tc.def.Key}
			ids := func(es []Element) map[string]string {
				m := map[string]string{}
				for _, e := range es {
					v := ""
					if e.Verdict != nil {
						v = e.Verdict.Chain
					}
					m[ElementID(s, e)] = v
				}
				return m
			}
			if d := cmp.Diff(ids(tc.elems), ids(got)); d != "" {
				t.Errorf("round trip (-want +got):\n%s", d)
			}
		})
	}
}

func verdictAttrs(t *testing.T, v *expr.Verdict) []byte {
	t.Helper()
	b := []byte{8, 0, unix.NFTA_VERDICT_CODE, 0}
	b = append(b, byte(uint32(v.Kind)>>24), byte(uint32(v.Kind)>>16), byte(uint32(v.Kind)>>8), byte(uint32(v.Kind)))
	if v.Chain != "" {
		name := append([]byte(v.Chain), 0)
		l := 4 + len(name)
		b = append(b, byte(l), 0, unix.NFTA_VERDICT_CHAIN, 0)
		b = append(b, name...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

func TestEncodeRejects(t *testing.T) {
	d := setDef{Key: []KeyType{TypeIPv4Addr}, Interval: true}
	for _, tc := range []struct {
		name string
		def  setDef
		e    Element
	}{
		{"reversed range", d, Element{Key: []Value{a4("198.18.0.9")}, KeyEnd: []Value{a4("198.18.0.1")}}},
		{"wrong length", d, Element{Key: []Value{{1, 2, 3}}}},
		{"range in plain set", setDef{Key: []KeyType{TypeIPv4Addr}}, Element{Key: []Value{a4("198.18.0.1")}, KeyEnd: []Value{a4("198.18.0.2")}}},
		{"verdict in plain set", setDef{Key: []KeyType{TypeIPv4Addr}}, Element{Key: []Value{a4("198.18.0.1")}, Verdict: &Verdict{Kind: VerdictAccept}}},
		{"no verdict in vmap", setDef{Key: []KeyType{TypeIPv4Addr}, VerdictMap: true}, Element{Key: []Value{a4("198.18.0.1")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.def.encodeElements([]Element{tc.e}); !IsInvalid(err) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
}

// TestLiftCounterValues: a read keeps the values of rule counters, which
// RuleKey (and so Diff) ignores.
func TestLiftCounterValues(t *testing.T) {
	got, err := liftRule([]expr.Any{&expr.Counter{Packets: 7, Bytes: 420}, &expr.Verdict{Kind: expr.VerdictDrop}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Expr{Counter{Packets: 7, Bytes: 420}, Verdict{Kind: VerdictDrop}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("liftRule (-want +got):\n%s", d)
	}
	if RuleKey(Rule{Exprs: got}) != RuleKey(Rule{Exprs: []Expr{Counter{}, Verdict{Kind: VerdictDrop}}}) {
		t.Error("RuleKey tells rules apart by their counter values")
	}
	if _, err := liftRule([]expr.Any{&expr.Objref{Type: unix.NFT_OBJECT_QUOTA, Name: "q"}}); err == nil {
		t.Error("a reference to a quota lifted without error")
	}
	if _, err := liftRule([]expr.Any{&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN, Snaplen: 64}}); err == nil {
		t.Error("an NFLOG statement with a snaplen lifted without error")
	}
}
