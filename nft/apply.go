package nft

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/google/btree"
)

// Apply applies tx to s with the semantics documented on OpKind, the kernel's,
// including the checks the kernel makes on interval sets: a range must not end
// before it starts (ErrInvalid) and must not overlap another element of the
// set, within the batch or with what the set holds (ErrExists, as the kernel's
// EEXIST); adding an identical element again is fine, and adjacent ranges are
// too. A failing operation is reported as an *OpError wrapping one of the
// sentinel errors.
//
// Apply is atomic, as a kernel batch is: on error s is left as it was. It
// changes s in place and undoes what it did on failure, so a caller that keeps
// a large State (Fake, an engine's record of what the kernel holds) pays for
// the size of tx, not of s.
//
// Like the kernel, which stores a range whose ends are equal as a single
// value, it stores such an element without KeyEnd, so that what Fake and
// Kernel read back agree (and an engine that emits the other form sees a
// reconcile that never converges in its unit tests, as it would against the
// kernel).
//
// s keeps the rules and values of tx (never mutated in place), not its
// chains, sets or slices of rules.
func (s *State) Apply(tx *Transaction) error {
	var undo journal
	for i, op := range tx.opsOrNil() {
		if op.Kind == OpAddElements || op.Kind == OpDeleteElements {
			op.Elements = canonicalElements(op.Elements)
		}
		if err := s.applyOp(op, &undo); err != nil {
			undo.revert(s)
			return &OpError{Index: i, Op: op, Err: err}
		}
	}
	return nil
}

// jumpedTo reports whether a rule or a verdict-map element jumps or goes to
// chain name. The first call counts every reference (State.jumps); the
// operations keep the count, so that a batch deleting many chains, or many
// batches, do not walk the whole table for each.
func (s *State) jumpedTo(name string) bool {
	if s.jumps == nil {
		s.jumps = map[string]int{}
		for _, c := range s.Chains {
			s.countJumps(c.Rules, +1)
		}
		for _, set := range s.Sets {
			if !set.VerdictMap {
				continue // no element jumps (and a packed set makes each)
			}
			for e := range set.Elements.Values() {
				s.countElementJump(set, e, +1)
			}
		}
	}
	return s.jumps[name] > 0
}

// countJumps adds delta per jump or goto of rules to the count, if kept.
func (s *State) countJumps(rules []Rule, delta int) {
	if s.jumps == nil {
		return
	}
	for _, r := range rules {
		for _, e := range r.Exprs {
			if v, ok := e.(Verdict); ok && v.Chain != "" {
				s.addJumps(v.Chain, delta)
			}
		}
	}
}

// countElementJump adds delta to the count if e is an element of a verdict
// map that jumps or goes to a chain and the count is kept.
func (s *State) countElementJump(set *Set, e Element, delta int) {
	if s.jumps != nil && set.VerdictMap && e.Verdict != nil && e.Verdict.Chain != "" {
		s.addJumps(e.Verdict.Chain, delta)
	}
}

func (s *State) addJumps(chain string, delta int) {
	if s.jumps[chain] += delta; s.jumps[chain] <= 0 {
		delete(s.jumps, chain)
	}
}

// journal records how to undo the changes Apply made, in order.
type journal []undoStep

// undoStep undoes one change, of the kind of operation that made it: the
// creation of the chain or set name, a chain's previous rules (rules of
// chain), a deleted chain or set, or the elements added to or deleted from set
// (elems), or one rule inserted into or deleted
// from chain at position (rules holds a deleted rule).
type undoStep struct {
	kind     OpKind
	name     string
	chain    *Chain
	position int
	rules    []Rule
	set      *Set
	object   *Object
	elems    []Element
}

// revert undoes every recorded change, the last first.
func (j journal) revert(s *State) {
	s.jumps, s.ranges, s.objectRefs = nil, nil, nil // counted and ordered again when needed
	for i := len(j) - 1; i >= 0; i-- {
		u := j[i]
		switch u.kind {
		case OpAddChain:
			delete(s.Chains, u.name)
		case OpReplaceRules:
			u.chain.Rules = u.rules
		case OpInsertRule:
			u.chain.Rules = slices.Delete(u.chain.Rules, u.position, u.position+1)
		case OpDeleteRule:
			u.chain.Rules = slices.Insert(u.chain.Rules, u.position, u.rules[0])
		case OpDeleteChain:
			s.Chains[u.name] = u.chain
		case OpAddSet:
			delete(s.Sets, u.name)
		case OpDeleteSet:
			s.Sets[u.name] = u.set
		case OpAddObject:
			delete(s.Objects, u.name)
		case OpDeleteObject:
			s.Objects[u.name] = u.object
		case OpAddElements:
			for _, e := range u.elems {
				u.set.Elements.Delete(e)
			}
		case OpDeleteElements:
			for _, e := range u.elems {
				u.set.Elements.Put(e)
			}
		}
	}
}

func (s *State) applyOp(op Op, undo *journal) error {
	switch op.Kind {
	case OpAddChain, OpReplaceRules, OpDeleteChain:
		return s.applyChainOp(op, undo)
	case OpInsertRule, OpDeleteRule:
		return s.applyRuleOp(op, undo)
	case OpAddSet, OpDeleteSet:
		return s.applySetOp(op, undo)
	case OpAddElements:
		return s.addElements(op, undo)
	case OpDeleteElements:
		return s.deleteElements(op, undo)
	case OpAddObject, OpDeleteObject:
		return s.applyObjectOp(op, undo)
	}
	return fmt.Errorf("unknown operation %d: %w", op.Kind, ErrInvalid)
}

// applyChainOp applies AddChain, ReplaceRules or DeleteChain.
func (s *State) applyChainOp(op Op, undo *journal) error {
	switch op.Kind {
	case OpAddChain:
		if op.Chain == nil || op.Chain.Name == "" {
			return fmt.Errorf("chain without a name: %w", ErrInvalid)
		}
		if c := s.Chains[op.Name]; c != nil {
			if !sameBase(c.Base, op.Chain.Base) {
				return fmt.Errorf("chain %q: %w", op.Name, ErrExists)
			}
			return nil
		}
		c := *op.Chain
		c.Rules = nil
		s.Chains[op.Name] = &c
		*undo = append(*undo, undoStep{kind: OpAddChain, name: op.Name})
	case OpReplaceRules:
		c := s.Chains[op.Name]
		if c == nil {
			return fmt.Errorf("chain %q: %w", op.Name, ErrNotFound)
		}
		if op.Chain == nil {
			return fmt.Errorf("chain %q: no rules: %w", op.Name, ErrInvalid)
		}
		for _, r := range op.Chain.Rules {
			if err := validateRule(s, r); err != nil {
				return fmt.Errorf("chain %q: %w", op.Name, err)
			}
		}
		*undo = append(*undo, undoStep{kind: OpReplaceRules, chain: c, rules: c.Rules})
		s.countJumps(c.Rules, -1)
		s.countObjectRefs(c.Rules, -1)
		c.Rules = slices.Clone(op.Chain.Rules)
		s.countJumps(c.Rules, +1)
		s.countObjectRefs(c.Rules, +1)
	case OpDeleteChain:
		c := s.Chains[op.Name]
		if c == nil {
			return fmt.Errorf("chain %q: %w", op.Name, ErrNotFound)
		}
		if len(c.Rules) > 0 || s.jumpedTo(op.Name) {
			return fmt.Errorf("chain %q: %w", op.Name, ErrBusy)
		}
		delete(s.Chains, op.Name)
		*undo = append(*undo, undoStep{kind: OpDeleteChain, name: op.Name, chain: c})
	}
	return nil
}

// applyRuleOp applies InsertRule or DeleteRule. A chain's rule slice belongs
// to the state (ReplaceRules copies it), so it is changed in place.
func (s *State) applyRuleOp(op Op, undo *journal) error {
	c := s.Chains[op.Name]
	if c == nil {
		return fmt.Errorf("chain %q: %w", op.Name, ErrNotFound)
	}
	if op.Kind == OpDeleteRule {
		if op.Position < 0 || op.Position >= len(c.Rules) {
			return fmt.Errorf("chain %q has no rule %d: %w", op.Name, op.Position, ErrNotFound)
		}
		r := c.Rules[op.Position]
		s.countJumps(c.Rules[op.Position:op.Position+1], -1)
		s.countObjectRefs(c.Rules[op.Position:op.Position+1], -1)
		c.Rules = slices.Delete(c.Rules, op.Position, op.Position+1)
		*undo = append(*undo, undoStep{kind: OpDeleteRule, chain: c, position: op.Position, rules: []Rule{r}})
		return nil
	}
	if op.Rule == nil || op.Position < 0 || op.Position > len(c.Rules) {
		return fmt.Errorf("chain %q: no rule, or position %d beyond its %d rules: %w", op.Name, op.Position, len(c.Rules), ErrInvalid)
	}
	if err := validateRule(s, *op.Rule); err != nil {
		return fmt.Errorf("chain %q: %w", op.Name, err)
	}
	c.Rules = slices.Insert(c.Rules, op.Position, *op.Rule)
	s.countJumps(c.Rules[op.Position:op.Position+1], +1)
	s.countObjectRefs(c.Rules[op.Position:op.Position+1], +1)
	*undo = append(*undo, undoStep{kind: OpInsertRule, chain: c, position: op.Position})
	return nil
}

// applySetOp applies AddSet or DeleteSet.
func (s *State) applySetOp(op Op, undo *journal) error {
	switch op.Kind {
	case OpAddSet:
		if op.Set == nil || op.Set.Name == "" || len(op.Set.Key) == 0 {
			return fmt.Errorf("set %q without a name or key: %w", op.Name, ErrInvalid)
		}
		if cur := s.Sets[op.Name]; cur != nil {
			if !sameSetDef(cur, op.Set) {
				return fmt.Errorf("set %q: %w", op.Name, ErrExists)
			}
			return nil
		}
		set := *op.Set
		set.Elements = NewElements(&set, 0)
		s.Sets[op.Name] = &set
		*undo = append(*undo, undoStep{kind: OpAddSet, name: op.Name})
	case OpDeleteSet:
		set := s.Sets[op.Name]
		if set == nil {
			return fmt.Errorf("set %q: %w", op.Name, ErrNotFound)
		}
		if setReferenced(s, op.Name) {
			return fmt.Errorf("set %q: %w", op.Name, ErrBusy)
		}
		if set.VerdictMap && s.jumps != nil {
			for e := range set.Elements.Values() {
				s.countElementJump(set, e, -1)
			}
		}
		delete(s.ranges, set.Name)
		delete(s.Sets, op.Name)
		*undo = append(*undo, undoStep{kind: OpDeleteSet, name: op.Name, set: set})
	}
	return nil
}

// addElements applies AddElements; the journal keeps the elements it added.
func (s *State) addElements(op Op, undo *journal) error {
	set := s.Sets[op.Name]
	if set == nil {
		return fmt.Errorf("set %q: %w", op.Name, ErrNotFound)
	}
	if set.Interval {
		ids := make([]string, len(op.Elements))
		for i, e := range op.Elements {
			ids[i] = ElementID(set, e)
		}
		if err := s.checkIntervals(set, op.Elements, ids); err != nil {
			return err
		}
	}
	u := undoStep{kind: OpAddElements, set: set}
	defer func() { *undo = append(*undo, u) }()
	for _, e := range op.Elements {
		if err := validateElement(s, set, e); err != nil {
			return err
		}
		if cur, ok := set.Elements.Lookup(e); ok {
			if !sameVerdict(cur.Verdict, e.Verdict) {
				return fmt.Errorf("set %q element %s: %w", op.Name, ElementID(set, e), ErrExists)
			}
			continue
		}
		set.Elements.Put(e)
		u.elems = append(u.elems, e)
		s.countElementJump(set, e, +1)
		if r := s.ranges[set.Name]; r != nil {
			r.ReplaceOrInsert(rangeItem{e.Key, e.KeyEnd})
		}
	}
	return nil
}

// deleteElements applies DeleteElements; the journal keeps what it deleted.
func (s *State) deleteElements(op Op, undo *journal) error {
	set := s.Sets[op.Name]
	if set == nil {
		return fmt.Errorf("set %q: %w", op.Name, ErrNotFound)
	}
	u := undoStep{kind: OpDeleteElements, set: set}
	defer func() { *undo = append(*undo, u) }()
	for _, e := range op.Elements {
		cur, ok := set.Elements.Lookup(e)
		if !ok {
			return fmt.Errorf("set %q element %s: %w", op.Name, ElementID(set, e), ErrNotFound)
		}
		set.Elements.Delete(cur)
		u.elems = append(u.elems, cur)
		s.countElementJump(set, cur, -1)
		if r := s.ranges[set.Name]; r != nil {
			r.Delete(rangeItem{cur.Key, cur.KeyEnd})
		}
	}
	return nil
}

func validateElement(s *State, set *Set, e Element) error {
	check := func(vals []Value) error {
		if len(vals) != len(set.Key) {
			return fmt.Errorf("set %q: element has %d key components, want %d: %w", set.Name, len(vals), len(set.Key), ErrInvalid)
		}
		for i, v := range vals {
			if len(v) != set.Key[i].Len() {
				return fmt.Errorf("set %q: key component %d is %d bytes, want %d: %w", set.Name, i, len(v), set.Key[i].Len(), ErrInvalid)
			}
		}
		return nil
	}
	if err := check(e.Key); err != nil {
		return err
	}
	if e.KeyEnd != nil {
		if !set.Interval {
			return fmt.Errorf("set %q: range in a set without intervals: %w", set.Name, ErrInvalid)
		}
		if err := check(e.KeyEnd); err != nil {
			return err
		}
	}
	if set.VerdictMap != (e.Verdict != nil) {
		return fmt.Errorf("set %q: verdict presence does not match the set kind: %w", set.Name, ErrInvalid)
	}
	if e.Verdict != nil && (e.Verdict.Kind == VerdictJump || e.Verdict.Kind == VerdictGoto) {
		if s.Chains[e.Verdict.Chain] == nil {
			return fmt.Errorf("set %q: verdict to missing chain %q: %w", set.Name, e.Verdict.Chain, ErrNotFound)
		}
	}
	return nil
}

func validateRule(s *State, r Rule) error {
	for i, e := range r.Exprs {
		switch e := e.(type) {
		case Lookup:
			// A verdict map may be looked up as a set: the rule then asks
			// whether the key is in it, and ignores the verdict.
			set := s.Sets[e.Set]
			if set == nil {
				return fmt.Errorf("rule uses missing set %q: %w", e.Set, ErrNotFound)
			}
			if !lookupMatchesKey(e, set.Key) {
				return fmt.Errorf("rule lookup fields do not match set %q: %w", e.Set, ErrInvalid)
			}
		case MatchTCPFlags:
			if err := e.validate(); err != nil {
				return err
			}
		case Log:
			if err := e.validate(); err != nil {
				return err
			}
		case CounterRef, LimitRef:
			if err := validateObjectRef(s, e); err != nil {
				return err
			}
		case VerdictMapLookup:
			set := s.Sets[e.Map]
			if set == nil {
				return fmt.Errorf("rule uses missing map %q: %w", e.Map, ErrNotFound)
			}
			if !set.VerdictMap || !fieldsMatchKey(e.Fields, set.Key) {
				return fmt.Errorf("rule vmap fields do not match map %q: %w", e.Map, ErrInvalid)
			}
		case Verdict:
			if i != len(r.Exprs)-1 {
				return fmt.Errorf("verdict is not the last expression: %w", ErrInvalid)
			}
			if (e.Kind == VerdictJump || e.Kind == VerdictGoto) && s.Chains[e.Chain] == nil {
				return fmt.Errorf("rule jumps to missing chain %q: %w", e.Chain, ErrNotFound)
			}
		case Cmp:
			if len(e.Value) != e.Field.Type().Len() {
				return fmt.Errorf("cmp value is %d bytes, field needs %d: %w", len(e.Value), e.Field.Type().Len(), ErrInvalid)
			}
		case Range:
			if len(e.From) != e.Field.Type().Len() || len(e.To) != e.Field.Type().Len() {
				return fmt.Errorf("range bounds have the wrong length: %w", ErrInvalid)
			}
		}
	}
	return nil
}

// lookupMatchesKey reports whether l's key (its fields, then its tag if it
// has one) has the types of key.
func lookupMatchesKey(l Lookup, key []KeyType) bool {
	if l.Tag == nil {
		return fieldsMatchKey(l.Fields, key)
	}
	n := len(key) - 1
	return n >= 0 && key[n] == TypeTag && len(l.Tag) == TypeTag.Len() && fieldsMatchKey(l.Fields, key[:n])
}

func fieldsMatchKey(fields []Field, key []KeyType) bool {
	if len(fields) != len(key) {
		return false
	}
	for i, f := range fields {
		if f.Type() != key[i] {
			return false
		}
	}
	return true
}

func setReferenced(s *State, name string) bool {
	target := map[string]bool{name: true}
	for _, c := range s.Chains {
		if referencesAny(c, target, nil) {
			return true
		}
	}
	return false
}

// span is an element of an interval set as per-component [from, to] bounds.
type span struct {
	id       string
	from, to []Value
}

func spanOf(set *Set, e Element) span {
	return span{id: ElementID(set, e), from: e.Key, to: endOf(e)}
}

// endOf is the last key of an element's range (its key if it is no range).
func endOf(e Element) []Value {
	if e.KeyEnd == nil {
		return e.Key
	}
	return e.KeyEnd
}

func (s *State) checkIntervals(set *Set, add []Element, ids []string) error {
	var fresh []span
	seen := map[string]bool{}
	for i, e := range add {
		if len(e.Key) != len(set.Key) || (e.KeyEnd != nil && len(e.KeyEnd) != len(set.Key)) {
			continue // validateElement reports malformed keys
		}
		sp := span{id: ids[i], from: e.Key, to: endOf(e)}
		for c := range sp.from {
			if bytes.Compare(sp.from[c], sp.to[c]) > 0 {
				return fmt.Errorf("set %q: range %s ends before it starts: %w", set.Name, sp.id, ErrInvalid)
			}
		}
		if set.Elements.Has(sp.id) || seen[sp.id] {
			continue // identical element: a no-op, not an overlap
		}
		seen[sp.id] = true
		fresh = append(fresh, sp)
	}
	if len(fresh) == 0 {
		return nil
	}
	overlap := func(a, b span) error {
		return fmt.Errorf("set %q: element %s overlaps %s: %w", set.Name, a.id, b.id, ErrExists)
	}
	if len(set.Key) == 1 {
		// One component: sorted by start, new elements overlap each other only
		// between neighbours; what the set holds does not overlap itself, so
		// the only element a new one can overlap is the one that starts last
		// at or before its end (State.ranges: no walk over the set).
		slices.SortFunc(fresh, func(a, b span) int { return bytes.Compare(a.from[0], b.from[0]) })
		for i := 1; i < len(fresh); i++ {
			if bytes.Compare(fresh[i-1].to[0], fresh[i].from[0]) >= 0 {
				return overlap(fresh[i], fresh[i-1])
			}
		}
		ordered := s.ordered(set)
		for _, a := range fresh {
			var before *rangeItem
			ordered.DescendLessOrEqual(rangeItem{key: a.to}, func(r rangeItem) bool {
				before = &r
				return false
			})
			if before != nil && bytes.Compare(before.end(), a.from[0]) >= 0 {
				return overlap(a, spanOf(set, Element{Key: before.key, KeyEnd: before.keyEnd}))
			}
		}
		return nil
	}
	// Ranges overlap when every component does. A concatenated set (it
	// holds ports and stays small): compare each new element with all others.
	intersects := func(a, b span) bool {
		for c := range a.from {
			if bytes.Compare(a.to[c], b.from[c]) < 0 || bytes.Compare(b.to[c], a.from[c]) < 0 {
				return false
			}
		}
		return true
	}
	for i, a := range fresh {
		for _, b := range fresh[:i] {
			if intersects(a, b) {
				return overlap(a, b)
			}
		}
		for e := range set.Elements.Values() {
			if b := (span{from: e.Key, to: endOf(e)}); intersects(a, b) {
				return overlap(a, spanOf(set, e))
			}
		}
	}
	return nil
}

// rangeItem is an element of an interval set of one component, as
// State.ranges orders it: by start.
type rangeItem struct {
	key, keyEnd []Value
}

func (r rangeItem) end() Value {
	if r.keyEnd == nil {
		return r.key[0]
	}
	return r.keyEnd[0]
}

func rangeLess(a, b rangeItem) bool { return bytes.Compare(a.key[0], b.key[0]) < 0 }

// ordered returns the elements of set (an interval set of one component)
// ordered by start, ordering them the first time.
func (s *State) ordered(set *Set) *btree.BTreeG[rangeItem] {
	if r := s.ranges[set.Name]; r != nil {
		return r
	}
	if s.ranges == nil {
		s.ranges = map[string]*btree.BTreeG[rangeItem]{}
	}
	r := btree.NewG(16, rangeLess)
	for e := range set.Elements.Values() {
		r.ReplaceOrInsert(rangeItem{e.Key, e.KeyEnd})
	}
	s.ranges[set.Name] = r
	return r
}

// canonicalElements returns elems with single-value ranges (KeyEnd equal to Key
// in every component) turned into plain keys; elems itself is not changed.
func canonicalElements(elems []Element) []Element {
	out := elems
	for i, e := range elems {
		if e.KeyEnd == nil || !slices.EqualFunc(e.Key, e.KeyEnd, func(a, b Value) bool { return bytes.Equal(a, b) }) {
			continue
		}
		if &out[0] == &elems[0] {
			out = slices.Clone(elems)
		}
		out[i].KeyEnd = nil
	}
	return out
}
