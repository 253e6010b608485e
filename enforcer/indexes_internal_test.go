package enforcer

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"unique"
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

// TestIPIndexSlots: the records of the usual addresses live in numbered
// slots; slots freed are reused, and once most are free the index renumbers
// the rest into a smaller table, every address still finding its pod. Pods
// use 198.18.0.0/16, pod i (and its replacement) 198.18.i/16, and the even
// ones 2001:db8::i too.
func TestIPIndexSlots(t *testing.T) {
	const n = 4096
	pod := func(i int, gen string) *podRecord {
		id := "ns/p" + strconv.Itoa(i)
		ips := []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})}
		if i%2 == 0 {
			ips = append(ips, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}))
		}
		return &podRecord{ID: id, nsLen: 2, Node: unique.Make(gen), IPs: ips}
	}
	var x ipIndex
	live := map[int]*podRecord{}
	check := func(step string) {
		t.Helper()
		addrs := 0
		for i, p := range live {
			for _, a := range p.IPs {
				if got := x.get(a); len(got) != 1 || got[0] != p {
					t.Fatalf("%s: pod %d: get(%v) = %v", step, i, a, got)
				}
				addrs++
			}
		}
		if x.addresses() != addrs {
			t.Fatalf("%s: %d addresses, want %d", step, x.addresses(), addrs)
		}
		if len(x.recs)-len(x.free) != addrs {
			t.Fatalf("%s: %d slots in use, want %d", step, len(x.recs)-len(x.free), addrs)
		}
	}
	for i := range n {
		live[i] = pod(i, "a")
		x.update(nil, live[i])
	}
	check("added")
	for i := range n / 2 { // replaced in place: same slots
		p := pod(i, "b")
		x.update(live[i], p)
		live[i] = p
	}
	if len(x.recs) != n+n/2 || len(x.free) != 0 {
		t.Fatalf("replaced: %d slots, %d free, want %d, 0", len(x.recs), len(x.free), n+n/2)
	}
	check("replaced")
	for i := range n - 100 {
		x.update(live[i], nil)
		delete(live, i)
	}
	if len(x.recs) >= n/2 {
		t.Errorf("after removing most pods the table still has %d slots", len(x.recs))
	}
	for _, s := range x.free {
		if x.recs[s] != nil {
			t.Error("a free slot keeps a record")
		}
	}
	check("removed")
	for i := range 50 {
		live[i] = pod(i, "c")
		x.update(nil, live[i])
	}
	check("re-added")
}
