package nft

import (
	"net/netip"
	"strings"
	"testing"
)

// TestElementIDAsFormatValue holds the element ID's fast paths (addresses,
// ports, tags written without a string per value) to FormatValue, which
// renders the same values in listings and errors.
func TestElementIDAsFormatValue(t *testing.T) {
	cases := []struct {
		name string
		key  []KeyType
		vals []Value
		want string
	}{
		{"ipv4", []KeyType{TypeIPv4Addr}, []Value{AddrValue(netip.MustParseAddr("198.18.0.5"))}, "198.18.0.5"},
		{"ipv6", []KeyType{TypeIPv6Addr}, []Value{AddrValue(netip.MustParseAddr("2001:db8::5"))}, "2001:db8::5"},
		{"peer tag", []KeyType{TypeIPv4Addr, TypeTag}, []Value{AddrValue(netip.MustParseAddr("198.18.0.5")), TagValue(42)}, "198.18.0.5 . 0x0000002a"},
		{"high tag", []KeyType{TypeIPv6Addr, TypeTag}, []Value{AddrValue(netip.MustParseAddr("2001:db8::1")), TagValue(0xfedcba98)}, "2001:db8::1 . 0xfedcba98"},
		{"named port", []KeyType{TypeIPv4Addr, TypeInetProto, TypeInetService, TypeTag},
			[]Value{AddrValue(netip.MustParseAddr("198.18.0.5")), ProtoValue(ProtoTCP), PortValue(8443), TagValue(7)}, "198.18.0.5 . tcp . 8443 . 0x00000007"},
		{"port zero and max", []KeyType{TypeInetService, TypeInetService}, []Value{PortValue(0), PortValue(65535)}, "0 . 65535"},
		{"short tag falls back", []KeyType{TypeTag}, []Value{{1, 2}}, "0x0102"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Set{Key: c.key}
			got := ElementID(s, Element{Key: c.vals})
			if got != c.want {
				t.Fatalf("ElementID = %q, want %q", got, c.want)
			}
			parts := make([]string, len(c.vals))
			for i, v := range c.vals {
				parts[i] = FormatValue(c.key[i], v)
			}
			if joined := strings.Join(parts, " . "); joined != got {
				t.Fatalf("FormatValue gives %q, ElementID %q", joined, got)
			}
		})
	}
}

// TestElementIDLongAndRange: an ID longer than ElementID's stack buffer (a
// concatenated IPv6 range) comes out whole, the range end after a '-'.
func TestElementIDLongAndRange(t *testing.T) {
	a := AddrValue(netip.MustParseAddr("2001:db8:1234:5678:9abc:def0:1234:5678"))
	z := AddrValue(netip.MustParseAddr("2001:db8:1234:5678:9abc:def0:1234:ffff"))
	s := &Set{Key: []KeyType{TypeIPv6Addr, TypeIPv6Addr, TypeTag}}
	e := Element{Key: []Value{a, a, TagValue(1)}, KeyEnd: []Value{z, z, TagValue(2)}}
	want := "2001:db8:1234:5678:9abc:def0:1234:5678 . 2001:db8:1234:5678:9abc:def0:1234:5678 . 0x00000001-" +
		"2001:db8:1234:5678:9abc:def0:1234:ffff . 2001:db8:1234:5678:9abc:def0:1234:ffff . 0x00000002"
	if got := ElementID(s, e); got != want {
		t.Fatalf("ElementID = %q, want %q", got, want)
	}
}

// TestElementIDAllocs: an ID that fits the stack buffer costs one
// allocation, the string itself (IDs are built for every element added).
func TestElementIDAllocs(t *testing.T) {
	s := &Set{Key: []KeyType{TypeIPv4Addr, TypeInetProto, TypeInetService, TypeTag}}
	e := Element{Key: []Value{AddrValue(netip.MustParseAddr("198.18.0.5")), ProtoValue(ProtoTCP), PortValue(8443), TagValue(7)}}
	if n := testing.AllocsPerRun(100, func() { _ = ElementID(s, e) }); n != 1 {
		t.Fatalf("ElementID allocates %v times, want 1", n)
	}
}
