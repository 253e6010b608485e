package cluster

import (
	"slices"
	"strings"
	"testing"
)

func TestReachabilityDiffAndTable(t *testing.T) {
	a := &Pod{Namespace: "x", Name: "a"}
	b := &Pod{Namespace: "x", Name: "b"}
	c := &Pod{Namespace: "y", Name: "c"}
	pods := []*Pod{a, b, c}

	want := NewReachability(pods, true)
	want.ExpectIngress(a, false)
	got := NewReachability(pods, true)
	got.Expect(c, a, false)

	diff := want.Diff(got)
	if len(diff) != 1 || diff[0] != "x/b -> x/a: want blocked, got reachable" {
		t.Errorf("Diff = %q", diff)
	}
	table := got.Table(want)
	for _, line := range []string{
		"from \\ to  x/a   x/b  y/c",
		"x/b        ok X  .    ok",
		"y/c        --    ok   .",
	} {
		if !strings.Contains(table, line) {
			t.Errorf("table lacks %q:\n%s", line, table)
		}
	}
	// A pod's traffic to itself is not part of the table.
	want.Expect(a, a, false)
	if want.Allowed(a, a) {
		t.Error("self cell was set")
	}
}

func TestJanitorRunsNewestFirstOnce(t *testing.T) {
	j := &janitor{funcs: map[int]func(){}}
	var order []int
	for i := range 3 {
		j.register(func() { order = append(order, i) })
	}
	run := j.register(func() { order = append(order, 99) })
	run()
	run() // runs at most once
	j.runAll()
	j.runAll()
	if want := []int{99, 2, 1, 0}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
}
