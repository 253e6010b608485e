package enforcer

import (
	"strconv"
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
