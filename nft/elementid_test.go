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
