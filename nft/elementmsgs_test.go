package nft

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// encodeElements is kernelElements for a whole list, as google/nftables'
// elements: what the kernel lists back, for the round trips of the tests.
func (d setDef) encodeElements(elems []Element) ([]nftables.SetElement, error) {
	var out []nftables.SetElement
	for _, e := range elems {
		kes, _, err := d.kernelElements(nil, nil, e)
		if err != nil {
			return nil, err
		}
		for _, ke := range kes {
			out = append(out, nftables.SetElement{Key: ke.key, KeyEnd: ke.keyEnd, IntervalEnd: ke.intervalEnd, VerdictData: ke.verdict})
		}
	}
	return out, nil
}

// libraryElementMessages is what google/nftables marshals for the same
// elements, cut where msgs are (each of msgs holds a count of them).
func libraryElementMessages(t *testing.T, table *nftables.Table, op Op, d setDef, msgs []netlink.Message) []netlink.Message {
	t.Helper()
	kes, err := d.encodeElements(op.Elements)
	if err != nil {
		t.Fatal(err)
	}
	var captured []netlink.Message
	cc, err := newBuilder(&captured)
	if err != nil {
		t.Fatal(err)
	}
	s := &nftables.Set{Name: op.Name, Table: table, Interval: d.Interval, IsMap: d.VerdictMap}
	var out []netlink.Message
	for _, m := range msgs {
		n := len(elementFlags(t, m))
		chunk := kes[:n]
		kes = kes[n:]
		if op.Kind == OpAddElements {
			err = cc.SetAddElements(s, chunk)
		} else {
			err = cc.SetDeleteElements(s, chunk)
		}
		if err != nil {
			t.Fatal(err)
		}
		captured = captured[:0]
		if err := cc.Flush(); err != nil {
			t.Fatal(err)
		}
		lm := captured[1 : len(captured)-1][0]
		lm.Header.Flags &^= netlink.Acknowledge | netlink.Echo
		out = append(out, lm)
	}
	if len(kes) != 0 {
		t.Fatalf("%d elements in no message", len(kes))
	}
	return out
}

// elementFlags lists the flags of each element of an element message (0
// for none).
func elementFlags(t *testing.T, m netlink.Message) []uint32 {
	t.Helper()
	var list []byte
	for _, a := range topAttrs(m.Data) {
		if a.typ == unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			list = m.Data[a.start+4 : a.end]
		}
	}
	items, err := netlink.UnmarshalAttributes(list)
	if err != nil {
		t.Fatalf("element list: %v", err)
	}
	var flags []uint32
	for _, it := range items {
		attrs, err := netlink.UnmarshalAttributes(it.Data)
		if err != nil {
			t.Fatalf("element: %v", err)
		}
		var f uint32
		for _, a := range attrs {
			if a.Type&^unix.NLA_F_NESTED == unix.NFTA_SET_ELEM_FLAGS {
				f = uint32(a.Data[0])<<24 | uint32(a.Data[1])<<16 | uint32(a.Data[2])<<8 | uint32(a.Data[3])
			}
		}
		flags = append(flags, f)
	}
	return flags
}

// TestElementMessagesMatchTheLibrary: the element messages nft marshals
// itself are, byte for byte, google/nftables' for the same elements, for
// every kind of set and both operations.
func TestElementMessagesMatchTheLibrary(t *testing.T) {
	table := &nftables.Table{Name: "nftw", Family: nftables.TableFamilyINet}
	k := &Kernel{table: table}
	verdict := func(ip string, v Verdict) Element { return Element{Key: []Value{a4(ip)}, Verdict: &v} }
	r := func(from, to string) Element { return Element{Key: []Value{a4(from)}, KeyEnd: []Value{a4(to)}} }
	var many []Element
	for i := range 5000 {
		many = append(many, Element{Key: []Value{{198, 18, byte(i >> 8), byte(i)}}})
	}
	for _, tc := range []struct {
		name  string
		def   setDef
		elems []Element
	}{
		{"plain", setDef{Key: []KeyType{TypeIPv4Addr}}, []Element{{Key: []Value{a4("198.18.0.1")}}, {Key: []Value{a4("198.18.0.2")}}}},
		{"tagged", setDef{Key: []KeyType{TypeIPv4Addr, TypeTag}}, []Element{{Key: []Value{a4("198.18.0.1"), TagValue(42)}}}},
		{"named", setDef{Key: []KeyType{TypeIPv6Addr, TypeInetProto, TypeInetService, TypeTag}},
			[]Element{{Key: []Value{a4("2001:db8::1"), ProtoValue(ProtoTCP), PortValue(443), TagValue(7)}}}},
		{"vmap", setDef{Key: []KeyType{TypeIPv4Addr}, VerdictMap: true}, []Element{
			verdict("198.18.0.1", Verdict{Kind: VerdictGoto, Chain: "a"}), verdict("198.18.0.2", Verdict{Kind: VerdictJump, Chain: "bb"}),
			verdict("198.18.0.3", Verdict{Kind: VerdictAccept}), verdict("198.18.0.4", Verdict{Kind: VerdictDrop}),
		}},
		{"interval v4", setDef{Key: []KeyType{TypeIPv4Addr}, Interval: true}, []Element{
			r("0.0.0.0", "0.0.0.255"), {Key: []Value{a4("198.18.7.7")}}, r("203.0.113.0", "255.255.255.255"),
		}},
		{"interval vmap", setDef{Key: []KeyType{TypeIPv4Addr}, Interval: true, VerdictMap: true}, []Element{
			{Key: []Value{a4("198.18.0.0")}, KeyEnd: []Value{a4("198.18.0.9")}, Verdict: &Verdict{Kind: VerdictJump, Chain: "c"}},
		}},
		{"concat interval", setDef{Key: []KeyType{TypeInetProto, TypeInetService}, Interval: true}, []Element{
			{Key: []Value{ProtoValue(ProtoTCP), PortValue(80)}},
			{Key: []Value{ProtoValue(ProtoUDP), PortValue(0)}, KeyEnd: []Value{ProtoValue(ProtoUDP), PortValue(65535)}},
		}},
		{"many ranges", setDef{Key: []KeyType{TypeIPv4Addr}, Interval: true}, many},
	} {
		for _, kind := range []OpKind{OpAddElements, OpDeleteElements} {
			t.Run(tc.name, func(t *testing.T) {
				op := Op{Kind: kind, Name: "s", Elements: tc.elems}
				got, err := k.elementMessages(op, tc.def)
				if err != nil {
					t.Fatal(err)
				}
				want := libraryElementMessages(t, table, op, tc.def, got)
				if len(got) != len(want) {
					t.Fatalf("%d messages, want %d", len(got), len(want))
				}
				for i := range got {
					if got[i].Header.Type != want[i].Header.Type || got[i].Header.Flags != want[i].Header.Flags {
						t.Errorf("message %d: header %+v, want %+v", i, got[i].Header, want[i].Header)
					}
					if !bytes.Equal(got[i].Data, want[i].Data) {
						t.Errorf("message %d:\n got %x\nwant %x", i, got[i].Data, want[i].Data)
					}
				}
			})
		}
	}
}

// TestElementMessagesLimits: a long element list is cut into messages of at
// most maxElemsPerMsg elements and maxBytesPerMsg bytes of list, and never
// between a range's start and end.
func TestElementMessagesLimits(t *testing.T) {
	k := &Kernel{table: &nftables.Table{Name: "nftw", Family: nftables.TableFamilyINet}}
	for _, tc := range []struct {
		name string
		def  setDef
		elem func(i int) Element
	}{
		{"ranges", setDef{Key: []KeyType{TypeIPv4Addr}, Interval: true}, func(i int) Element {
			return Element{Key: []Value{{198, 18, byte(i >> 8), byte(i)}}}
		}},
		{"verdicts", setDef{Key: []KeyType{TypeIPv4Addr}, VerdictMap: true}, func(i int) Element {
			return Element{Key: []Value{{198, 18, byte(i >> 8), byte(i)}}, Verdict: &Verdict{Kind: VerdictJump, Chain: string(bytes.Repeat([]byte{'c'}, 200))}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var elems []Element
			for i := range 5000 {
				elems = append(elems, tc.elem(i))
			}
			kes, err := tc.def.encodeElements(elems)
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := k.elementMessages(Op{Kind: OpAddElements, Name: "s", Elements: elems}, tc.def)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, m := range msgs {
				flags := elementFlags(t, m)
				n += len(flags)
				list := len(m.Data) - len(elementListHead(k.table, "s")) - 4
				if len(flags) > maxElemsPerMsg || list > maxBytesPerMsg {
					t.Errorf("message of %d elements, %d bytes", len(flags), list)
				}
				if flags[0] == unix.NFT_SET_ELEM_INTERVAL_END {
					t.Error("message starts with a range end: a range was split")
				}
			}
			if len(msgs) < 2 || n != len(kes) {
				t.Errorf("%d messages hold %d elements, want several holding %d", len(msgs), n, len(kes))
			}
		})
	}
}

// TestElementMessagesMalformedKeys: elements with no key, an empty value or
// a missing key end are reported as invalid; reading them ahead
// (touchKeys) does not panic.
func TestElementMessagesMalformedKeys(t *testing.T) {
	k := &Kernel{table: &nftables.Table{Name: "nftw", Family: nftables.TableFamilyINet}}
	d := setDef{Key: []KeyType{TypeIPv4Addr}}
	for _, tc := range []struct {
		name string
		bad  Element
	}{
		{"no key", Element{}},
		{"empty value", Element{Key: []Value{{}}}},
		{"empty key end", Element{Key: []Value{a4("198.18.0.1")}, KeyEnd: []Value{{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			elems := make([]Element, 3*touchAhead)
			for i := range elems {
				elems[i] = Element{Key: []Value{{198, 18, 0, byte(i)}}}
			}
			elems[len(elems)-1] = tc.bad
			if _, err := k.elementMessages(Op{Kind: OpAddElements, Name: "s", Elements: elems}, d); !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v, want ErrInvalid", err)
			}
		})
	}
}
