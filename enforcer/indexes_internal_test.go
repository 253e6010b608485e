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
	pair := newIndexPair()
	for _, p := range []*podRecord{a, b, c} {
		pair.put(nil, p)
	}
	x := &pair.ips
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
	pair.remove(b)
	if x.conflicted(v4) || x.conflicted(v6) || !slices.Equal(ids(x.get(v4)), []string{"ns/a"}) {
		t.Error("b's removal left a conflict")
	}
}

// TestIPIndexNumbers: the index holds pod numbers, the pod index the
// records: replaced pods are found with their new records, deleted pods'
// addresses are gone, and a new pod that takes a deleted pod's number is
// found at its own addresses only. Pods use 198.18.0.0/16, pod i (and its
// replacement) 198.18.i/16, and the even ones 2001:db8::i too; the pods
// added last take 198.19.i/16.
func TestIPIndexNumbers(t *testing.T) {
	const n = 4096
	pod := func(i int, gen string, net byte) *podRecord {
		id := "ns/p" + strconv.Itoa(i)
		ips := []netip.Addr{netip.AddrFrom4([4]byte{198, net, byte(i >> 8), byte(i)})}
		if i%2 == 0 && net == 18 {
			ips = append(ips, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}))
		}
		return &podRecord{ID: id, nsLen: 2, Node: unique.Make(gen), IPs: ips}
	}
	x := newIndexPair()
	live := map[int]*podRecord{}
	var gone []netip.Addr
	check := func(step string) {
		t.Helper()
		addrs := 0
		for i, p := range live {
			for _, a := range p.IPs {
				if got := x.ips.get(a); len(got) != 1 || got[0] != p {
					t.Fatalf("%s: pod %d: get(%v) = %v", step, i, a, got)
				}
				addrs++
			}
		}
		if x.ips.addresses() != addrs {
			t.Fatalf("%s: %d addresses, want %d", step, x.ips.addresses(), addrs)
		}
		for _, a := range gone {
			if got := x.ips.get(a); got != nil {
				t.Fatalf("%s: deleted address %v finds %s", step, a, got[0].ID)
			}
		}
	}
	for i := range n {
		live[i] = pod(i, "a", 18)
		x.put(nil, live[i])
	}
	check("added")
	for i := range n / 2 {
		p := pod(i, "b", 18)
		x.put(live[i], p)
		live[i] = p
	}
	check("replaced")
	for i := range n - 100 {
		x.remove(live[i])
		gone = append(gone, live[i].IPs...)
		delete(live, i)
	}
	check("removed")
	for i := range 50 { // the numbers of deleted pods, at new addresses
		live[i] = pod(i, "c", 19)
		x.put(nil, live[i])
	}
	check("re-added")
}

// indexPair is a pod index and the IP index over it, put and removed as
// the model does.
type indexPair struct {
	pods podIndex
	ips  ipIndex
}

func newIndexPair() *indexPair {
	x := &indexPair{}
	x.ips.pods = &x.pods
	return x
}

func (x *indexPair) put(old, p *podRecord) { x.ips.update(x.pods.put(p), old, p) }

func (x *indexPair) remove(p *podRecord) { x.ips.update(x.pods.remove(p), p, nil) }
