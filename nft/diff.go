package nft

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Scope limits a Diff to the objects that may have changed, so that a caller that
// tracks what it touched pays for that and not for the whole table. A nil Scope
// means everything.
type Scope struct {
	// Chains whose definition or rules may differ.
	Chains map[string]bool
	// Sets whose definition or whole content may differ.
	Sets map[string]bool
	// Elements of a set (by ElementID) that may differ; used for sets not in Sets.
	Elements map[string]map[string]bool
}

// Empty reports whether the scope names nothing.
func (sc *Scope) Empty() bool {
	return sc != nil && len(sc.Chains) == 0 && len(sc.Sets) == 0 && len(sc.Elements) == 0
}

// MarkChain, MarkSet and MarkElement record that an object may have changed.
func (sc *Scope) MarkChain(name string) { markIn(&sc.Chains, name) }

// MarkSet records that a set's definition or content may have changed.
func (sc *Scope) MarkSet(name string) { markIn(&sc.Sets, name) }

// MarkElement records that one element of a set may have changed.
func (sc *Scope) MarkElement(set, id string) {
	if sc.Elements == nil {
		sc.Elements = map[string]map[string]bool{}
	}
	m := sc.Elements[set]
	if m == nil {
		m = map[string]bool{}
		sc.Elements[set] = m
	}
	m[id] = true
}

func (sc *Scope) elements() map[string]map[string]bool {
	if sc == nil {
		return nil
	}
	return sc.Elements
}

func markIn(m *map[string]bool, name string) {
	if *m == nil {
		*m = map[string]bool{}
	}
	(*m)[name] = true
}

// Diff returns the transaction that turns from into to, restricted to scope (nil:
// everything). The operations are ordered so the kernel accepts them in one batch:
// new chains and sets first, then element deletions and additions, then rule
// replacements, then deletion of the sets and then the chains (flushed first) no
// longer wanted.
// Objects whose definition changed are flushed, deleted and recreated within the
// same batch.
func Diff(from, to *State, scope *Scope) *Transaction {
	if from == nil {
		from = NewState()
	}
	var (
		tx                          Transaction
		chainNames, setNames        []string
		recreateChains, recreateSet = map[string]bool{}, map[string]bool{}
	)
	if scope == nil {
		chainNames = union(from.Chains, to.Chains)
		setNames = union(from.Sets, to.Sets)
	} else {
		chainNames = slices.Sorted(maps.Keys(scope.Chains))
		setNames = slices.Sorted(maps.Keys(scope.Sets))
	}

	// Definitions that changed must be recreated; rules referencing a recreated set
	// are flushed first (and re-added below).
	for _, n := range setNames {
		f, t := from.Sets[n], to.Sets[n]
		if f != nil && t != nil && !sameSetDef(f, t) {
			recreateSet[n] = true
		}
	}
	for _, n := range chainNames {
		f, t := from.Chains[n], to.Chains[n]
		if f != nil && t != nil && !sameBase(f.Base, t.Base) {
			recreateChains[n] = true
		}
	}
	flushed := map[string]bool{}
	var removed Scope // elements already deleted above
	if len(recreateSet) > 0 || len(recreateChains) > 0 {
		for _, cn := range slices.Sorted(maps.Keys(from.Chains)) {
			c := from.Chains[cn]
			if recreateChains[cn] || referencesAny(c, recreateSet, recreateChains) {
				tx.ReplaceRules(cn, nil)
				flushed[cn] = true
			}
		}
		for _, sn := range slices.Sorted(maps.Keys(from.Sets)) {
			if s := from.Sets[sn]; s.VerdictMap && len(recreateChains) > 0 && !recreateSet[sn] {
				// Verdict-map elements pointing at a recreated chain must go first.
				var drop []Element
				for _, id := range slices.Sorted(maps.Keys(s.Elements)) {
					e := s.Elements[id]
					if e.Verdict != nil && recreateChains[e.Verdict.Chain] {
						drop = append(drop, e)
					}
				}
				if len(drop) > 0 {
					tx.Ops = append(tx.Ops, elementsOp(OpDeleteElements, sn, s, drop))
					for _, e := range drop {
						// Re-added by the element pass below.
						removed.MarkElement(sn, ElementID(s, e))
					}
				}
			}
		}
		// Sets before chains: a verdict map being recreated may still hold
		// elements that point at a chain being recreated.
		for _, n := range slices.Sorted(maps.Keys(recreateSet)) {
			tx.DeleteSet(n)
		}
		for _, n := range slices.Sorted(maps.Keys(recreateChains)) {
			tx.DeleteChain(n)
		}
	}

	// Create.
	for _, n := range chainNames {
		if t := to.Chains[n]; t != nil && (from.Chains[n] == nil || recreateChains[n]) {
			tx.AddChain(*t)
		}
	}
	for _, n := range setNames {
		if t := to.Sets[n]; t != nil && (from.Sets[n] == nil || recreateSet[n]) {
			tx.AddSet(*t)
		}
	}

	// Elements: whole sets in setNames, single elements from scope.Elements.
	elemSets := setNames
	if scope != nil || len(removed.Elements) > 0 {
		elemSets = slices.Clone(setNames)
		inSets := map[string]bool{}
		for _, n := range setNames {
			inSets[n] = true
		}
		for _, m := range []map[string]map[string]bool{scope.elements(), removed.Elements} {
			for n := range m {
				if !inSets[n] {
					inSets[n] = true
					elemSets = append(elemSets, n)
				}
			}
		}
		slices.Sort(elemSets)
	}
	var adds []Op
	for _, n := range elemSets {
		t := to.Sets[n]
		if t == nil {
			continue // deleted below with its elements
		}
		f := from.Sets[n]
		if recreateSet[n] {
			f = nil
		}
		var ids []string
		if scope == nil || scope.Sets[n] {
			ids = unionElems(f, t)
		} else {
			ids = slices.Sorted(maps.Keys(scope.Elements[n]))
		}
		if gone := removed.Elements[n]; len(gone) > 0 && scope != nil && !scope.Sets[n] {
			ids = union(scope.Elements[n], gone)
		}
		var del, add []Element
		for _, id := range ids {
			var fe, te Element
			var inF, inT bool
			if f != nil && !removed.Elements[n][id] {
				fe, inF = f.Elements[id]
			}
			te, inT = t.Elements[id]
			switch {
			case inF && inT:
				if !sameVerdict(fe.Verdict, te.Verdict) {
					del = append(del, fe)
					add = append(add, te)
				}
			case inF:
				del = append(del, fe)
			case inT:
				add = append(add, te)
			}
		}
		if len(del) > 0 {
			tx.Ops = append(tx.Ops, elementsOp(OpDeleteElements, n, t, del))
		}
		if len(add) > 0 {
			adds = append(adds, elementsOp(OpAddElements, n, t, add))
		}
	}
	tx.Ops = append(tx.Ops, adds...)

	// Rules. Chains flushed above get their rules back even when the scope does
	// not name them.
	ruleChains := chainNames
	if scope != nil && len(flushed) > 0 {
		inScope := make(map[string]bool, len(chainNames))
		for _, n := range chainNames {
			inScope[n] = true
		}
		ruleChains = union(inScope, flushed)
	}
	for _, n := range ruleChains {
		t := to.Chains[n]
		if t == nil {
			continue
		}
		f := from.Chains[n]
		if f == nil || flushed[n] || !sameRules(f.Rules, t.Rules) {
			if f == nil && len(t.Rules) == 0 {
				continue
			}
			if flushed[n] && len(t.Rules) == 0 {
				continue
			}
			tx.ReplaceRules(n, t.Rules)
		}
	}

	// Delete what is no longer wanted: flush all doomed chains first, since they
	// may jump to each other.
	var doomed []string
	for _, n := range chainNames {
		if from.Chains[n] != nil && to.Chains[n] == nil {
			doomed = append(doomed, n)
		}
	}
	for _, n := range doomed {
		if len(from.Chains[n].Rules) > 0 && !flushed[n] {
			tx.ReplaceRules(n, nil)
		}
	}
	// Sets before chains: deleting a verdict map releases the chains its
	// elements point at, which may be doomed too. No rule uses a doomed set any
	// more: the chains that did were flushed or rewritten above.
	for _, n := range setNames {
		if from.Sets[n] != nil && to.Sets[n] == nil {
			tx.DeleteSet(n)
		}
	}
	for _, n := range doomed {
		tx.DeleteChain(n)
	}
	return &tx
}

func union[V any](a, b map[string]V) []string {
	seen := make(map[string]struct{}, len(a)+len(b))
	out := make([]string, 0, len(a)+len(b))
	for k := range a {
		seen[k] = struct{}{}
		out = append(out, k)
	}
	for k := range b {
		if _, ok := seen[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func unionElems(f, t *Set) []string {
	var a, b map[string]Element
	if f != nil {
		a = f.Elements
	}
	if t != nil {
		b = t.Elements
	}
	return union(a, b)
}

func sameSetDef(a, b *Set) bool {
	return slices.Equal(a.Key, b.Key) && a.Interval == b.Interval && a.VerdictMap == b.VerdictMap
}

func sameBase(a, b *BaseChain) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func sameVerdict(a, b *Verdict) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func sameRules(a, b []Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if RuleKey(a[i]) != RuleKey(b[i]) {
			return false
		}
	}
	return true
}

// RuleKey is a canonical text of a rule's expressions and comment, equal for
// rules that program the same thing.
func RuleKey(r Rule) string {
	var b strings.Builder
	for _, e := range r.Exprs {
		fmt.Fprintf(&b, "%T%v;", e, e)
	}
	b.WriteString("#")
	b.WriteString(r.Comment)
	return b.String()
}

// referencesAny reports whether a chain's rules use one of the sets or jump to one
// of the chains.
func referencesAny(c *Chain, sets, chains map[string]bool) bool {
	for _, r := range c.Rules {
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case Lookup:
				if sets[e.Set] {
					return true
				}
			case VerdictMapLookup:
				if sets[e.Map] {
					return true
				}
			case Verdict:
				if chains[e.Chain] {
					return true
				}
			}
		}
	}
	return false
}

// Clone returns a deep copy of the state's maps (rules and values are shared:
// they are never mutated in place).
func (s *State) Clone() *State {
	out := NewState()
	for n, c := range s.Chains {
		cc := *c
		cc.Rules = slices.Clone(c.Rules)
		out.Chains[n] = &cc
	}
	for n, set := range s.Sets {
		cs := *set
		cs.Elements = make(map[string]Element, len(set.Elements))
		for id, e := range set.Elements {
			cs.Elements[id] = e
		}
		out.Sets[n] = &cs
	}
	return out
}
