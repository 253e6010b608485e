package cluster

import (
	"net/netip"
	"testing"
)

func TestPodAddrs(t *testing.T) {
	n := &Node{Index: 3}
	for _, tc := range []struct {
		k      int
		v4, v6 string
	}{
		{1, "198.18.19.1", "2001:db8:1:3::1"},
		{250, "198.18.19.250", "2001:db8:1:3::fa"},
	} {
		v4, v6 := n.PodAddrs(tc.k)
		if v4.String() != tc.v4 || v6.String() != tc.v6 {
			t.Errorf("PodAddrs(%d) = %s, %s; want %s, %s", tc.k, v4, v6, tc.v4, tc.v6)
		}
		if !n.PodCIDRv4().Contains(v4) || !n.PodCIDRv6().Contains(v6) {
			t.Errorf("PodAddrs(%d) = %s, %s: outside %s, %s", tc.k, v4, v6, n.PodCIDRv4(), n.PodCIDRv6())
		}
	}
}

func TestUnroutedAddrs(t *testing.T) {
	v4net, v6net := netip.MustParsePrefix("198.18.224.0/19"), netip.MustParsePrefix("2001:db8:ff::/64")
	seen := map[netip.Addr]bool{}
	for i := range maxUnrouted {
		v4, v6 := UnroutedAddrs(i)
		if !v4net.Contains(v4) || !v6net.Contains(v6) {
			t.Fatalf("UnroutedAddrs(%d) = %s, %s: outside %s, %s", i, v4, v6, v4net, v6net)
		}
		if seen[v4] || seen[v6] {
			t.Fatalf("UnroutedAddrs(%d) = %s, %s: given out before", i, v4, v6)
		}
		seen[v4], seen[v6] = true, true
	}
	// No node range reaches the unrouted one.
	last := &Node{Index: 199}
	if last.PodCIDRv4().Overlaps(v4net) {
		t.Errorf("node range %s overlaps %s", last.PodCIDRv4(), v4net)
	}
}

func TestWithoutChainComments(t *testing.T) {
	in := "table inet t {\n\tset s {\n\t\ttype ipv4_addr\n\t\tcomment \"kept\"\n\t}\n\n\tchain c {\n\t\tcomment \"dropped\"\n\t\tip saddr @s accept comment \"kept too\"\n\t}\n}\n"
	want := "table inet t {\n\tset s {\n\t\ttype ipv4_addr\n\t\tcomment \"kept\"\n\t}\n\n\tchain c {\n\t\tip saddr @s accept comment \"kept too\"\n\t}\n}\n"
	if got := withoutChainComments(in); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
