package nft

// Diff and State.Apply tests. Fixtures and IP plan: fake_test.go. Each case edits
// fxProgram with a small tweak and checks the transaction Diff computes: its
// operations (minimality and order) and that State.Apply, which enforces
// the kernel's rules, accepts it and yields the target state.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// opSummary is the compact form of a transaction that TestDiff's cases expect:
// one "kind name[/n][@p]" per operation, n being the element or rule count
// where it applies, p a rule's position (failure messages print the whole transaction, as nft text).
func opSummary(tx *Transaction) string {
	var out []string
	for _, op := range tx.Ops {
		s := fmt.Sprintf("%s %s", op.Kind, op.Name)
		switch op.Kind {
		case OpAddElements, OpDeleteElements:
			s += fmt.Sprintf("/%d", len(op.Elements))
		case OpReplaceRules:
			s += fmt.Sprintf("/%d", len(op.Chain.Rules))
		case OpInsertRule, OpDeleteRule:
			s += fmt.Sprintf("@%d", op.Position)
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

// applyDiff applies Diff(from, to, scope) to a copy of from and returns the
// result.
func applyDiff(t *testing.T, from, to *State, scope *Scope) (*Transaction, *State) {
	t.Helper()
	tx := Diff(from, to, scope)
	got := NewState()
	if from != nil {
		got = from.Clone()
	}
	if err := got.Apply(tx); err != nil {
		t.Fatalf("State.Apply rejected the diff: %v\ntransaction: %s", err, tx)
	}
	return tx, got
}

func sameState(a, b *State) bool { return Render("t", a) == Render("t", b) }

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(s *State)
		scope *Scope // nil: full diff
		want  string // opSummary of the transaction
	}{
		{"no change", func(*State) {}, nil, ""},
		{"add one element", func(s *State) {
			s.Sets["peer-v4-web"].PutElements(fxElem(fxAddr("198.18.0.11")))
		}, nil, "add elements peer-v4-web/1"},
		{"delete one element", func(s *State) {
			s.Sets["peer-v4-frontend"].Elements.DeleteID("198.18.0.21")
		}, nil, "delete elements peer-v4-frontend/1"},
		{"deletes before adds across sets", func(s *State) {
			s.Sets["peer-v4-frontend"].Elements.DeleteID("198.18.0.21")
			s.Sets["peer-v4-web"].PutElements(fxElem(fxAddr("198.18.0.11")))
			s.Sets["peer-v6-web"].Elements.DeleteID("2001:db8::a")
		}, nil, "delete elements peer-v4-frontend/1; delete elements peer-v6-web/1; add elements peer-v4-web/1"},
		{"interval element replaced", func(s *State) {
			set := s.Sets["ports-web"]
			set.Elements.DeleteID(ElementID(set, fxPorts(ProtoTCP, 8000, 8080)))
			e := fxPorts(ProtoTCP, 8000, 8090)
			set.PutElements(e)
		}, nil, "delete elements ports-web/1; add elements ports-web/1"},
		{"verdict change on a vmap element", func(s *State) {
			set := s.Sets["ingress-v4"]
			e := fxVmapElem(fxAddr("198.18.0.30"), fxGoto("pod-in-web"))
			set.PutElements(e)
		}, nil, "delete elements ingress-v4/1; add elements ingress-v4/1"},
		{"rules of one chain", func(s *State) {
			c := s.Chains["pod-in-db"]
			c.Rules = append([]Rule{fxRule(fxJump("pol-in-allow-web"))}, c.Rules...)
		}, nil, "insert rule pod-in-db@0"},
		{"rule comment change", func(s *State) {
			s.Chains["pod-in-db"].Rules = []Rule{{Exprs: []Expr{Counter{}, fxDrop()}, Comment: "default deny"}}
		}, nil, "replace rules pod-in-db/1"},
		{"new pod: chain, rules, vmap element in order", func(s *State) {
			fxAddChains(s, &Chain{Name: "pod-in-new", Rules: []Rule{fxRule(fxJump("pol-in-allow-web")), fxRule(Counter{}, fxDrop())}})
			s.Sets["ingress-v4"].PutElements(fxVmapElem(fxAddr("198.18.0.40"), fxGoto("pod-in-new")))
		}, nil, "add chain pod-in-new; add elements ingress-v4/1; replace rules pod-in-new/2"},
		{"new policy: set before the rule using it", func(s *State) {
			fxAdd(s, fxSet("peer-v4-db", []KeyType{TypeIPv4Addr}, []Element{fxElem(fxAddr("198.18.0.30"))}))
			fxAddChains(s, &Chain{Name: "pol-in-db", Rules: []Rule{fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "peer-v4-db"}, fxAccept())}})
			s.Chains["pod-in-db"].Rules = []Rule{fxRule(fxJump("pol-in-db")), fxRule(Counter{}, fxDrop())}
		}, nil, "add chain pol-in-db; add set peer-v4-db; add elements peer-v4-db/1; insert rule pod-in-db@0; replace rules pol-in-db/1"},
		{"pod gone: element, then flush and delete chain", func(s *State) {
			s.Sets["ingress-v4"].Elements.DeleteID("198.18.0.30")
			s.Sets["ingress-v6"].Elements.DeleteID("2001:db8::30")
			delete(s.Chains, "pod-in-db")
		}, nil, "delete elements ingress-v4/1; delete elements ingress-v6/1; replace rules pod-in-db/0; delete chain pod-in-db"},
		{"policy gone: rules first, then chains, then sets", func(s *State) {
			s.Chains["pod-eg-frontend"].Rules = []Rule{fxRule(Counter{}, fxDrop())}
			delete(s.Chains, "pol-eg-frontend-egress")
			delete(s.Sets, "peer-v4-web")
			delete(s.Sets, "peer-v6-web")
			delete(s.Sets, "ports-http")
		}, nil, "delete rule pod-eg-frontend@0; replace rules pol-eg-frontend-egress/0; " +
			"delete set peer-v4-web; delete set peer-v6-web; delete set ports-http; delete chain pol-eg-frontend-egress"},
		{"recreated set definition", func(s *State) {
			// peer-v4-web becomes an interval set: the rule using it is flushed,
			// the set recreated and refilled, the rules put back.
			set := s.Sets["peer-v4-web"]
			set.Interval = true
		}, nil, "replace rules pol-eg-frontend-egress/0; delete set peer-v4-web; add set peer-v4-web; " +
			"add elements peer-v4-web/1; replace rules pol-eg-frontend-egress/2"},
		{"recreated base chain", func(s *State) {
			s.Chains["ingress"].Base = &BaseChain{Hook: HookForward, Priority: 5, Policy: VerdictAccept}
		}, nil, "replace rules ingress/0; delete chain ingress; add chain ingress; replace rules ingress/6"},
		{"recreated chain referenced by vmap elements and a jump", func(s *State) {
			// A regular chain cannot change definition except by becoming a base
			// chain; what references it must let go first and come back after.
			s.Chains["pol-in-allow-web"].Base = &BaseChain{Hook: HookInput, Priority: 0, Policy: VerdictAccept}
		}, nil, "replace rules pod-in-web/0; replace rules pol-in-allow-web/0; delete chain pol-in-allow-web; add chain pol-in-allow-web; " +
			"replace rules pod-in-web/2; replace rules pol-in-allow-web/6"},
		{"scoped: one element only", func(s *State) {
			s.Sets["peer-v4-web"].PutElements(fxElem(fxAddr("198.18.0.11")))
			s.Sets["peer-v4-frontend"].Elements.DeleteID("198.18.0.21") // outside the scope: ignored
		}, &Scope{Elements: map[string]map[string]bool{"peer-v4-web": {"198.18.0.11": true}}}, "add elements peer-v4-web/1"},
		{"scoped: unchanged element in scope sends nothing", func(s *State) {}, &Scope{Elements: map[string]map[string]bool{"peer-v4-web": {"198.18.0.10": true}}}, ""},
		{"scoped: whole set", func(s *State) {
			s.Sets["peer-v4-frontend"].Elements.Clear()
			s.Chains["pod-in-db"].Rules = nil // outside the scope: ignored
		}, &Scope{Sets: map[string]bool{"peer-v4-frontend": true}}, "delete elements peer-v4-frontend/2"},
		{"scoped: one chain", func(s *State) {
			s.Chains["pod-in-db"].Rules = nil
			s.Sets["peer-v4-frontend"].Elements.DeleteID("198.18.0.21") // outside the scope: ignored
		}, &Scope{Chains: map[string]bool{"pod-in-db": true}}, "replace rules pod-in-db/0"},
		{"scoped: recreated set restores the rules of chains outside the scope", func(s *State) {
			s.Sets["peer-v4-web"].Interval = true
		}, &Scope{Sets: map[string]bool{"peer-v4-web": true}}, "replace rules pol-eg-frontend-egress/0; delete set peer-v4-web; add set peer-v4-web; " +
			"add elements peer-v4-web/1; replace rules pol-eg-frontend-egress/2"},
		{"scoped: recreated chain restores what points at it outside the scope", func(s *State) {
			s.Chains["pod-in-db"].Base = &BaseChain{Hook: HookInput, Priority: 0, Policy: VerdictAccept}
		}, &Scope{Chains: map[string]bool{"pod-in-db": true}}, "replace rules pod-in-db/0; delete elements ingress-v4/1; delete elements ingress-v6/1; " +
			"delete chain pod-in-db; add chain pod-in-db; add elements ingress-v4/1; add elements ingress-v6/1; replace rules pod-in-db/1"},
		{"empty scope sends nothing", func(s *State) {
			s.Chains["pod-in-db"].Rules = nil
		}, &Scope{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, to := fxProgram(), fxProgram()
			tc.tweak(to)
			tx, got := applyDiff(t, from, to, tc.scope)
			if s := opSummary(tx); s != tc.want {
				t.Errorf("transaction:\n got %s\nwant %s", s, tc.want)
			}
			if tc.scope == nil && !sameState(got, to) {
				t.Errorf("State.Apply(Diff) differs from the target:\n%s", lineDiff(Render("t", to), Render("t", got)))
			}
			// Whatever a scoped diff leaves out stays as it was: no chain may end
			// with rules that are neither the old nor the new ones.
			for n, c := range got.Chains {
				var old, want []Rule
				if f := from.Chains[n]; f != nil {
					old = f.Rules
				}
				if w := to.Chains[n]; w != nil {
					want = w.Rules
				}
				if !sameRules(c.Rules, old) && !sameRules(c.Rules, want) {
					t.Errorf("chain %s left with %d rules, neither before (%d) nor after (%d)", n, len(c.Rules), len(old), len(want))
				}
			}
			if tc.scope == nil {
				if again := Diff(got, to, nil); !again.Empty() {
					t.Errorf("second diff not empty:\n%s", again)
				}
			}
		})
	}
}

// TestDiffFromNothing programs and removes a whole table.
func TestDiffFromNothing(t *testing.T) {
	tx, got := applyDiff(t, nil, fxProgram(), nil)
	if !sameState(got, fxProgram()) {
		t.Fatal("programming from nothing does not reach the target")
	}
	if tx.Size() == 0 {
		t.Fatal("empty transaction")
	}
	// And back to an empty table: every chain and set deleted.
	tx, got = applyDiff(t, fxProgram(), NewState(), nil)
	if len(got.Chains)+len(got.Sets) != 0 {
		t.Fatalf("left behind: %s", Render("t", got))
	}
	for _, op := range tx.Ops {
		if op.Kind == OpDeleteElements || op.Kind == OpAddElements {
			t.Errorf("deleting whole sets should not delete their elements one by one:\n%s", tx)
			break
		}
	}
}

// TestDiffDeletesVmapWithItsChains removes a verdict map together with the chains
// its elements point to: the set must go before the chains (the kernel refuses to
// delete a chain a map element still uses).
func TestDiffDeletesVmapWithItsChains(t *testing.T) {
	from := fxProgram()
	to := fxProgram()
	to.Chains["ingress"].Rules = to.Chains["ingress"].Rules[:3] // drop the ip6 vmap rule
	delete(to.Sets, "ingress-v6")
	delete(to.Sets, "ingress-v4")
	to.Chains["ingress"].Rules = to.Chains["ingress"].Rules[:2]
	delete(to.Chains, "pod-in-db")
	applyDiff(t, from, to, nil)
}

// TestDiffRecreatedVmapAndChain recreates a verdict map and a chain its elements
// point to in one diff.
func TestDiffRecreatedVmapAndChain(t *testing.T) {
	from := fxProgram()
	to := fxProgram()
	to.Sets["egress-v4"].Interval = true
	to.Chains["pod-eg-frontend"].Base = &BaseChain{Hook: HookInput, Priority: 0, Policy: VerdictAccept}
	to.Sets["egress-v4"].Elements.DeleteID("198.18.0.20")
	to.Sets["egress-v6"].Elements.DeleteID("2001:db8::20")
	_, got := applyDiff(t, from, to, nil)
	if !sameState(got, to) {
		t.Fatalf("differs:\n%s", lineDiff(Render("t", to), Render("t", got)))
	}
}

// TestDiffProperty checks on random pairs of states that State.Apply(Diff(a, b))
// turns a into b, that the kernel's rules (as State.Apply enforces them) accept the
// order, that a second Diff is empty, and that a scope naming every difference
// gives the same result.
func TestDiffProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		from, to := randomState(rng), randomState(rng)
		tx := Diff(from, to, nil)
		got := from.Clone()
		if err := got.Apply(tx); err != nil {
			t.Fatalf("case %d: State.Apply: %v\ntransaction: %s\nfrom:\n%s\nto:\n%s", i, err, tx, Render("t", from), Render("t", to))
		}
		if !sameState(got, to) {
			t.Fatalf("case %d: result differs from target:\n%s", i, lineDiff(Render("t", to), Render("t", got)))
		}
		if again := Diff(got, to, nil); !again.Empty() {
			t.Fatalf("case %d: second diff not empty:\n%s", i, again)
		}
		scoped := Diff(from, to, fullScope(from, to))
		got2 := from.Clone()
		if err := got2.Apply(scoped); err != nil {
			t.Fatalf("case %d: scoped State.Apply: %v\ntransaction: %s", i, err, scoped)
		}
		if !sameState(got2, to) {
			t.Fatalf("case %d: scoped result differs:\n%s", i, lineDiff(Render("t", to), Render("t", got2)))
		}
	}
}

// fullScope names every chain and set of both states, whole.
func fullScope(a, b *State) *Scope {
	sc := &Scope{}
	for _, s := range []*State{a, b} {
		for n := range s.Chains {
			sc.MarkChain(n)
		}
		for n := range s.Sets {
			sc.MarkSet(n)
		}
	}
	return sc
}

// randomState draws a consistent state from a small universe, so that two draws
// overlap: a base chain, up to four regular chains that jump "forward" (c0 to c1
// ...), and up to four sets whose definitions vary between draws.
func randomState(rng *rand.Rand) *State {
	s := NewState()
	prio := rng.IntN(2)
	chainNames := []string{}
	for i := range 4 {
		if rng.IntN(10) < 7 {
			name := fmt.Sprintf("c%d", i)
			c := &Chain{Name: name, Comment: name}
			if rng.IntN(8) == 0 {
				// Sometimes the "regular" chain is a base chain on input.
				c.Base = &BaseChain{Hook: HookInput, Priority: 0, Policy: VerdictAccept}
			}
			s.Chains[name] = c
			if c.Base == nil {
				chainNames = append(chainNames, name)
			}
		}
	}
	s.Chains["base"] = &Chain{Name: "base", Base: &BaseChain{Hook: HookForward, Priority: prio, Policy: VerdictAccept}}

	type def struct {
		key      []KeyType
		interval bool
		vmap     bool
		fields   []Field
	}
	defs := []def{
		{[]KeyType{TypeIPv4Addr}, false, false, []Field{FieldIPSaddr}},
		{[]KeyType{TypeIPv4Addr}, true, false, []Field{FieldIPDaddr}},
		{[]KeyType{TypeInetProto, TypeInetService}, true, false, []Field{FieldL4Proto, FieldTHDport}},
		{[]KeyType{TypeIPv4Addr}, false, true, []Field{FieldIPDaddr}},
	}
	setFields := map[string][]Field{}
	for i := range 4 {
		if rng.IntN(10) >= 7 {
			continue
		}
		d := defs[rng.IntN(len(defs))]
		name := fmt.Sprintf("s%d", i)
		set := &Set{Name: name, Key: d.key, Interval: d.interval, VerdictMap: d.vmap, Comment: name}
		for j := range 6 {
			if rng.IntN(2) == 0 {
				continue
			}
			var e Element
			switch {
			case d.key[0] == TypeInetProto:
				e = fxPorts(ProtoTCP, uint16(j*10), uint16(j*10+rng.IntN(5)))
			case d.interval:
				e = fxRange(fxAddr(fmt.Sprintf("198.18.%d.0", j)), fxAddr(fmt.Sprintf("198.18.%d.%d", j, 1+rng.IntN(200))))
			default:
				e = fxElem(fxAddr(fmt.Sprintf("198.18.0.%d", j)))
			}
			if d.vmap {
				v := Verdict{Kind: VerdictAccept}
				if len(chainNames) > 0 && rng.IntN(3) > 0 {
					v = Verdict{Kind: VerdictGoto, Chain: chainNames[rng.IntN(len(chainNames))]}
				}
				e.Verdict = &v
			}
			set.PutElements(e)
		}
		s.Sets[name] = set
		setFields[name] = d.fields
	}

	// Rules: chains may use any set and jump to later regular chains.
	setNames := s.SetNames()
	for _, cn := range s.ChainNames() {
		c := s.Chains[cn]
		n := rng.IntN(4)
		for range n {
			var r Rule
			switch k := rng.IntN(4); {
			case k == 0 && len(setNames) > 0:
				sn := setNames[rng.IntN(len(setNames))]
				if s.Sets[sn].VerdictMap {
					r = fxRule(VerdictMapLookup{Fields: setFields[sn], Map: sn})
				} else {
					r = fxRule(Lookup{Fields: setFields[sn], Set: sn}, fxAccept())
				}
			case k == 1:
				var later []string
				for _, cn := range chainNames {
					if c.Base != nil || cn > c.Name {
						later = append(later, cn)
					}
				}
				if len(later) == 0 {
					r = fxRule(Counter{}, fxDrop())
					break
				}
				r = fxRule(fxJump(later[rng.IntN(len(later))]))
			case k == 2:
				r = fxRule(MatchCtState{States: CtEstablished}, fxAccept())
			default:
				r = fxRule(Cmp{Field: FieldTHDport, Value: PortValue(uint16(rng.IntN(3)))}, fxDrop())
			}
			c.Rules = append(c.Rules, r)
		}
	}
	return s
}

// TestDiffNewSetElementOrder: a scoped Diff (a change) sends a new set's
// elements sorted by ID, the same on every call (people read those batches:
// the enforcer's delta goldens); a whole-table Diff sends them all, in the
// map's order.
func TestDiffNewSetElementOrder(t *testing.T) {
	var elems []Element
	for i := range 40 {
		elems = append(elems, Element{Key: []Value{fxAddr(fmt.Sprintf("198.18.0.%d", i))}})
	}
	to := NewState()
	to.Sets["s"] = fxSet("s", []KeyType{TypeIPv4Addr}, elems)
	for _, tc := range []struct {
		name   string
		scope  *Scope
		sorted bool
	}{
		{"scoped", &Scope{Sets: map[string]bool{"s": true}}, true},
		{"whole table", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 5 { // a map's order differs from call to call
				tx, got := applyDiff(t, nil, to, tc.scope)
				if !sameState(got, to) {
					t.Fatalf("the diff does not reach the target:\n%s", tx)
				}
				var ids []string
				for _, op := range tx.Ops {
					if op.Kind == OpAddElements {
						for _, e := range op.Elements {
							ids = append(ids, ElementID(to.Sets["s"], e))
						}
					}
				}
				if len(ids) != len(elems) {
					t.Fatalf("%d elements sent, want %d:\n%s", len(ids), len(elems), tx)
				}
				if tc.sorted && !slices.IsSorted(ids) {
					t.Fatalf("elements not sorted by ID: %v", ids)
				}
			}
		})
	}
}
