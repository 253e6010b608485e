package enforcer

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
)

// renderRuns prints a class map's runs as "lo:class" ("-" for none).
func renderRuns(cm *classMap) string {
	var parts []string
	for _, r := range cm.runs {
		c := "-"
		if r.class != nil {
			c = strings.Join(r.class.ids, "+")
		}
		parts = append(parts, r.lo.String()+":"+c)
	}
	return strings.Join(parts, " ")
}

// TestClassMapSetAt: setting the class of single addresses splits and merges
// runs so that they stay canonical (maximal runs, adjacent runs differ),
// whatever the order, and the elements and class references follow.
func TestClassMapSetAt(t *testing.T) {
	for _, tc := range []struct {
		name string
		sets []string // "addr=id" ("addr=" for no class), in order
		want string
		refs map[string]int
	}{
		{"one point", []string{"198.18.0.5=a"}, "0.0.0.0:- 198.18.0.5:a 198.18.0.6:-", map[string]int{"a": 1}},
		{"neighbours merge", []string{"198.18.0.5=a", "198.18.0.6=a"}, "0.0.0.0:- 198.18.0.5:a 198.18.0.7:-", map[string]int{"a": 1}},
		{"gap filled merges three", []string{"198.18.0.5=a", "198.18.0.7=a", "198.18.0.6=a"}, "0.0.0.0:- 198.18.0.5:a 198.18.0.8:-", map[string]int{"a": 1}},
		{"middle removed splits", []string{"198.18.0.5=a", "198.18.0.6=a", "198.18.0.7=a", "198.18.0.6="},
			"0.0.0.0:- 198.18.0.5:a 198.18.0.6:- 198.18.0.7:a 198.18.0.8:-", map[string]int{"a": 2}},
		{"different classes stay apart", []string{"198.18.0.5=a", "198.18.0.6=b"}, "0.0.0.0:- 198.18.0.5:a 198.18.0.6:b 198.18.0.7:-", map[string]int{"a": 1, "b": 1}},
		{"back to nothing", []string{"198.18.0.5=a", "198.18.0.5="}, "0.0.0.0:-", map[string]int{}},
		{"first and last addresses", []string{"0.0.0.0=a", "255.255.255.255=a"}, "0.0.0.0:a 0.0.0.1:- 255.255.255.255:a", map[string]int{"a": 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestTiers()
			cm := newClassMap("m", IPv4)
			tr.w.putSet(nft.Set{Name: cm.name, Key: []nft.KeyType{IPv4.addrType()}, Interval: true, VerdictMap: true}, 0)
			for _, s := range tc.sets {
				addr, id, _ := strings.Cut(s, "=")
				var ids []string
				if id != "" {
					ids = []string{id}
				}
				tr.setAt(cm, netip.MustParseAddr(addr), tr.intern(Ingress, tierAdmin, ids))
			}
			tr.finishClasses() // sends the elements
			if got := renderRuns(cm); got != tc.want {
				t.Errorf("runs %s, want %s", got, tc.want)
			}
			refs := map[string]int{}
			elems := 0
			for _, r := range cm.runs {
				if r.class != nil {
					refs[r.class.key]++
					elems++
				}
			}
			for k, n := range refs {
				if tc.refs[k] != n || tr.classes[k].refs != n {
					t.Errorf("class %s: %d runs, %d refs, want %d", k, n, tr.classes[k].refs, tc.refs[k])
				}
			}
			if len(refs) != len(tc.refs) {
				t.Errorf("classes in use %v, want %v", refs, tc.refs)
			}
			if n := tr.w.set("m").Elements.Len(); n != elems {
				t.Errorf("%d elements for %d runs with a class", n, elems)
			}
		})
	}
}

// TestNetRuns: the networks part of a class map, from overlapping networks
// of several rules and rules that failed to parse.
func TestNetRuns(t *testing.T) {
	rule := func(id string, broken bool, cidrs ...string) *tierRule {
		r := &tierRule{id: id, r: &cnpRule{broken: broken}}
		var p cnpPeer
		for _, c := range cidrs {
			p.networks = append(p.networks, netip.MustParsePrefix(c))
		}
		r.r.peers = []cnpPeer{p}
		return r
	}
	for _, tc := range []struct {
		name  string
		rules []*tierRule
		want  string
	}{
		{"none", nil, "0.0.0.0:"},
		{"one network", []*tierRule{rule("a", false, "198.18.0.0/24")}, "0.0.0.0: 198.18.0.0:a 198.18.1.0:"},
		{"nested networks of two rules", []*tierRule{rule("a", false, "198.18.0.0/16"), rule("b", false, "198.18.1.0/24")},
			"0.0.0.0: 198.18.0.0:a 198.18.1.0:a+b 198.18.2.0:a 198.19.0.0:"},
		{"one rule, adjacent networks merge", []*tierRule{rule("a", false, "198.18.0.0/24", "198.18.1.0/24")}, "0.0.0.0: 198.18.0.0:a 198.18.2.0:"},
		{"overlap within a rule", []*tierRule{rule("a", false, "198.18.0.0/16", "198.18.1.0/24")}, "0.0.0.0: 198.18.0.0:a 198.19.0.0:"},
		{"broken rule covers the family", []*tierRule{rule("a", true), rule("b", false, "255.255.255.0/24")}, "0.0.0.0:a 255.255.255.0:a+b"},
		{"other family ignored", []*tierRule{rule("a", false, "2001:db8::/32")}, "0.0.0.0:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var parts []string
			for _, r := range netRuns(IPv4, tc.rules) {
				parts = append(parts, r.lo.String()+":"+strings.Join(r.ids, "+"))
			}
			if got := strings.Join(parts, " "); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestClassMapSetClassesInOneGo: classes given to many addresses at once
// (near ones in one window, far ones in their own) end in the same runs,
// elements and class references as the same classes given one by one.
func TestClassMapSetClassesInOneGo(t *testing.T) {
	for seed := range 50 {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		one, batch := newTestTiers(), newTestTiers()
		cms := [2]*classMap{newClassMap("m", IPv4), newClassMap("m", IPv4)}
		for _, tr := range []*tiers{one, batch} {
			tr.w.putSet(nft.Set{Name: "m", Key: []nft.KeyType{IPv4.addrType()}, Interval: true, VerdictMap: true}, 0)
		}
		for range 5 {
			picked := map[netip.Addr]string{}
			for range 1 + r.IntN(12) {
				a := netip.AddrFrom4([4]byte{198, 18, 0, byte(r.IntN(24))})
				if r.IntN(6) == 0 {
					a = netip.AddrFrom4([4]byte{255, 255, 255, byte(250 + r.IntN(6))})
				}
				picked[a] = []string{"", "a", "b"}[r.IntN(3)]
			}
			var pts []classRun
			for _, a := range slices.SortedFunc(maps.Keys(picked), netip.Addr.Compare) {
				var ids []string
				if picked[a] != "" {
					ids = []string{picked[a]}
				}
				one.setAt(cms[0], a, one.intern(Ingress, tierAdmin, ids))
				pts = append(pts, classRun{lo: a, class: batch.intern(Ingress, tierAdmin, ids)})
			}
			batch.setClasses(cms[1], pts)
			one.finishClasses()
			batch.finishClasses()
			if a, b := renderRuns(cms[0]), renderRuns(cms[1]); a != b {
				t.Fatalf("seed %d: one by one %s, in one go %s", seed, a, b)
			}
			if a, b := nft.Render("t", one.w.desired), nft.Render("t", batch.w.desired); a != b {
				t.Fatalf("seed %d: elements differ:\n%s\n%s", seed, a, b)
			}
			for k, c := range one.classes {
				if batch.classes[k] == nil || batch.classes[k].refs != c.refs {
					t.Fatalf("seed %d: class %s has %d refs one by one, %v in one go", seed, k, c.refs, batch.classes[k])
				}
			}
		}
	}
}

// newTestTiers is a tiers part on its own, with the log and counters off.
func newTestTiers() *tiers {
	w := newWriter()
	return newTiers(w, nil, "node-a", nil, newLogging(w, &Config{}), newCounters(w, false))
}
