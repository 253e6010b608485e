package enforcer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// addrRange is an inclusive address range of one family.
type addrRange struct{ From, To netip.Addr }

// parseIPBlock validates an ipBlock and returns its family and the address ranges
// it allows: the CIDR with every except prefix carved out, as sorted,
// non-overlapping ranges (interval sets must not hold overlapping elements).
func parseIPBlock(b *networkingv1.IPBlock) (fam Family, ranges []addrRange, canonical string, err error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(b.CIDR))
	if err != nil {
		return 0, nil, "", fmt.Errorf("ipBlock cidr %q: %w", b.CIDR, err)
	}
	p = p.Masked()
	if p.Addr().Is4In6() {
		return 0, nil, "", fmt.Errorf("ipBlock cidr %q: IPv4-mapped prefixes are not supported", b.CIDR)
	}
	excepts := make([]netip.Prefix, 0, len(b.Except))
	for _, s := range b.Except {
		e, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return 0, nil, "", fmt.Errorf("ipBlock %s except %q: %w", p, s, err)
		}
		e = e.Masked()
		if e.Addr().Is4() != p.Addr().Is4() || e.Bits() < p.Bits() || !p.Contains(e.Addr()) {
			return 0, nil, "", fmt.Errorf("ipBlock %s except %q: not inside the cidr", p, s)
		}
		excepts = append(excepts, e)
	}
	slices.SortFunc(excepts, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	fam = familyOf(p.Addr())
	cur := p.Addr()
	last := prefixLast(p)
	done := false
	var parts []string
	for _, e := range excepts {
		parts = append(parts, e.String())
		if done {
			continue
		}
		eFirst, eLast := e.Addr(), prefixLast(e)
		if eLast.Less(cur) {
			continue // inside an except already carved
		}
		if cur.Less(eFirst) {
			ranges = append(ranges, addrRange{cur, eFirst.Prev()})
		}
		if eLast == last {
			done = true
			continue
		}
		cur = eLast.Next()
	}
	if !done {
		ranges = append(ranges, addrRange{cur, last})
	}
	canonical = p.String()
	if len(parts) > 0 {
		canonical += " except " + strings.Join(parts, ",")
	}
	return fam, ranges, canonical, nil
}

// prefixLast is the last address of a masked prefix.
func prefixLast(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
