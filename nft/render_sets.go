package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// How nft lists a set: its definition and its elements, sorted and folded
// into ranges and prefixes as nft prints them (Render).

func renderSet(b *strings.Builder, s *Set) {
	fmt.Fprintf(b, "\t%s %s {\n", setKind(s), s.Name)
	for _, line := range setDefinition(s) {
		b.WriteString("\t\t" + line + "\n")
	}
	if s.Elements.Len() > 0 {
		elems := sortedElements(s)
		perLine := elementsPerLine(s.Key)
		b.WriteString("\t\telements = { ")
		for i, e := range elems {
			if i > 0 {
				if i%perLine == 0 {
					b.WriteString(",\n\t\t\t     ")
				} else {
					b.WriteString(", ")
				}
			}
			b.WriteString(renderElement(s, e))
		}
		b.WriteString(" }\n")
	}
	b.WriteString("\t}\n")
}

// setKind is the keyword nft uses for the set: set or map.
func setKind(s *Set) string {
	if s.VerdictMap {
		return "map"
	}
	return "set"
}

// setDefinition is the definition of a set as nft lists it inside the set's
// block, one statement per line: type, flags and comment.
func setDefinition(s *Set) []string {
	types := make([]string, len(s.Key))
	for i, t := range s.Key {
		types[i] = t.String()
	}
	def := "type " + strings.Join(types, " . ")
	if s.VerdictMap {
		def += " : verdict"
	}
	lines := []string{def}
	if s.Interval {
		lines = append(lines, "flags interval")
	}
	if s.Comment != "" {
		lines = append(lines, "comment "+quote(s.Comment))
	}
	return lines
}

// elementsPerLine is how many elements nft prints on one line before it wraps,
// which depends on the key's data type (calculate_delim in nft's expression.c).
func elementsPerLine(key []KeyType) int {
	if len(key) != 1 {
		return 1
	}
	switch key[0] {
	case TypeIPv4Addr:
		return 2
	case TypeInetProto, TypeInetService:
		return 5
	}
	return 1
}

// sortedElements orders elements by key, then by range end, comparing the raw
// bytes of each component (network byte order sorts numerically).
func sortedElements(s *Set) []Element {
	out := s.Elements.AppendValues(nil)
	sort.Slice(out, func(i, j int) bool {
		if c := compareValues(out[i].Key, out[j].Key); c != 0 {
			return c < 0
		}
		return compareValues(out[i].KeyEnd, out[j].KeyEnd) < 0
	})
	return out
}

func compareValues(a, b []Value) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := bytes.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

func renderElement(s *Set, e Element) string {
	parts := make([]string, len(e.Key))
	for i, v := range e.Key {
		var t KeyType
		if i < len(s.Key) {
			t = s.Key[i]
		}
		var end Value
		if e.KeyEnd != nil && i < len(e.KeyEnd) {
			end = e.KeyEnd[i]
		}
		parts[i] = renderRange(t, v, end)
	}
	out := strings.Join(parts, " . ")
	if e.Verdict != nil {
		out += " : " + renderVerdict(*e.Verdict)
	}
	return out
}

// renderRange prints one key component: a value, a prefix or a range.
func renderRange(t KeyType, from, to Value) string {
	if to == nil || bytes.Equal(from, to) {
		return renderValue(t, from)
	}
	if t == TypeIPv4Addr || t == TypeIPv6Addr {
		if p, ok := rangePrefix(from, to); ok {
			return p.String()
		}
	}
	return renderValue(t, from) + "-" + renderValue(t, to)
}

// rangePrefix reports whether [from, to] is exactly one address prefix.
func rangePrefix(from, to Value) (netip.Prefix, bool) {
	a, ok1 := netip.AddrFromSlice(from)
	z, ok2 := netip.AddrFromSlice(to)
	if !ok1 || !ok2 || len(from) != len(to) {
		return netip.Prefix{}, false
	}
	// The common leading bits make the prefix; the rest must be all zeros in
	// from and all ones in to.
	bits := 0
	for i := range from {
		x := from[i] ^ to[i]
		if x == 0 {
			bits += 8
			continue
		}
		for m := byte(0x80); m != 0 && x&m == 0; m >>= 1 {
			bits++
		}
		break
	}
	p := netip.PrefixFrom(a, bits)
	if p.Masked().Addr() != a || lastAddr(p) != z {
		return netip.Prefix{}, false
	}
	return p, true
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		hostBits := p.Addr().BitLen() - p.Bits() - (len(b)-1-i)*8
		switch {
		case hostBits >= 8:
			b[i] = 0xff
		case hostBits > 0:
			b[i] |= byte(1<<hostBits) - 1
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
