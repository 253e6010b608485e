package nft

import (
	"slices"
	"testing"
)

func TestBusySetsFirst(t *testing.T) {
	lookup := func(set string) Rule {
		return Rule{Exprs: []Expr{Lookup{Fields: []Field{FieldIPSaddr}, Set: set}, Verdict{Kind: VerdictAccept}}}
	}
	dispatch := Rule{Exprs: []Expr{VerdictMapLookup{Fields: []Field{FieldIPDaddr}, Map: "vmap"}}}
	for _, tc := range []struct {
		name string
		ops  []Op
		want []int
	}{
		{"no rules: own order", []Op{{Kind: OpAddSet, Name: "a"}, {Kind: OpAddSet, Name: "b"}}, []int{0, 1}},
		{"most referenced first, ties keep their order", []Op{
			{Kind: OpAddChain, Name: "c"},
			{Kind: OpAddSet, Name: "a"},
			{Kind: OpAddSet, Name: "b"},
			{Kind: OpAddSet, Name: "p"},
			{Kind: OpAddSet, Name: "vmap"},
			{Kind: OpReplaceRules, Name: "c", Chain: &Chain{Name: "c", Rules: []Rule{lookup("p"), lookup("p"), lookup("b"), dispatch}}},
			{Kind: OpAddElements, Name: "a"},
		}, []int{0, 3, 2, 4, 1, 5, 6}},
		{"runs are sorted apart, never across other operations", []Op{
			{Kind: OpAddSet, Name: "a"},
			{Kind: OpAddElements, Name: "a"},
			{Kind: OpAddSet, Name: "b"},
			{Kind: OpAddSet, Name: "p"},
			{Kind: OpReplaceRules, Name: "c", Chain: &Chain{Name: "c", Rules: []Rule{lookup("p"), lookup("a"), lookup("a")}}},
		}, []int{0, 1, 3, 2, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := busySetsFirst(tc.ops); !slices.Equal(got, tc.want) {
				t.Errorf("busySetsFirst = %v, want %v", got, tc.want)
			}
		})
	}
}
