package nft

import (
	"fmt"
	"maps"
	"slices"
)

// This file holds what every consumer of named objects (State.Objects)
// shares: their validation, their sameness, copies, and the count of the
// rules that name each one (the busy check of a deletion).

// ObjectNames returns the names of the named objects sorted.
func (s *State) ObjectNames() []string { return slices.Sorted(maps.Keys(s.Objects)) }

// objectKind is the keyword nft uses for an object: counter or limit ("" for
// an object of a kind nftwarden does not use, which only a read holds).
func objectKind(o *Object) string {
	switch {
	case o.Counter != nil:
		return "counter"
	case o.Limit != nil:
		return "limit"
	}
	return ""
}

// validate checks an object definition as the kernel would take it (and as
// Read would give it back): a name, exactly one kind, and a limit with a
// rate, a burst (the kernel turns a burst of 0 into 5) and a known unit.
func (o *Object) validate() error {
	if o.Name == "" {
		return fmt.Errorf("object without a name: %w", ErrInvalid)
	}
	if (o.Counter == nil) == (o.Limit == nil) {
		return fmt.Errorf("object %q: exactly one of counter and limit must be set: %w", o.Name, ErrInvalid)
	}
	if l := o.Limit; l != nil {
		if l.Rate == 0 || l.Burst == 0 {
			return fmt.Errorf("limit %q: rate and burst must be at least 1: %w", o.Name, ErrInvalid)
		}
		if l.Unit.seconds() == 0 {
			return fmt.Errorf("limit %q: unknown unit %d: %w", o.Name, l.Unit, ErrInvalid)
		}
	}
	return nil
}

// seconds is the length of the unit in seconds, as the kernel takes it
// (NFTA_LIMIT_UNIT); 0 for an unknown unit.
func (u LimitUnit) seconds() uint64 {
	switch u {
	case PerSecond:
		return 1
	case PerMinute:
		return 60
	}
	return 0
}

func (u LimitUnit) String() string {
	switch u {
	case PerSecond:
		return "second"
	case PerMinute:
		return "minute"
	}
	return fmt.Sprintf("LimitUnit(%d)", int(u))
}

// sameObjectDef reports whether two objects have the same definition: the
// same kind and, for limits, the same bucket. Counter values are not part
// of a definition, nor is the comment (as for sets: a comment alone never
// makes an object change).
func sameObjectDef(a, b *Object) bool {
	if (a.Counter == nil) != (b.Counter == nil) || (a.Limit == nil) != (b.Limit == nil) {
		return false
	}
	return a.Limit == nil || *a.Limit == *b.Limit
}

// cloneObject returns a copy of o that shares nothing with it.
func cloneObject(o *Object) *Object {
	c := *o
	if o.Counter != nil {
		v := *o.Counter
		c.Counter = &v
	}
	if o.Limit != nil {
		l := *o.Limit
		c.Limit = &l
	}
	return &c
}

// objectRef returns the name of the object an expression names and whether
// it names a counter (true) or a limit (false); ok is false for expressions
// that name no object.
func objectRef(e Expr) (name string, counter, ok bool) {
	switch e := e.(type) {
	case CounterRef:
		return e.Name, true, true
	case LimitRef:
		return e.Name, false, true
	}
	return "", false, false
}

// objectNamed reports whether a rule names object name. The first call
// counts every reference (State.objectRefs); the operations keep the count,
// as they do State.jumps.
func (s *State) objectNamed(name string) bool {
	if s.objectRefs == nil {
		s.objectRefs = map[string]int{}
		for _, c := range s.Chains {
			s.countObjectRefs(c.Rules, +1)
		}
	}
	return s.objectRefs[name] > 0
}

// countObjectRefs adds delta per object a rule names to the count, if kept.
func (s *State) countObjectRefs(rules []Rule, delta int) {
	if s.objectRefs == nil {
		return
	}
	for _, r := range rules {
		for _, e := range r.Exprs {
			if n, _, ok := objectRef(e); ok {
				if s.objectRefs[n] += delta; s.objectRefs[n] <= 0 {
					delete(s.objectRefs, n)
				}
			}
		}
	}
}

// namesAnyObject reports whether a rule of the state names one of objects;
// a walk over every rule, for the rare changed definition (Diff).
func (s *State) namesAnyObject(objects map[string]bool) bool {
	for _, c := range s.Chains {
		for _, r := range c.Rules {
			for _, e := range r.Exprs {
				if n, _, ok := objectRef(e); ok && objects[n] {
					return true
				}
			}
		}
	}
	return false
}

// applyObjectOp applies AddObject or DeleteObject with the kernel's
// semantics: adding an object with the same definition is a no-op, with
// another one ErrExists; deleting a missing object is ErrNotFound, one that
// a rule names ErrBusy. The state keeps a copy of an added object whose
// counter starts at zero, as a new kernel object does.
func (s *State) applyObjectOp(op Op, undo *journal) error {
	switch op.Kind {
	case OpAddObject:
		if op.Object == nil {
			return fmt.Errorf("object %q without a definition: %w", op.Name, ErrInvalid)
		}
		if err := op.Object.validate(); err != nil {
			return err
		}
		if cur := s.Objects[op.Name]; cur != nil {
			if !sameObjectDef(cur, op.Object) {
				return fmt.Errorf("%s %q exists with another definition (a changed object needs a new name): %w",
					objectKind(op.Object), op.Name, ErrExists)
			}
			return nil
		}
		o := cloneObject(op.Object)
		if s.Objects == nil { // a State built without NewState
			s.Objects = map[string]*Object{}
		}
		if o.Counter != nil {
			*o.Counter = CounterObject{}
		}
		s.Objects[op.Name] = o
		*undo = append(*undo, undoStep{kind: OpAddObject, name: op.Name})
	case OpDeleteObject:
		o := s.Objects[op.Name]
		if o == nil {
			return fmt.Errorf("object %q: %w", op.Name, ErrNotFound)
		}
		if s.objectNamed(op.Name) {
			return fmt.Errorf("%s %q: %w", objectKind(o), op.Name, ErrBusy)
		}
		delete(s.Objects, op.Name)
		*undo = append(*undo, undoStep{kind: OpDeleteObject, name: op.Name, object: o})
	}
	return nil
}

// validateObjectRef checks that the object a rule names exists with the
// kind the rule needs (the kernel looks objects up by name and kind).
func validateObjectRef(s *State, e Expr) error {
	name, counter, _ := objectRef(e)
	o := s.Objects[name]
	if o == nil || (counter && o.Counter == nil) || (!counter && o.Limit == nil) {
		kind := "limit"
		if counter {
			kind = "counter"
		}
		return fmt.Errorf("rule names missing %s %q: %w", kind, name, ErrNotFound)
	}
	return nil
}

// validate checks a log statement as the kernel takes it.
func (l Log) validate() error {
	if len(l.Prefix) > MaxLogPrefix {
		return fmt.Errorf("log prefix of %d bytes, the kernel keeps %d: %w", len(l.Prefix), MaxLogPrefix, ErrInvalid)
	}
	if !l.NFLog && l.Group != 0 {
		return fmt.Errorf("log group %d without NFLog: %w", l.Group, ErrInvalid)
	}
	return nil
}

// counterValues returns the values of the named counters by name.
func (s *State) counterValues() map[string]CounterObject {
	out := map[string]CounterObject{}
	for n, o := range s.Objects {
		if o.Counter != nil {
			out[n] = *o.Counter
		}
	}
	return out
}
