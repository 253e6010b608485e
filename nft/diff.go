package nft

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
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
	// Objects (named counters and limits) that may have been added or
	// removed.
	Objects map[string]bool
}

// Empty reports whether the scope names nothing.
func (sc *Scope) Empty() bool {
	return sc != nil && len(sc.Chains) == 0 && len(sc.Sets) == 0 && len(sc.Elements) == 0 && len(sc.Objects) == 0
}

// MarkChain, MarkSet and MarkElement record that an object may have changed.
func (sc *Scope) MarkChain(name string) { markIn(&sc.Chains, name) }

// MarkSet records that a set's definition or content may have changed.
func (sc *Scope) MarkSet(name string) { markIn(&sc.Sets, name) }

// MarkObject records that a named object may have been added or removed.
func (sc *Scope) MarkObject(name string) { markIn(&sc.Objects, name) }

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
// new named objects, chains and sets first, then element deletions and
// additions, then the rules (a chain whose rules differ in a few places
// gets those deleted and inserted, see ruleEdits; another is rewritten
// whole), then deletion of the sets, the named
// objects and then the chains (flushed first) no longer wanted.
// Chains and sets whose definition changed are flushed, deleted and recreated
// within the same batch. The elements of a set that a whole-table Diff (nil
// scope) creates come in the set's map order, which may differ from one call
// to the next; everything else, in every Diff, is in a fixed order.
//
// Named objects are compared by definition only (sameObjectDef): counter
// values and comments never make a difference. A named object whose
// definition changed is deleted and added again only if no rule of from
// names it; otherwise Diff adds the new definition under the old name,
// which Apply refuses with ErrExists: a caller must give a changed
// definition a new name (an object is not recreated under the rules that
// count or limit with it, which would lose its counts).
func Diff(from, to *State, scope *Scope) *Transaction {
	if from == nil {
		from = NewState()
	}
	d := &differ{from: from, to: to, scope: scope,
		recreateChains: map[string]bool{}, recreateSets: map[string]bool{}, flushed: map[string]bool{}}
	if scope == nil {
		d.chainNames = union(from.Chains, to.Chains)
		d.setNames = union(from.Sets, to.Sets)
		d.objectNames = union(from.Objects, to.Objects)
	} else {
		d.chainNames = slices.Sorted(maps.Keys(scope.Chains))
		d.setNames = slices.Sorted(maps.Keys(scope.Sets))
		d.objectNames = slices.Sorted(maps.Keys(scope.Objects))
	}
	d.findRecreated()
	if len(d.recreateSets) > 0 || len(d.recreateChains) > 0 {
		d.clearRecreated()
	}
	d.createObjects()
	d.create()
	d.elements()
	d.rules()
	d.deleteUnwanted()
	return &d.tx
}

// differ holds one Diff as it goes through its phases, in the order of the
// operations they emit.
type differ struct {
	from, to             *State
	scope                *Scope
	tx                   Transaction
	chainNames, setNames []string // in scope, sorted
	objectNames          []string // in scope, sorted
	// Objects whose definition changed: deleted and created again.
	recreateChains, recreateSets map[string]bool
	flushed                      map[string]bool // chains whose rules were flushed
	removed                      Scope           // elements already deleted
}

// findRecreated finds the objects whose definition changed.
func (d *differ) findRecreated() {
	for _, n := range d.setNames {
		f, t := d.from.Sets[n], d.to.Sets[n]
		if f != nil && t != nil && !sameSetDef(f, t) {
			d.recreateSets[n] = true
		}
	}
	for _, n := range d.chainNames {
		f, t := d.from.Chains[n], d.to.Chains[n]
		if f != nil && t != nil && !sameBase(f.Base, t.Base) {
			d.recreateChains[n] = true
		}
	}
}

// clearRecreated deletes the objects to recreate, after flushing the rules
// that reference them and deleting the verdict-map elements that point at
// them (the rules and elements come back in the passes below).
func (d *differ) clearRecreated() {
	for _, cn := range slices.Sorted(maps.Keys(d.from.Chains)) {
		c := d.from.Chains[cn]
		if d.recreateChains[cn] || referencesAny(c, d.recreateSets, d.recreateChains) {
			d.tx.ReplaceRules(cn, nil)
			d.flushed[cn] = true
		}
	}
	for _, sn := range slices.Sorted(maps.Keys(d.from.Sets)) {
		s := d.from.Sets[sn]
		if !s.VerdictMap || len(d.recreateChains) == 0 || d.recreateSets[sn] {
			continue
		}
		// Verdict-map elements pointing at a recreated chain must go first.
		var drop []Element
		for _, id := range slices.Sorted(s.Elements.IDs()) {
			e, _ := s.Elements.Get(id)
			if e.Verdict != nil && d.recreateChains[e.Verdict.Chain] {
				drop = append(drop, e)
			}
		}
		if len(drop) > 0 {
			d.tx.Ops = append(d.tx.Ops, elementsOp(OpDeleteElements, sn, s, drop))
			for _, e := range drop {
				// Re-added by the element pass.
				d.removed.MarkElement(sn, ElementID(s, e))
			}
		}
	}
	// Sets before chains: a verdict map being recreated may still hold
	// elements that point at a chain being recreated.
	for _, n := range slices.Sorted(maps.Keys(d.recreateSets)) {
		d.tx.DeleteSet(n)
	}
	for _, n := range slices.Sorted(maps.Keys(d.recreateChains)) {
		d.tx.DeleteChain(n)
	}
}

// createObjects adds the named objects that are new, and those whose
// definition changed: after deleting the old one if no rule names it, else
// as an addition that Apply refuses (see Diff).
func (d *differ) createObjects() {
	for _, n := range d.objectNames {
		t := d.to.Objects[n]
		if t == nil {
			continue
		}
		if f := d.from.Objects[n]; f != nil {
			if sameObjectDef(f, t) {
				continue
			}
			if !d.from.namesAnyObject(map[string]bool{n: true}) {
				d.tx.Ops = append(d.tx.Ops, deleteObjectOp(f))
			}
		}
		d.tx.AddObject(*t)
	}
}

// create adds the chains and sets that are new or recreated.
func (d *differ) create() {
	for _, n := range d.chainNames {
		if t := d.to.Chains[n]; t != nil && (d.from.Chains[n] == nil || d.recreateChains[n]) {
			d.tx.AddChain(*t)
		}
	}
	for _, n := range d.setNames {
		if t := d.to.Sets[n]; t != nil && (d.from.Sets[n] == nil || d.recreateSets[n]) {
			d.tx.AddSet(*t)
		}
	}
}

// elements emits the element deletions, then the additions: whole sets in
// setNames, single elements from the scope and those deleted above.
func (d *differ) elements() {
	var adds []Op
	for _, n := range d.elementSets() {
		t := d.to.Sets[n]
		if t == nil {
			continue // deleted below with its elements
		}
		del, add := d.setDelta(n, t)
		if len(del) > 0 {
			d.tx.Ops = append(d.tx.Ops, elementsOp(OpDeleteElements, n, t, del))
		}
		if len(add) > 0 {
			adds = append(adds, elementsOp(OpAddElements, n, t, add))
		}
	}
	d.tx.Ops = append(d.tx.Ops, adds...)
}

// elementSets are the sets whose elements may differ, sorted.
func (d *differ) elementSets() []string {
	if d.scope == nil && len(d.removed.Elements) == 0 {
		return d.setNames
	}
	out := slices.Clone(d.setNames)
	in := map[string]bool{}
	for _, n := range d.setNames {
		in[n] = true
	}
	for _, m := range []map[string]map[string]bool{d.scope.elements(), d.removed.Elements} {
		for n := range m {
			if !in[n] {
				in[n] = true
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// setDelta returns the elements of set n to delete and to add (an element
// whose verdict changed is in both).
func (d *differ) setDelta(n string, t *Set) (del, add []Element) {
	f := d.from.Sets[n]
	if d.recreateSets[n] {
		f = nil
	}
	removed := d.removed.Elements[n]
	var ids []string
	if d.scope == nil || d.scope.Sets[n] {
		if f == nil {
			// A new set: nothing to compare. A whole-table Diff (start-up,
			// resync) sends its elements in the map's order: the kernel takes
			// them in any, and sorting the IDs of a large table was 40% of
			// its first Diff. A scoped Diff (a change) sorts them: its batch
			// is small, and people read it (the enforcer's delta goldens).
			if d.scope == nil {
				return nil, t.Elements.AppendValues(nil)
			}
			return nil, elementsByID(t)
		}
		if len(removed) == 0 && sameElements(f, t) {
			return nil, nil // the common case of a full Diff: sorting no IDs
		}
		ids = unionElems(f, t)
	} else {
		ids = slices.Sorted(maps.Keys(d.scope.Elements[n]))
	}
	if len(removed) > 0 && d.scope != nil && !d.scope.Sets[n] {
		ids = union(d.scope.Elements[n], removed)
	}
	for _, id := range ids {
		var fe, te Element
		var inF, inT bool
		if f != nil && !removed[id] {
			fe, inF = f.Elements.Get(id)
		}
		te, inT = t.Elements.Get(id)
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
	return del, add
}

// rules edits the rules of the chains whose rules changed: rule by rule
// where that is short (ruleEdits), else by replacing them all. Chains flushed
// above get their rules back even when the scope does not name them.
func (d *differ) rules() {
	ruleChains := d.chainNames
	if d.scope != nil && len(d.flushed) > 0 {
		inScope := make(map[string]bool, len(d.chainNames))
		for _, n := range d.chainNames {
			inScope[n] = true
		}
		ruleChains = union(inScope, d.flushed)
	}
	for _, n := range ruleChains {
		t := d.to.Chains[n]
		if t == nil {
			continue
		}
		f := d.from.Chains[n]
		if f != nil && !d.flushed[n] {
			if del, ins, ok := ruleEdits(f.Rules, t.Rules); ok {
				d.editRules(n, f.Rules, t.Rules, del, ins)
				continue
			}
		}
		if f == nil || d.flushed[n] || !sameRules(f.Rules, t.Rules) {
			if (f == nil || d.flushed[n]) && len(t.Rules) == 0 {
				continue
			}
			d.tx.ReplaceRules(n, t.Rules)
		}
	}
}

// editRules deletes the rules del of from (the last first, so that each
// position is still that of from), then inserts the rules ins of to (the
// first first, each at its final position).
func (d *differ) editRules(n string, from, to []Rule, del, ins []int) {
	for i := len(del) - 1; i >= 0; i-- {
		d.tx.DeleteRule(n, del[i], &from[del[i]])
	}
	for _, j := range ins {
		d.tx.InsertRule(n, j, to[j])
	}
}

// deleteUnwanted deletes what is no longer wanted: it flushes all doomed
// chains first, since they may jump to each other.
func (d *differ) deleteUnwanted() {
	var doomed []string
	for _, n := range d.chainNames {
		if d.from.Chains[n] != nil && d.to.Chains[n] == nil {
			doomed = append(doomed, n)
		}
	}
	for _, n := range doomed {
		if len(d.from.Chains[n].Rules) > 0 && !d.flushed[n] {
			d.tx.ReplaceRules(n, nil)
		}
	}
	// Sets before chains: deleting a verdict map releases the chains its
	// elements point at, which may be doomed too. No rule uses a doomed set any
	// more: the chains that did were flushed or rewritten above.
	for _, n := range d.setNames {
		if d.from.Sets[n] != nil && d.to.Sets[n] == nil {
			d.tx.DeleteSet(n)
		}
	}
	// No rule names a doomed object any more, for the same reason.
	for _, n := range d.objectNames {
		if f := d.from.Objects[n]; f != nil && d.to.Objects[n] == nil {
			d.tx.Ops = append(d.tx.Ops, deleteObjectOp(f))
		}
	}
	for _, n := range doomed {
		d.tx.DeleteChain(n)
	}
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
	seen := map[string]struct{}{}
	for _, s := range []*Set{f, t} {
		if s != nil {
			for id := range s.Elements.IDs() {
				seen[id] = struct{}{}
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// elementsByID returns the elements of t in the order of their IDs.
func elementsByID(t *Set) []Element {
	type byID struct {
		id string
		e  Element
	}
	all := make([]byID, 0, t.Elements.Len())
	for id, e := range t.Elements.All() {
		all = append(all, byID{id, e})
	}
	slices.SortFunc(all, func(a, b byID) int { return strings.Compare(a.id, b.id) })
	out := make([]Element, len(all))
	for i, x := range all {
		out[i] = x.e
	}
	return out
}

// sameElements reports whether sets f and t hold elements of the same IDs
// with the same verdicts (f nil: no).
func sameElements(f, t *Set) bool {
	return f != nil && t.Elements.Equal(f.Elements)
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
		if !SameRule(a[i], b[i]) {
			return false
		}
	}
	return true
}

// SameRule reports whether a and b program the same thing: whether their
// RuleKeys are equal, without writing them out (equal expressions are
// compared directly; only those that differ so are printed, since a nil and
// an empty list print alike).
func SameRule(a, b Rule) bool {
	if a.Comment != b.Comment || len(a.Exprs) != len(b.Exprs) {
		return false
	}
	for i, x := range a.Exprs {
		if !sameExpr(x, b.Exprs[i]) {
			return false
		}
	}
	return true
}

func sameExpr(x, y Expr) bool {
	// The kinds with slices first, compared field by field: reflect's
	// DeepEqual was most of diffing a table of 20,000 unchanged rules. A
	// nil and an empty slice are equal, as below.
	switch a := x.(type) {
	case Cmp:
		if b, ok := y.(Cmp); ok && a.Field == b.Field && a.Neq == b.Neq && bytes.Equal(a.Value, b.Value) {
			return true
		}
	case Range:
		if b, ok := y.(Range); ok && a.Field == b.Field && bytes.Equal(a.From, b.From) && bytes.Equal(a.To, b.To) {
			return true
		}
	case Lookup:
		if b, ok := y.(Lookup); ok && a.Set == b.Set && a.Neq == b.Neq && slices.Equal(a.Fields, b.Fields) &&
			(a.Tag == nil) == (b.Tag == nil) && bytes.Equal(a.Tag, b.Tag) {
			return true
		}
	case VerdictMapLookup:
		if b, ok := y.(VerdictMapLookup); ok && a.Map == b.Map && slices.Equal(a.Fields, b.Fields) {
			return true
		}
	}
	tx := reflect.TypeOf(x)
	if tx != reflect.TypeOf(y) {
		return false
	}
	if _, ok := x.(Counter); ok {
		return true // a counter's values are left out
	}
	if tx != nil && tx.Comparable() && x == y || reflect.DeepEqual(x, y) {
		return true
	}
	return fmt.Sprintf("%v", x) == fmt.Sprintf("%v", y)
}

// RuleKey is a canonical text of a rule's expressions and comment, equal for
// rules that program the same thing: a counter's values are left out.
func RuleKey(r Rule) string {
	var b strings.Builder
	for _, e := range r.Exprs {
		if _, ok := e.(Counter); ok {
			e = Counter{}
		}
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
func (s *State) Clone() *State { return s.clone(true) }

// CloneSharingElements is Clone except that each set of the copy shares its
// element map with the set of s: no element is copied, however large the
// table. Neither state may then change a set's element map in place while
// the other holds it: the owner of s copies a set (Set.WithOwnElements) before
// it first adds or deletes an element of it, and the holder of the copy
// only changes sets (State.Apply) after their owner has done so.
func (s *State) CloneSharingElements() *State { return s.clone(false) }

// WithOwnElements returns a copy of s with an element map of its own (the
// elements themselves are shared: they are never changed in place).
// maps.Clone copies the map's table as it is, without hashing and inserting
// each element again.
func (s *Set) WithOwnElements() *Set {
	cs := *s
	cs.Elements = s.Elements.Clone()
	if cs.Elements.st == nil {
		cs.Elements = NewElements(&cs, 0)
	}
	return &cs
}

func (s *State) clone(elements bool) *State {
	out := &State{Chains: make(map[string]*Chain, len(s.Chains)), Sets: make(map[string]*Set, len(s.Sets)),
		Objects: make(map[string]*Object, len(s.Objects))}
	for n, c := range s.Chains {
		cc := *c
		cc.Rules = slices.Clone(c.Rules)
		out.Chains[n] = &cc
	}
	for n, set := range s.Sets {
		if elements || set.Elements.st == nil {
			out.Sets[n] = set.WithOwnElements()
			continue
		}
		cs := *set
		out.Sets[n] = &cs
	}
	for n, o := range s.Objects {
		out.Objects[n] = cloneObject(o)
	}
	return out
}
