package nft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
)

// Fake is a Dataplane that holds the table in memory. It enforces the same
// transaction semantics as the kernel (see OpKind), so an engine that emits a
// transaction the kernel would reject fails its unit tests too; it records what it
// was sent so tests can assert on deltas; and it can trace a packet through the
// programmed ruleset (Trace).
//
// Fake is TamperEvident as if a change monitor always ran: Untouched is true
// after a successful Read or Reconcile until Mutate (an outsider's change),
// MarkTouched (lost events, the age bound) or a failed Apply or Reconcile.
//
// Fake is safe for concurrent use.
type Fake struct {
	table string

	mu      sync.Mutex
	state   *State // nil while the table does not exist
	history []*Transaction
	ops     int
	failErr error
	// untouched: see Untouched.
	untouched bool
}

var (
	_ Dataplane     = (*Fake)(nil)
	_ TamperEvident = (*Fake)(nil)
)

// NewFake returns a Fake for table name. The table does not exist until the first
// Apply or Reconcile.
func NewFake(table string) *Fake {
	return &Fake{table: table}
}

// Table is the name of the table the Fake programs.
func (f *Fake) Table() string { return f.table }

// Apply applies tx atomically: it runs on a copy of the table, which replaces the
// table only when every operation succeeded. A failing operation is reported as
// an *OpError wrapping one of the sentinel errors. A missing table is created, as
// the kernel batch does.
func (f *Fake) Apply(ctx context.Context, tx *Transaction) error {
	if err := ctx.Err(); err != nil {
		f.MarkTouched() // a failed Apply, as the Kernel's
		return fmt.Errorf("apply to table %q: %w", f.table, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.applyLocked(tx)
	if err != nil {
		f.untouched = false
	}
	return err
}

func (f *Fake) applyLocked(tx *Transaction) error {
	if err := f.failErr; err != nil {
		f.failErr = nil
		return fmt.Errorf("apply to table %q: %w", f.table, err)
	}
	if tx == nil {
		tx = &Transaction{}
	}
	next := NewState()
	if f.state != nil {
		next = f.state.Clone()
	}
	if err := applyChecked(next, tx); err != nil {
		return fmt.Errorf("apply to table %q: %w", f.table, err)
	}
	f.state = next
	// Keep our own copy of the op list: the caller may reuse its transaction.
	f.history = append(f.history, &Transaction{Ops: slices.Clone(tx.Ops)})
	f.ops += tx.Size()
	return nil
}

// Reconcile converges the table to desired with the transaction Diff computes
// from what the table holds, applied atomically, and returns that transaction.
// When the table already matches nothing is applied (the returned transaction is
// empty and not recorded), but a missing table is still created.
func (f *Fake) Reconcile(ctx context.Context, desired *State) (*Transaction, error) {
	if err := ctx.Err(); err != nil {
		f.MarkTouched()
		return nil, fmt.Errorf("reconcile table %q: %w", f.table, err)
	}
	if desired == nil {
		f.MarkTouched()
		return nil, fmt.Errorf("reconcile table %q: nil desired state: %w", f.table, ErrInvalid)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// A full read, as the kernel's Reconcile starts with; a failure below
	// undoes it.
	f.untouched = true
	tx := Diff(f.state, desired, nil)
	if tx.Empty() {
		if err := f.failErr; err != nil {
			f.failErr = nil
			f.untouched = false
			return nil, fmt.Errorf("reconcile table %q: %w", f.table, err)
		}
		if f.state == nil {
			f.state = NewState()
		}
		return tx, nil
	}
	if err := f.applyLocked(tx); err != nil {
		f.untouched = false
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return tx, nil
}

// Read returns a copy of what the table holds, or ErrNotFound when the table
// does not exist (before the first Apply or Reconcile, or after Cleanup).
func (f *Fake) Read(ctx context.Context) (*State, error) {
	if err := ctx.Err(); err != nil {
		f.MarkTouched() // a failed read, as the Kernel's
		return nil, fmt.Errorf("read table %q: %w", f.table, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.untouched = true
	if f.state == nil {
		return nil, fmt.Errorf("read table %q: %w", f.table, ErrNotFound)
	}
	return f.state.Clone(), nil
}

// Cleanup deletes the table; a missing table is not an error. The history is
// kept.
func (f *Fake) Cleanup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cleanup table %q: %w", f.table, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = nil
	return nil
}

// Dump renders the table as `nft list table inet <table>` would print it, or ""
// when the table does not exist.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == nil {
		return ""
	}
	return Render(f.table, f.state)
}

// Transactions returns the transactions applied so far, oldest first (failed ones
// and no-op reconciles are not included).
func (f *Fake) Transactions() []*Transaction {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.history)
}

// Operations is the total Size of the transactions applied so far.
func (f *Fake) Operations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops
}

// ResetHistory forgets the recorded transactions and the operation count, so a
// test can assert on what one step sends.
func (f *Fake) ResetHistory() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.history = nil
	f.ops = 0
}

// FailNext makes the next Apply or Reconcile fail with err (wrapped) without
// changing anything, as a kernel batch rejected by netlink would. A nil err
// cancels a pending failure.
func (f *Fake) FailNext(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failErr = err
}

// Mutate changes the table directly, bypassing transactions and history, to
// simulate drift (another process editing the table, a kernel that lost state),
// and makes Untouched false, as the Kernel's change monitor would. The table is
// created when missing. mutate must leave a consistent state: the Fake does not
// validate it.
func (f *Fake) Mutate(mutate func(s *State)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.untouched = false
	if f.state == nil {
		f.state = NewState()
	}
	next := f.state.Clone()
	mutate(next)
	f.state = next
}

// Untouched implements TamperEvident: true after a successful Read or Reconcile
// until Mutate, MarkTouched or a failed Apply or Reconcile.
func (f *Fake) Untouched() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.untouched
}

// MarkTouched makes Untouched false without changing the table, as the Kernel's
// would after lost change notifications, a stopped monitor or UntouchedMaxAge
// without a full read.
func (f *Fake) MarkTouched() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.untouched = false
}

// applyChecked is Transaction.ApplyTo plus the checks the kernel makes on
// interval sets that ApplyTo leaves out: a range must not end before it starts
// (ErrInvalid) and must not overlap another element of the set, within the batch
// or with what the set holds (ErrExists, as the kernel's EEXIST); adding an
// identical element again is fine, and adjacent ranges are too.
//
// Like the kernel, which stores a range whose ends are equal as a single value,
// it stores such an element without KeyEnd, so that what Fake and Kernel read
// back agree (and an engine that emits the other form sees a reconcile that
// never converges in its unit tests, as it would against the kernel).
func applyChecked(s *State, tx *Transaction) error {
	for i, op := range tx.Ops {
		if op.Kind == OpAddElements || op.Kind == OpDeleteElements {
			op.Elements = canonicalElements(op.Elements)
		}
		if op.Kind == OpAddElements {
			if set := s.Sets[op.Name]; set != nil && set.Interval {
				if err := checkIntervals(set, op.Elements); err != nil {
					return &OpError{Index: i, Op: op, Err: err}
				}
			}
		}
		one := Transaction{Ops: []Op{op}}
		if err := one.ApplyTo(s); err != nil {
			var opErr *OpError
			if errors.As(err, &opErr) {
				opErr.Index = i
			}
			return err
		}
	}
	return nil
}

// span is an element of an interval set as per-component [from, to] bounds.
type span struct {
	id       string
	from, to []Value
}

func spanOf(set *Set, e Element) span {
	to := e.KeyEnd
	if to == nil {
		to = e.Key
	}
	return span{id: ElementID(set, e), from: e.Key, to: to}
}

func checkIntervals(set *Set, add []Element) error {
	var fresh []span
	seen := map[string]bool{}
	for _, e := range add {
		if len(e.Key) != len(set.Key) || (e.KeyEnd != nil && len(e.KeyEnd) != len(set.Key)) {
			continue // ApplyTo reports malformed keys
		}
		sp := spanOf(set, e)
		for c := range sp.from {
			if bytes.Compare(sp.from[c], sp.to[c]) > 0 {
				return fmt.Errorf("set %q: range %s ends before it starts: %w", set.Name, sp.id, ErrInvalid)
			}
		}
		if _, ok := set.Elements[sp.id]; ok || seen[sp.id] {
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
	if len(set.Key) == 1 && len(fresh) > 8 {
		// Many new elements in one component: sort everything by start; an
		// overlap is always between neighbours. What the set holds already does
		// not overlap.
		all := slices.Clone(fresh)
		for _, e := range set.Elements {
			all = append(all, spanOf(set, e))
		}
		sort.Slice(all, func(i, j int) bool { return bytes.Compare(all[i].from[0], all[j].from[0]) < 0 })
		for i := 1; i < len(all); i++ {
			if bytes.Compare(all[i-1].to[0], all[i].from[0]) >= 0 {
				return overlap(all[i], all[i-1])
			}
		}
		return nil
	}
	// Ranges overlap when every component does. Few new elements (or a
	// concatenated set, which holds ports and stays small): compare each new
	// element with all others.
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
		for _, e := range set.Elements {
			if b := spanOf(set, e); intersects(a, b) {
				return overlap(a, b)
			}
		}
	}
	return nil
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
