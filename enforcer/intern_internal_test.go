package enforcer

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"unique"
)

// TestInterner: the cache answers what unique.Make answers, before and
// after it fills up and starts over.
func TestInterner(t *testing.T) {
	in := &interner{m: map[string]unique.Handle[string]{}}
	for i := range 2*internerMax + 10 {
		s := "v" + strconv.Itoa(i%(internerMax+3))
		if got := in.make(s); got != unique.Make(s) {
			t.Fatalf("make(%q) = %v, not unique.Make's", s, got)
		}
		if len(in.m) > internerMax {
			t.Fatalf("%d entries, more than %d", len(in.m), internerMax)
		}
	}
}

// TestSharedLabelLists: pods with the same labels share one list, whatever
// the order of their maps; different labels, and more labels than a shared
// list holds, get lists of their own; every list is sorted by key and
// reads back the pod's labels.
func TestSharedLabelLists(t *testing.T) {
	many := map[string]string{}
	for i := range sharedLabelsMax + 1 {
		many["k"+strconv.Itoa(i)] = "v"
	}
	in := &interner{m: map[string]unique.Handle[string]{}}
	for _, tc := range []struct {
		name   string
		a, b   map[string]string
		shared bool
	}{
		{"same labels", map[string]string{"app": "web", "role": "db", "tier": "1"}, map[string]string{"tier": "1", "role": "db", "app": "web"}, true},
		{"one value differs", map[string]string{"app": "web", "role": "db"}, map[string]string{"app": "web", "role": "db2"}, false},
		{"one label more", map[string]string{"app": "web"}, map[string]string{"app": "web", "role": "db"}, false},
		{"too many to share", many, many, false},
	} {
		la, lb := makeLabelList(in, tc.a), makeLabelList(in, tc.b)
		if got := &la[0] == &lb[0]; got != tc.shared {
			t.Errorf("%s: shared = %v, want %v", tc.name, got, tc.shared)
		}
		for _, c := range []struct {
			l labelList
			m map[string]string
		}{{la, tc.a}, {lb, tc.b}} {
			if len(c.l) != len(c.m) || !slices.IsSortedFunc(c.l, func(x, y labelPair) int { return strings.Compare(x.Key.Value(), y.Key.Value()) }) {
				t.Errorf("%s: list %v not the %d labels sorted", tc.name, c.l, len(c.m))
			}
			for k, v := range c.m {
				if got, ok := c.l.Lookup(k); !ok || got != v {
					t.Errorf("%s: Lookup(%q) = %q, %v, want %q", tc.name, k, got, ok, v)
				}
			}
		}
	}
}
