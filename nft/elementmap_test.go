package nft

import (
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// IP plan: 198.18.0.0/15 and 2001:db8::/32 only; ::ffff:198.18.0.1 is an
// IPv4-mapped IPv6 address, kept as 16 bytes in an IPv6 set.

func a6(s string) Value {
	b := netip.MustParseAddr(s).As16()
	return Value(b[:])
}

// elementMapCases are sets of both forms with elements of each, and the
// ID of each element as ElementID writes it.
var elementMapCases = []struct {
	name   string
	set    Set
	packed bool
	elems  []Element
	ids    []string
}{
	{"ipv4", Set{Key: []KeyType{TypeIPv4Addr}}, true,
		[]Element{{Key: []Value{a4("198.18.0.1")}}, {Key: []Value{a4("198.19.255.255")}}},
		[]string{"198.18.0.1", "198.19.255.255"}},
	{"ipv4 and tag", Set{Key: []KeyType{TypeIPv4Addr, TypeTag}}, true,
		[]Element{{Key: []Value{a4("198.18.0.5"), TagValue(0x1f)}}, {Key: []Value{a4("198.18.0.5"), TagValue(0xfedcba98)}}},
		[]string{"198.18.0.5 . 0x0000001f", "198.18.0.5 . 0xfedcba98"}},
	{"ipv6 and tag", Set{Key: []KeyType{TypeIPv6Addr, TypeTag}}, true,
		[]Element{{Key: []Value{a6("2001:db8::"), TagValue(0)}}, {Key: []Value{a6("::ffff:198.18.0.1"), TagValue(7)}},
			{Key: []Value{a6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), TagValue(1)}}},
		[]string{"2001:db8:: . 0x00000000", "::ffff:198.18.0.1 . 0x00000007", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff . 0x00000001"}},
	{"named port v6", Set{Key: []KeyType{TypeIPv6Addr, TypeInetProto, TypeInetService, TypeTag}}, true,
		[]Element{{Key: []Value{a6("2001:db8::5"), ProtoValue(ProtoTCP), PortValue(8443), TagValue(7)}},
			{Key: []Value{a6("2001:db8::5"), ProtoValue(47), PortValue(0), TagValue(7)}}},
		[]string{"2001:db8::5 . tcp . 8443 . 0x00000007", "2001:db8::5 . 47 . 0 . 0x00000007"}},
	{"ports", Set{Key: []KeyType{TypeInetProto, TypeInetService}}, true,
		[]Element{{Key: []Value{ProtoValue(ProtoUDP), PortValue(53)}}, {Key: []Value{ProtoValue(ProtoSCTP), PortValue(65535)}}},
		[]string{"udp . 53", "sctp . 65535"}},
	{"interval", Set{Key: []KeyType{TypeIPv4Addr}, Interval: true}, false,
		[]Element{{Key: []Value{a4("198.18.0.0")}, KeyEnd: []Value{a4("198.18.0.255")}}, {Key: []Value{a4("198.18.1.1")}}},
		[]string{"198.18.0.0-198.18.0.255", "198.18.1.1"}},
	{"verdict map", Set{Key: []KeyType{TypeIPv4Addr}, VerdictMap: true}, false,
		[]Element{{Key: []Value{a4("198.18.0.1")}, Verdict: &Verdict{Kind: VerdictGoto, Chain: "c"}}},
		[]string{"198.18.0.1"}},
	{"ifname", Set{Key: []KeyType{TypeIfname}}, false,
		[]Element{{Key: []Value{IfnameValue("veth . 0")}}},
		[]string{`"veth . 0"`}},
}

func TestElementMap(t *testing.T) {
	for _, tc := range elementMapCases {
		t.Run(tc.name, func(t *testing.T) {
			set := tc.set
			m := NewElements(&set, 0)
			if m.Packed() != tc.packed {
				t.Fatalf("Packed() = %v, want %v", m.Packed(), tc.packed)
			}
			for i, e := range tc.elems {
				if id := ElementID(&set, e); id != tc.ids[i] {
					t.Fatalf("ElementID = %q, want %q", id, tc.ids[i])
				}
				if m.Has(tc.ids[i]) || m.Contains(e) {
					t.Fatalf("%s present before Put", tc.ids[i])
				}
				m.Put(e)
				m.Put(e) // again: no change
			}
			if m.Len() != len(tc.elems) {
				t.Fatalf("Len() = %d, want %d", m.Len(), len(tc.elems))
			}
			for i, e := range tc.elems {
				got, ok := m.Get(tc.ids[i])
				if !ok || !reflect.DeepEqual(got, e) {
					t.Errorf("Get(%q) = %v, %v; want %v", tc.ids[i], got, ok, e)
				}
				if got, ok := m.Lookup(e); !ok || !reflect.DeepEqual(got, e) {
					t.Errorf("Lookup(%q) = %v, %v", tc.ids[i], got, ok)
				}
			}
			all := maps.Collect(m.All())
			if got, want := slices.Sorted(maps.Keys(all)), slices.Sorted(slices.Values(tc.ids)); !slices.Equal(got, want) {
				t.Errorf("All() IDs %q, want %q", got, want)
			}
			for id, e := range all {
				if ElementID(&set, e) != id {
					t.Errorf("All() yields %v under %q", e, id)
				}
			}
			if n := len(m.AppendValues(nil)); n != len(tc.elems) {
				t.Errorf("AppendValues: %d elements", n)
			}
			if n := len(slices.Collect(m.Values())); n != len(tc.elems) {
				t.Errorf("Values: %d elements", n)
			}

			shared, own := m, m.Clone()
			if !shared.Shares(m) || own.Shares(m) || !own.Equal(m) || own.Packed() != m.Packed() {
				t.Fatal("a copy must share, a clone not, and both hold the same")
			}
			m.DeleteID(tc.ids[0])
			if shared.Has(tc.ids[0]) || !own.Has(tc.ids[0]) || own.Equal(m) {
				t.Errorf("DeleteID: the copy must see it, the clone not")
			}
			m.Delete(tc.elems[len(tc.elems)-1])
			if m.Len() != max(len(tc.elems)-2, 0) {
				t.Errorf("after two deletions Len() = %d", m.Len())
			}
			m.Clear()
			if m.Len() != 0 || own.Len() != len(tc.elems) {
				t.Errorf("Clear: Len() %d, the clone's %d", m.Len(), own.Len())
			}
		})
	}
}

// TestElementMapIDs: a packed map finds an element by its ID and by no
// other spelling of the same values (the ID is the identity).
func TestElementMapIDs(t *testing.T) {
	v4tag := Set{Key: []KeyType{TypeIPv4Addr, TypeTag}}
	v6 := Set{Key: []KeyType{TypeIPv6Addr}}
	ports := Set{Key: []KeyType{TypeInetProto, TypeInetService}}
	for _, tc := range []struct {
		set  *Set
		elem Element
		id   string
		want bool
	}{
		{&v4tag, Element{Key: []Value{a4("198.18.0.5"), TagValue(42)}}, "198.18.0.5 . 0x0000002a", true},
		{&v4tag, Element{Key: []Value{a4("198.18.0.5"), TagValue(42)}}, "198.18.0.5 . 0x2a", false},
		{&v4tag, Element{Key: []Value{a4("198.18.0.5"), TagValue(42)}}, "198.18.0.5 . 0x0000002A", false},
		{&v4tag, Element{Key: []Value{a4("198.18.0.5"), TagValue(42)}}, "198.018.0.5 . 0x0000002a", false},
		{&v4tag, Element{Key: []Value{a4("198.18.0.5"), TagValue(42)}}, "198.18.0.5", false},
		{&v4tag, Element{Key: []Value{a4("198.18.0.5"), TagValue(42)}}, "198.18.0.5 . 0x0000002a . 1", false},
		{&v4tag, Element{Key: []Value{a4("198.18.0.5"), TagValue(42)}}, "::ffff:198.18.0.5 . 0x0000002a", false},
		{&v6, Element{Key: []Value{a6("2001:db8::")}}, "2001:db8::", true},
		{&v6, Element{Key: []Value{a6("2001:db8::")}}, "2001:DB8::", false},
		{&v6, Element{Key: []Value{a6("2001:db8::")}}, "2001:db8:0::", false},
		{&v6, Element{Key: []Value{a6("2001:db8::")}}, "2001:db8::%eth0", false},
		{&v6, Element{Key: []Value{a6("::ffff:198.18.0.1")}}, "::ffff:198.18.0.1", true},
		{&v6, Element{Key: []Value{a6("::ffff:198.18.0.1")}}, "198.18.0.1", false},
		{&ports, Element{Key: []Value{ProtoValue(ProtoTCP), PortValue(80)}}, "tcp . 80", true},
		{&ports, Element{Key: []Value{ProtoValue(ProtoTCP), PortValue(80)}}, "6 . 80", false},
		{&ports, Element{Key: []Value{ProtoValue(ProtoTCP), PortValue(80)}}, "tcp . 080", false},
		{&ports, Element{Key: []Value{ProtoValue(ProtoTCP), PortValue(80)}}, "tcp . 80-tcp . 80", false},
	} {
		m := ElementsOf(tc.set, tc.elem)
		if got := m.Has(tc.id); got != tc.want {
			t.Errorf("%v: Has(%q) = %v, want %v", tc.set.Key, tc.id, got, tc.want)
		}
		m.DeleteID(tc.id)
		if gone := m.Len() == 0; gone != tc.want {
			t.Errorf("%v: DeleteID(%q) deleted: %v, want %v", tc.set.Key, tc.id, gone, tc.want)
		}
	}
}

// TestElementMapUnpacks: an element that does not fit a packed map (a
// value of another length, a verdict) turns the map, and every copy that
// shares it, into one by ID: the same elements, as before.
func TestElementMapUnpacks(t *testing.T) {
	set := Set{Key: []KeyType{TypeIPv4Addr, TypeTag}}
	m := ElementsOf(&set, Element{Key: []Value{a4("198.18.0.1"), TagValue(1)}})
	shared := m
	odd := Element{Key: []Value{a6("::ffff:198.18.0.1"), TagValue(1)}}
	m.Put(odd)
	if m.Packed() || shared.Packed() || shared.Len() != 2 || !shared.Has("198.18.0.1 . 0x00000001") || !shared.Contains(odd) {
		t.Fatalf("after an odd element: %v (packed %v)", shared, shared.Packed())
	}
}

// TestElementMapPointerFree: a packed map's keys and values hold no
// pointers, so the collector never scans its slots.
func TestElementMapPointerFree(t *testing.T) {
	for _, ty := range []reflect.Type{
		reflect.TypeFor[map[uint64]struct{}](), reflect.TypeOf(elementStore{}.small),
		reflect.TypeOf(elementStore{}.large),
	} {
		if hasPointers(ty.Key()) || hasPointers(ty.Elem()) {
			t.Errorf("%v holds pointers", ty)
		}
	}
	// And an element costs a slot of its key's size (and the map's spare
	// room) only, rather than an ID string, a key object and a map slot of
	// pointers (~180 bytes).
	for _, tc := range []struct {
		name string
		set  Set
		addr func(i int) Value
	}{
		{"ipv4 and tag", Set{Key: []KeyType{TypeIPv4Addr, TypeTag}}, func(i int) Value { return Value{198, 18, byte(i >> 8), byte(i)} }},
		{"ipv6 and tag", Set{Key: []KeyType{TypeIPv6Addr, TypeTag}}, func(i int) Value {
			return Value{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)}
		}},
	} {
		const n = 1 << 10
		elems := make([]Element, n)
		for i := range elems {
			elems[i] = Element{Key: []Value{tc.addr(i), TagValue(7)}}
		}
		per := bytesPerRun(func() {
			m := NewElements(&tc.set, n)
			for _, e := range elems {
				m.Put(e)
			}
			storeSink = m
		}) / n
		// A slot of at most 25 bytes (a key, and the padding after the
		// empty value) and its control byte, in a table that a size hint
		// leaves between half and seven eighths full.
		if per > 64 {
			t.Errorf("%s: %d bytes per element", tc.name, per)
		}
	}
}

var storeSink ElementMap

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.String, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}

// TestAppendValuesAllocs: a packed map's elements come with their keys cut
// from two blocks, whatever their number.
func TestAppendValuesAllocs(t *testing.T) {
	set := Set{Key: []KeyType{TypeIPv4Addr, TypeTag}}
	m := NewElements(&set, 0)
	for i := range 1000 {
		m.Put(Element{Key: []Value{{198, 18, byte(i >> 8), byte(i)}, TagValue(uint32(i))}})
	}
	dst := make([]Element, 0, 1000)
	if n := testing.AllocsPerRun(10, func() { m.AppendValues(dst[:0]) }); n > 2 {
		t.Errorf("AppendValues: %v allocations, want 2", n)
	}
	for _, e := range m.AppendValues(nil) {
		if !m.Contains(e) || len(e.Key[0]) != cap(e.Key[0]) {
			t.Fatalf("AppendValues gave %v (capacity %d)", e, cap(e.Key[0]))
		}
	}
}

// FuzzElementMapID: the ID of every packable key parses back to that key,
// and a text that parses is the ID of what it parses to.
func FuzzElementMapID(f *testing.F) {
	f.Add([]byte{198, 18, 0, 5, 0x1f, 0, 0, 0}, "198.18.0.5 . 0x0000001f", uint8(0))
	f.Add(append(netip.MustParseAddr("::ffff:198.18.0.1").AsSlice(), 1, 2, 3, 4), "::ffff:198.18.0.1 . 0x04030201", uint8(1))
	f.Add([]byte{6, 0, 80}, "tcp . 80", uint8(2))
	f.Add(append(netip.MustParseAddr("2001:db8::").AsSlice(), 17, 1, 187, 0, 0, 0, 9), "2001:db8:: . udp . 443 . 0x09000000", uint8(3))
	kinds := [][]KeyType{
		{TypeIPv4Addr, TypeTag}, {TypeIPv6Addr, TypeTag}, {TypeInetProto, TypeInetService},
		{TypeIPv6Addr, TypeInetProto, TypeInetService, TypeTag}, {TypeIPv4Addr},
	}
	f.Fuzz(func(t *testing.T, raw []byte, text string, kind uint8) {
		set := Set{Key: kinds[int(kind)%len(kinds)]}
		st := NewElements(&set, 0).st
		if len(raw) >= st.keyLen {
			var k ElementKey
			copy(k[:], raw[:st.keyLen])
			id := st.keyID(k)
			back, ok := st.parseID(id)
			if !ok || back != k {
				t.Fatalf("%v: ID %q of %x parses to %x, %v", set.Key, id, k[:st.keyLen], back[:st.keyLen], ok)
			}
			if want := ElementID(&set, st.element(k)); want != id {
				t.Fatalf("%v: packed ID %q, ElementID %q", set.Key, id, want)
			}
		}
		if k, ok := st.parseID(text); ok && st.keyID(k) != text {
			t.Fatalf("%v: %q parses to %x, whose ID is %q", set.Key, text, k[:st.keyLen], st.keyID(k))
		}
	})
}
