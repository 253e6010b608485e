package nft

// Unprivileged tests of tagged lookups (Lookup.Tag): one set shared by many
// groups, each group's elements and rule carrying its tag. IP plan:
//
//	198.18.0.1 / 2001:db8::1  in group 1
//	198.18.0.2 / 2001:db8::2  in group 2
//	198.18.0.3 / 2001:db8::3  in no group
//	destination               198.18.0.9 / 2001:db8::9, tcp 443 named in group 2

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

var (
	namedKey4 = []Field{FieldIPDaddr, FieldL4Proto, FieldTHDport}
	namedKey6 = []Field{FieldIP6Daddr, FieldL4Proto, FieldTHDport}
)

func tagged(fields []Field, set string, tag uint32) Lookup {
	return Lookup{Fields: fields, Set: set, Tag: TagValue(tag)}
}

func TestTagValue(t *testing.T) {
	// nft prints a mark as a 32-bit host-order number, 8 hex digits.
	for tag, want := range map[uint32]string{0: "0x00000000", 1: "0x00000001", 42: "0x0000002a", 0xdeadbeef: "0xdeadbeef"} {
		v := TagValue(tag)
		if len(v) != TypeTag.Len() {
			t.Fatalf("TagValue(%d) is %d bytes, want %d", tag, len(v), TypeTag.Len())
		}
		if binary.NativeEndian.Uint32(v) != tag {
			t.Errorf("TagValue(%#x) = %x, not in host byte order", tag, []byte(v))
		}
		if got := FormatValue(TypeTag, v); got != want {
			t.Errorf("FormatValue(TypeTag, TagValue(%#x)) = %q, want %q", tag, got, want)
		}
	}
}

// TestLowerLiftTagged: a tagged lookup lowers to the loads of its fields, an
// immediate of the tag into the next 32-bit register and a lookup from
// register 1, and lifts back to itself, also with the registers named as the
// kernel dumps them.
func TestLowerLiftTagged(t *testing.T) {
	nfproto := func(f byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f}}}
	}
	saddr4 := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
	saddr6 := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16}
	tag := TagValue(42)
	for _, tc := range []struct {
		name string
		l    Lookup
		want []expr.Any
		// dumped maps a register as sent to the name the kernel dumps it
		// under (a 32-bit register that starts a 128-bit one).
		dumped map[uint32]uint32
	}{
		{"v4 one field", tagged([]Field{FieldIPSaddr}, "peers-v4", 42), append(nfproto(NfprotoIPv4),
			saddr4,
			&expr.Immediate{Register: unix.NFT_REG32_01, Data: tag},
			&expr.Lookup{SourceRegister: 1, SetName: "peers-v4"}), nil},
		{"v6 one field", tagged([]Field{FieldIP6Saddr}, "peers-v6", 42), append(nfproto(NfprotoIPv6),
			saddr6,
			&expr.Immediate{Register: unix.NFT_REG32_04, Data: tag},
			&expr.Lookup{SourceRegister: 1, SetName: "peers-v6"}), map[uint32]uint32{unix.NFT_REG32_04: unix.NFT_REG_2}},
		{"v4 three fields", tagged(namedKey4, "named-v4", 42), append(nfproto(NfprotoIPv4),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG32_01},
			&expr.Payload{DestRegister: unix.NFT_REG32_02, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Immediate{Register: unix.NFT_REG32_03, Data: tag},
			&expr.Lookup{SourceRegister: 1, SetName: "named-v4"}), nil},
		{"v6 three fields", tagged(namedKey6, "named-v6", 42), append(nfproto(NfprotoIPv6),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG32_04},
			&expr.Payload{DestRegister: unix.NFT_REG32_05, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Immediate{Register: unix.NFT_REG32_06, Data: tag},
			&expr.Lookup{SourceRegister: 1, SetName: "named-v6"}), map[uint32]uint32{unix.NFT_REG32_04: unix.NFT_REG_2}},
		{"negated", Lookup{Fields: []Field{FieldIPSaddr}, Set: "peers-v4", Neq: true, Tag: tag}, append(nfproto(NfprotoIPv4),
			saddr4,
			&expr.Immediate{Register: unix.NFT_REG32_01, Data: tag},
			&expr.Lookup{SourceRegister: 1, SetName: "peers-v4", Invert: true}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rule := Rule{Exprs: []Expr{tc.l, Verdict{Kind: VerdictAccept}}}
			got, _, err := lowerRule(rule)
			if err != nil {
				t.Fatalf("lowerRule: %v", err)
			}
			want := append(tc.want, &expr.Verdict{Kind: expr.VerdictAccept})
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("kernel expressions (-want +got):\n%s", d)
			}
			for _, e := range got {
				for sent, dumped := range tc.dumped {
					switch e := e.(type) {
					case *expr.Immediate:
						if e.Register == sent {
							e.Register = dumped
						}
					case *expr.Meta:
						if e.Register == sent {
							e.Register = dumped
						}
					}
				}
			}
			lifted, err := liftRule(got)
			if err != nil {
				t.Fatalf("liftRule: %v", err)
			}
			if !SameRule(Rule{Exprs: lifted}, rule) || RuleKey(Rule{Exprs: lifted}) != RuleKey(rule) {
				t.Errorf("round trip:\n got %#v\nwant %#v", lifted, rule.Exprs)
			}
		})
	}
}

// TestLowerLiftTaggedBesideUntagged: a rule with a tagged and an untagged
// lookup, and two tagged lookups, keeps each tag with its own lookup.
func TestLowerLiftTaggedBesideUntagged(t *testing.T) {
	for _, exprs := range [][]Expr{
		{tagged([]Field{FieldIPSaddr}, "peers-v4", 7), Lookup{Fields: []Field{FieldL4Proto, FieldTHDport}, Set: "ports"}, Verdict{Kind: VerdictAccept}},
		{Lookup{Fields: []Field{FieldIP6Saddr}, Set: "cidr"}, tagged(namedKey6, "named-v6", 8)},
		{tagged([]Field{FieldIP6Saddr}, "peers-v6", 1), tagged(namedKey6, "named-v6", 2), Counter{}, Verdict{Kind: VerdictDrop}},
	} {
		kexprs, _, err := lowerRule(Rule{Exprs: exprs})
		if err != nil {
			t.Fatalf("lowerRule(%v): %v", exprs, err)
		}
		got, err := liftRule(kexprs)
		if err != nil {
			t.Fatalf("liftRule(%v): %v", exprs, err)
		}
		if !SameRule(Rule{Exprs: got}, Rule{Exprs: exprs}) {
			t.Errorf("round trip:\n got %#v\nwant %#v", got, exprs)
		}
	}
}

func TestLowerRejectsTags(t *testing.T) {
	sixteenWords := []Field{FieldIP6Saddr, FieldIP6Daddr, FieldIP6Saddr, FieldIP6Daddr}
	for _, tc := range []struct {
		name string
		l    Lookup
	}{
		{"empty tag", Lookup{Fields: []Field{FieldIPSaddr}, Set: "s", Tag: Value{}}},
		{"short tag", Lookup{Fields: []Field{FieldIPSaddr}, Set: "s", Tag: Value{0, 0, 1}}},
		{"long tag", Lookup{Fields: []Field{FieldIPSaddr}, Set: "s", Tag: Value{0, 0, 0, 0, 1}}},
		{"tag without fields", Lookup{Set: "s", Tag: TagValue(1)}},
		{"tag beyond the registers", Lookup{Fields: sixteenWords, Set: "s", Tag: TagValue(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := lowerRule(Rule{Exprs: []Expr{tc.l}}); !IsInvalid(err) {
				t.Errorf("lowerRule: got %v, want ErrInvalid", err)
			}
		})
	}
	// The same fields without the tag fit.
	if _, _, err := lowerRule(Rule{Exprs: []Expr{Lookup{Fields: sixteenWords, Set: "s"}}}); err != nil {
		t.Errorf("16 words without a tag: %v", err)
	}
}

// TestLiftRejectsStrayImmediates: an immediate value that is not the tag of
// the lookup right after it makes the rule unreadable; it never lifts to a
// rule that means something else.
func TestLiftRejectsStrayImmediates(t *testing.T) {
	load4 := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
	load6 := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16}
	imm := func(reg uint32, data ...byte) *expr.Immediate { return &expr.Immediate{Register: reg, Data: data} }
	tag := []byte(TagValue(3))
	lookup := &expr.Lookup{SourceRegister: 1, SetName: "s"}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	for _, tc := range []struct {
		name  string
		exprs []expr.Any
	}{
		{"immediate then comparison", []expr.Any{load4, imm(unix.NFT_REG32_01, tag...), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1, 2, 3, 4}}}},
		{"immediate at the end", []expr.Any{load4, imm(unix.NFT_REG32_01, tag...)}},
		{"immediate then verdict", []expr.Any{load4, imm(unix.NFT_REG32_01, tag...), accept}},
		{"immediate then counter", []expr.Any{load4, imm(unix.NFT_REG32_01, tag...), &expr.Counter{}, lookup}},
		{"immediate without loaded fields", []expr.Any{imm(unix.NFT_REG32_00, tag...), lookup}},
		{"immediate over the field", []expr.Any{load4, imm(unix.NFT_REG_1, tag...), lookup}},
		{"immediate past the next register", []expr.Any{load4, imm(unix.NFT_REG32_02, tag...), lookup}},
		{"immediate inside an IPv6 address", []expr.Any{load6, imm(unix.NFT_REG32_01, tag...), lookup}},
		{"immediate of 2 bytes", []expr.Any{load4, imm(unix.NFT_REG32_01, 0, 3), lookup}},
		{"immediate of 8 bytes", []expr.Any{load4, imm(unix.NFT_REG32_01, 0, 0, 0, 3, 0, 0, 0, 4), lookup}},
		{"immediate value into the verdict register", []expr.Any{load4, imm(unix.NFT_REG_VERDICT, tag...), lookup}},
		{"two immediates", []expr.Any{load4, imm(unix.NFT_REG32_01, tag...), imm(unix.NFT_REG32_02, tag...), lookup}},
		{"field loaded after the immediate", []expr.Any{load4, imm(unix.NFT_REG32_01, tag...),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG32_02}, lookup}},
		{"immediate read by a verdict map", []expr.Any{load4, imm(unix.NFT_REG32_01, tag...),
			&expr.Lookup{SourceRegister: 1, SetName: "m", IsDestRegSet: true, DestRegister: unix.NFT_REG_VERDICT}}},
		{"lookup from another register", []expr.Any{load4, imm(unix.NFT_REG32_01, tag...), &expr.Lookup{SourceRegister: unix.NFT_REG32_01, SetName: "s"}}},
		{"immediate alone (meta mark set)", []expr.Any{imm(unix.NFT_REG_1, tag...), &expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := liftRule(tc.exprs); err == nil {
				t.Errorf("liftRule = %#v, want an error", got)
			}
		})
	}
}

// TestDecodeImmediate: the decoder gives a value immediate as the library
// does (*expr.Immediate), a verdict as before.
func TestDecodeImmediate(t *testing.T) {
	kexprs, _, err := lowerRule(Rule{Exprs: []Expr{tagged([]Field{FieldIPSaddr}, "s", 9), Verdict{Kind: VerdictDrop}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := marshalExprs(kexprs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeExprs(b)
	if err != nil {
		t.Fatalf("decodeExprs: %v", err)
	}
	lib, err := libraryDecodeExprs(unix.NFPROTO_INET, b)
	if err != nil {
		t.Fatalf("library: %v", err)
	}
	if d := cmp.Diff(lib, got); d != "" {
		t.Errorf("decodeExprs differs from the library (-library +ours):\n%s", d)
	}
	if d := cmp.Diff(kexprs, got); d != "" {
		t.Errorf("decodeExprs differs from what was lowered (-lowered +decoded):\n%s", d)
	}
}

func TestTaggedRuleIdentity(t *testing.T) {
	one := fxRule(tagged([]Field{FieldIPSaddr}, "peers-v4", 1), fxAccept())
	two := fxRule(tagged([]Field{FieldIPSaddr}, "peers-v4", 2), fxAccept())
	none := fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "peers-v4"}, fxAccept())
	again := fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "peers-v4", Tag: Value{TagValue(1)[0], TagValue(1)[1], TagValue(1)[2], TagValue(1)[3]}}, fxAccept())
	for _, tc := range []struct {
		name string
		a, b Rule
		same bool
	}{
		{"same tag", one, again, true},
		{"other tag", one, two, false},
		{"tag and none", one, none, false},
	} {
		if got := SameRule(tc.a, tc.b); got != tc.same {
			t.Errorf("%s: SameRule = %v, want %v", tc.name, got, tc.same)
		}
		if got := RuleKey(tc.a) == RuleKey(tc.b); got != tc.same {
			t.Errorf("%s: equal RuleKey = %v, want %v (%q, %q)", tc.name, got, tc.same, RuleKey(tc.a), RuleKey(tc.b))
		}
	}
	// A chain whose rule changes only its tag is rewritten.
	set := fxSet("peers-v4", []KeyType{TypeIPv4Addr, TypeTag}, nil)
	cur := fxState([]*Set{set}, fxChain("c", one))
	want := fxState([]*Set{set}, fxChain("c", two))
	if tx := Diff(cur, want, nil); tx.Empty() {
		t.Error("Diff sees no change when a rule's tag changes")
	}
	if tx := Diff(cur, cur.Clone(), nil); !tx.Empty() {
		t.Errorf("Diff of a tagged state with itself:\n%s", tx)
	}
}

// TestApplyValidatesTags: a tagged lookup needs a set whose key ends in
// TypeTag and a tag of 4 bytes; a set keyed with a tag needs one.
func TestApplyValidatesTags(t *testing.T) {
	shared := Set{Name: "peers-v4", Key: []KeyType{TypeIPv4Addr, TypeTag}}
	plain := Set{Name: "plain-v4", Key: []KeyType{TypeIPv4Addr}}
	saddr := []Field{FieldIPSaddr}
	for _, tc := range []struct {
		name string
		l    Lookup
		ok   bool
	}{
		{"tagged lookup in a tagged set", tagged(saddr, "peers-v4", 1), true},
		{"untagged lookup in a tagged set", Lookup{Fields: saddr, Set: "peers-v4"}, false},
		{"tagged lookup in a plain set", tagged(saddr, "plain-v4", 1), false},
		{"short tag", Lookup{Fields: saddr, Set: "peers-v4", Tag: Value{1}}, false},
		{"empty tag", Lookup{Fields: saddr, Set: "peers-v4", Tag: Value{}}, false},
		{"fields of the other family", tagged([]Field{FieldIP6Saddr}, "peers-v4", 1), false},
		{"tag counted as a field", Lookup{Fields: []Field{FieldIPSaddr, FieldIPDaddr}, Set: "peers-v4"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFake("t")
			tx := &Transaction{}
			tx.AddSet(shared)
			tx.AddSet(plain)
			tx.AddChain(Chain{Name: "c"})
			tx.ReplaceRules("c", []Rule{fxRule(tc.l, fxAccept())})
			err := f.Apply(context.Background(), tx)
			if tc.ok && err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !tc.ok && !IsInvalid(err) {
				t.Fatalf("Apply: got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestSetDefTagged(t *testing.T) {
	for _, tc := range []struct {
		key  []KeyType
		elem Element
		want []byte
	}{
		{[]KeyType{TypeIPv4Addr, TypeTag}, fxElem(fxAddr("198.18.0.1"), TagValue(1)),
			append([]byte{198, 18, 0, 1}, TagValue(1)...)},
		{[]KeyType{TypeIPv6Addr, TypeInetProto, TypeInetService, TypeTag}, fxElem(fxAddr("2001:db8::2"), ProtoValue(ProtoTCP), PortValue(443), TagValue(2)),
			append(append([]byte(fxAddr("2001:db8::2")), ProtoTCP, 0, 0, 0, 1, 187, 0, 0), TagValue(2)...)},
	} {
		kt, err := kernelKeyType(tc.key)
		if err != nil {
			t.Fatalf("kernelKeyType(%v): %v", tc.key, err)
		}
		if got := keyFromMagic(kt.GetNFTMagic()); !cmp.Equal(got, tc.key) {
			t.Errorf("key %v reads back as %v", tc.key, got)
		}
		if int(kt.Bytes) != len(tc.want) || keyLenOf(tc.key) != uint32(len(tc.want)) {
			t.Errorf("key %v: %d bytes (kernel type), %d (read), want %d", tc.key, kt.Bytes, keyLenOf(tc.key), len(tc.want))
		}
		d := setDef{Key: tc.key}
		kes, err := d.encodeElements([]Element{tc.elem})
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		if !bytes.Equal(kes[0].Key, tc.want) {
			t.Errorf("key bytes %x, want %x", kes[0].Key, tc.want)
		}
		back, err := d.decodeElements(kes)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		s := &Set{Key: tc.key}
		if len(back) != 1 || ElementID(s, back[0]) != ElementID(s, tc.elem) {
			t.Errorf("round trip: got %v, want %v", back, tc.elem)
		}
	}
}

// TestTraceTagged: the tracer looks a tagged lookup up with the key the
// kernel builds (fields, then tag): an address matches the rule of its own
// group only, in either family, and a negated tagged lookup matches the
// addresses not in its group.
func TestTraceTagged(t *testing.T) {
	shared := func(name string, key KeyType, ips ...string) *Set {
		var elems []Element
		for i, ip := range ips {
			if ip != "" {
				elems = append(elems, fxElem(fxAddr(ip), TagValue(uint32(i+1))))
			}
		}
		return fxSet(name, []KeyType{key, TypeTag}, elems)
	}
	named := fxSet("named-v4", []KeyType{TypeIPv4Addr, TypeInetProto, TypeInetService, TypeTag},
		[]Element{fxElem(fxAddr("198.18.0.9"), ProtoValue(ProtoTCP), PortValue(443), TagValue(2))})
	log := func(group string) Log { return Log{Prefix: group} }
	state := fxState([]*Set{
		shared("peers-v4", TypeIPv4Addr, "198.18.0.1", "198.18.0.2"),
		shared("peers-v6", TypeIPv6Addr, "2001:db8::1", "2001:db8::2"),
		named,
	}, fxBase("base", 0, VerdictAccept,
		fxRule(tagged([]Field{FieldIPSaddr}, "peers-v4", 1), log("v4 group 1")),
		fxRule(tagged([]Field{FieldIPSaddr}, "peers-v4", 2), log("v4 group 2")),
		fxRule(tagged([]Field{FieldIP6Saddr}, "peers-v6", 1), log("v6 group 1")),
		fxRule(tagged([]Field{FieldIP6Saddr}, "peers-v6", 2), log("v6 group 2")),
		fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "peers-v4", Neq: true, Tag: TagValue(1)}, log("v4 not group 1")),
		fxRule(tagged(namedKey4, "named-v4", 2), log("named group 2")),
		fxRule(tagged(namedKey4, "named-v4", 1), log("named group 1")),
	))
	for _, tc := range []struct {
		packet Packet
		want   []string
	}{
		{fxPacket("198.18.0.1", "198.18.0.9", ProtoTCP, 80), []string{"v4 group 1"}},
		{fxPacket("198.18.0.2", "198.18.0.9", ProtoTCP, 80), []string{"v4 group 2", "v4 not group 1"}},
		{fxPacket("198.18.0.3", "198.18.0.9", ProtoTCP, 80), []string{"v4 not group 1"}},
		{fxPacket("198.18.0.1", "198.18.0.9", ProtoTCP, 443), []string{"v4 group 1", "named group 2"}},
		{fxPacket("198.18.0.3", "198.18.0.9", ProtoUDP, 443), []string{"v4 not group 1"}},
		{fxPacket("2001:db8::1", "2001:db8::9", ProtoTCP, 80), []string{"v6 group 1"}},
		{fxPacket("2001:db8::2", "2001:db8::9", ProtoTCP, 80), []string{"v6 group 2"}},
		{fxPacket("2001:db8::3", "2001:db8::9", ProtoTCP, 80), nil},
	} {
		tr := Trace(state, tc.packet)
		var got []string
		for _, l := range tr.Logged {
			got = append(got, l.Prefix)
		}
		if !cmp.Equal(got, tc.want) {
			t.Errorf("%s -> %s:%d: rules matched %q, want %q\n%s", tc.packet.Src, tc.packet.Dst, tc.packet.Dport, got, tc.want, tr)
		}
	}
}

func TestRenderTagged(t *testing.T) {
	rule := fxRule(tagged([]Field{FieldIPSaddr}, "peers-v4", 42), fxAccept())
	// nft 1.0.6 does not type the constant: it prints its bytes big-endian.
	want := fmt.Sprintf("ip saddr . %#x [invalid type] @peers-v4 accept", binary.BigEndian.Uint32(TagValue(42)))
	if got := RenderRule(rule); got != want {
		t.Errorf("RenderRule = %q, want %q", got, want)
	}
	named := fxRule(Lookup{Fields: namedKey6, Set: "named-v6", Neq: true, Tag: Value{0, 0, 0, 0}})
	if got, want := RenderRule(named), "ip6 daddr . meta l4proto . th dport . 0x0 [invalid type] != @named-v6"; got != want {
		t.Errorf("RenderRule = %q, want %q", got, want)
	}
	set := fxSet("peers-v4", []KeyType{TypeIPv4Addr, TypeTag}, []Element{fxElem(fxAddr("198.18.0.5"), TagValue(42))})
	got := Render("t", fxState([]*Set{set}))
	for _, line := range []string{"type ipv4_addr . mark", "elements = { 198.18.0.5 . 0x0000002a }"} {
		if !strings.Contains(got, line) {
			t.Errorf("Render lacks %q:\n%s", line, got)
		}
	}
}

// marshalExprs is a rule's NFTA_RULE_EXPRESSIONS as google/nftables sends it.
func marshalExprs(exprs []expr.Any) ([]byte, error) {
	var list []netlink.Attribute
	for _, e := range exprs {
		b, err := expr.Marshal(unix.NFPROTO_INET, e)
		if err != nil {
			return nil, err
		}
		list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
	}
	return netlink.MarshalAttributes(list)
}
