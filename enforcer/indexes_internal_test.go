package enforcer

import (
	"net/netip"
	"slices"
	"testing"
)

// IP plan: pods a and b both claim 198.18.0.1 and 2001:db8::1; pod c has
// 198.18.0.2 alone.

// TestIPIndexKeys: keyed by 16 bytes, the index still tells an IPv4
// address from its IPv4-mapped IPv6 form (records hold neither mapped nor
// zoned addresses, so a lookup by one finds nothing, as with netip.Addr
// keys), and gives conflicted addresses back as they were.
func TestIPIndexKeys(t *testing.T) {
	v4, v6, c4 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("198.18.0.2")
	a := &podRecord{ID: "ns/a", nsLen: 2, IPs: []netip.Addr{v4, v6}}
	b := &podRecord{ID: "ns/b", nsLen: 2, IPs: []netip.Addr{v4, v6}}
	c := &podRecord{ID: "ns/c", nsLen: 2, IPs: []netip.Addr{c4}}
	var x ipIndex
	for _, p := range []*podRecord{a, b, c} {
		x.update(nil, p)
	}
	ids := func(ps []*podRecord) (out []string) {
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	for _, tc := range []struct {
		addr netip.Addr
		want []string
	}{
		{v4, []string{"ns/a", "ns/b"}},
		{v6, []string{"ns/a", "ns/b"}},
		{c4, []string{"ns/c"}},
		{netip.AddrFrom16(v4.As16()), nil}, // ::ffff:198.18.0.1
		{netip.AddrFrom16(c4.As16()), nil},
		{v6.WithZone("eth0"), nil},
		{netip.Addr{}, nil},
	} {
		if got := ids(x.get(tc.addr)); !slices.Equal(got, tc.want) {
			t.Errorf("get(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if x.claimedByOther(netip.AddrFrom16(c4.As16()), "ns/a") || !x.claimedByOther(c4, "ns/a") || x.claimedByOther(c4, "ns/c") {
		t.Error("claimedByOther wrong for 198.18.0.2 and its mapped form")
	}
	conflicts := slices.SortedFunc(x.conflicts(), netip.Addr.Compare)
	if !slices.Equal(conflicts, []netip.Addr{v4, v6}) {
		t.Errorf("conflicts = %v, want [%v %v]", conflicts, v4, v6)
	}
	x.update(b, nil)
	if x.conflicted(v4) || x.conflicted(v6) || !slices.Equal(ids(x.get(v4)), []string{"ns/a"}) {
		t.Error("b's removal left a conflict")
	}
}
