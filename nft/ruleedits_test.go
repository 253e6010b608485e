package nft

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// jumpChain is a chain of n jumps to policy chains p<ids[i]> and a final drop,
// the shape of a pod chain.
func jumpChain(ids ...int) []Rule {
	var rules []Rule
	for _, id := range ids {
		rules = append(rules, fxRule(fxJump(fmt.Sprintf("p%d", id))))
	}
	return append(rules, fxRule(Counter{}, fxDrop()))
}

// editState is a state with chain c holding rules and the chains its jumps
// name.
func editState(rules []Rule) *State {
	s := NewState()
	s.Chains["c"] = &Chain{Name: "c", Rules: rules}
	for i := range 64 {
		n := fmt.Sprintf("p%d", i)
		s.Chains[n] = &Chain{Name: n}
	}
	return s
}

func TestDiffRuleEdits(t *testing.T) {
	ids := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	without := func(s []int, drop ...int) []int {
		return slices.DeleteFunc(slices.Clone(s), func(i int) bool { return slices.Contains(drop, i) })
	}
	all := ids(0, 40)
	cases := []struct {
		name     string
		from, to []int
		want     string
	}{
		{"one jump added in the middle", without(all, 17), all, "insert rule c@17"},
		{"one jump removed in the middle", all, without(all, 17), "delete rule c@17"},
		{"first and last jumps added", without(all, 0, 39), all, "insert rule c@0; insert rule c@39"},
		{"two places: one out, one in", without(all, 30), without(all, 5), "delete rule c@5; insert rule c@29"},
		{"swap of neighbours", all, append(append(ids(0, 10), 11, 10), ids(12, 40)...), "delete rule c@10; insert rule c@11"},
		{"many changes: rewritten whole", ids(0, 30), ids(25, 60), "replace rules c/36"},
		{"as many changes as rules: edited", ids(0, 40), ids(20, 60), "delete rule c@19; delete rule c@18; delete rule c@17; delete rule c@16; delete rule c@15; delete rule c@14; delete rule c@13; delete rule c@12; delete rule c@11; delete rule c@10; delete rule c@9; delete rule c@8; delete rule c@7; delete rule c@6; delete rule c@5; delete rule c@4; delete rule c@3; delete rule c@2; delete rule c@1; delete rule c@0; insert rule c@20; insert rule c@21; insert rule c@22; insert rule c@23; insert rule c@24; insert rule c@25; insert rule c@26; insert rule c@27; insert rule c@28; insert rule c@29; insert rule c@30; insert rule c@31; insert rule c@32; insert rule c@33; insert rule c@34; insert rule c@35; insert rule c@36; insert rule c@37; insert rule c@38; insert rule c@39"},
		{"short chain: one rule replaced", []int{1}, []int{2}, "delete rule c@0; insert rule c@0"},
		{"the one jump gone", []int{1}, nil, "delete rule c@0"},
		{"all jumps gone", ids(0, 3), nil, "replace rules c/1"},
		{"no change", all, all, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			from, to := editState(jumpChain(tc.from...)), editState(jumpChain(tc.to...))
			tx, got := applyDiff(t, from, to, &Scope{Chains: map[string]bool{"c": true}})
			if s := opSummary(tx); s != tc.want {
				t.Fatalf("transaction:\n got %s\nwant %s\n%s", s, tc.want, tx)
			}
			if !sameRules(got.Chains["c"].Rules, to.Chains["c"].Rules) {
				t.Fatalf("result differs:\n%s", lineDiff(Render("t", to), Render("t", got)))
			}
		})
	}
}

// TestDiffRuleEditsProperty: random edits of a long chain (rules repeated,
// so that the matching is ambiguous) always turn it into the target, in at
// most as many operations as the edits made and never more than a rewrite.
func TestDiffRuleEditsProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 16))
	for i := range 3000 {
		n := rng.IntN(60)
		from := make([]int, n)
		for j := range from {
			from[j] = rng.IntN(12)
		}
		to := slices.Clone(from)
		edits := rng.IntN(6)
		for range edits {
			if len(to) > 0 && rng.IntN(2) == 0 {
				j := rng.IntN(len(to))
				to = slices.Delete(to, j, j+1)
				continue
			}
			to = slices.Insert(to, rng.IntN(len(to)+1), rng.IntN(12))
		}
		fs, ts := editState(jumpChain(from...)), editState(jumpChain(to...))
		tx, got := applyDiff(t, fs, ts, nil)
		if !sameRules(got.Chains["c"].Rules, ts.Chains["c"].Rules) {
			t.Fatalf("case %d: %v -> %v: result differs:\n%s\ntransaction:\n%s", i, from, to, lineDiff(Render("t", ts), Render("t", got)), tx)
		}
		if tx.Size() > edits && tx.Ops[0].Kind != OpReplaceRules {
			t.Fatalf("case %d: %v -> %v: %d rule edits for %d edits:\n%s", i, from, to, tx.Size(), edits, tx)
		}
	}
}

// TestSameRuleIsRuleKey: SameRule answers as comparing RuleKeys does, on
// rules that differ in each way a rule can and on lists that print alike.
func TestSameRuleIsRuleKey(t *testing.T) {
	rules := []Rule{
		fxRule(fxJump("p1")),
		fxRule(fxJump("p2")),
		{Exprs: []Expr{fxJump("p1")}, Comment: "c"},
		fxRule(Counter{}, fxDrop()),
		fxRule(Counter{Packets: 3, Bytes: 99}, fxDrop()),
		fxRule(CounterRef{Name: "n"}, fxDrop()),
		fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s"}, fxAccept()),
		fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "s", Neq: true}, fxAccept()),
		fxRule(Lookup{Set: "s"}, fxAccept()),
		fxRule(Lookup{Fields: []Field{}, Set: "s"}, fxAccept()),
		fxRule(Cmp{Field: FieldTHDport, Value: PortValue(80)}, fxDrop()),
		fxRule(Cmp{Field: FieldTHDport, Value: PortValue(81)}, fxDrop()),
		fxRule(Cmp{Field: FieldTHDport}, fxDrop()),
		fxRule(Cmp{Field: FieldTHDport, Value: Value{}}, fxDrop()),
		fxRule(MatchCtState{States: CtEstablished}, fxAccept()),
		fxRule(MatchCtState{States: CtEstablished}),
		{},
	}
	for i, a := range rules {
		for j, b := range rules {
			if got, want := SameRule(a, b), RuleKey(a) == RuleKey(b); got != want {
				t.Errorf("rules %d and %d: SameRule %v, RuleKeys equal %v:\n%s\n%s", i, j, got, want, RuleKey(a), RuleKey(b))
			}
		}
	}
}
