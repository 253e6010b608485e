package nft

import (
	"context"
	"fmt"
	"slices"
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
// Fake keeps the Dataplane's concurrency contract with one mutex, held for
// each call's work in memory; BlockApply makes Apply and Reconcile wait
// without it, so a test can watch a caller while a batch is in flight.
type Fake struct {
	table string

	mu      sync.Mutex
	blocked *applyGate // nil: Apply and Reconcile do not wait
	state   *State     // nil while the table does not exist
	history []*Transaction
	ops     int
	failErr error
	// untouched: see Untouched.
	untouched bool
}

var (
	_ Dataplane     = (*Fake)(nil)
	_ TamperEvident = (*Fake)(nil)
	_ CounterReader = (*Fake)(nil)
)

// NewFake returns a Fake for table name. The table does not exist until the first
// Apply or Reconcile.
func NewFake(table string) *Fake {
	return &Fake{table: table}
}

// Table is the name of the table the Fake programs.
func (f *Fake) Table() string { return f.table }

// Apply applies tx atomically with State.Apply: when an operation fails the
// table is left as it was. A failing operation is reported as
// an *OpError wrapping one of the sentinel errors. A missing table is created, as
// the kernel batch does.
func (f *Fake) Apply(ctx context.Context, tx *Transaction) error {
	if err := f.wait(ctx); err != nil {
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
	st := f.state
	if st == nil {
		st = NewState()
	}
	if err := st.Apply(tx); err != nil {
		return fmt.Errorf("apply to table %q: %w", f.table, err)
	}
	f.state = st
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
	if err := f.wait(ctx); err != nil {
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

// Counters implements CounterReader: the values of the named counters, which
// Trace moves. Like the Kernel's it is no full read: Untouched stays as it
// is.
func (f *Fake) Counters(ctx context.Context) (map[string]CounterObject, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read counters of table %q: %w", f.table, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == nil {
		return map[string]CounterObject{}, nil
	}
	return f.state.counterValues(), nil
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

// BlockApply makes Apply and Reconcile wait, before they touch the table,
// until release is called or their context ends (they then fail as a
// cancelled batch does). entered is closed when the first call starts to
// wait, so that a test knows its caller is inside the dataplane. The other
// methods do not wait. release may be called more than once; a later
// BlockApply blocks again.
func (f *Fake) BlockApply() (entered <-chan struct{}, release func()) {
	g := &applyGate{entered: make(chan struct{}), open: make(chan struct{})}
	f.mu.Lock()
	f.blocked = g
	f.mu.Unlock()
	var once sync.Once
	return g.entered, func() {
		once.Do(func() {
			f.mu.Lock()
			if f.blocked == g {
				f.blocked = nil
			}
			f.mu.Unlock()
			close(g.open)
		})
	}
}

// applyGate holds Apply and Reconcile (BlockApply).
type applyGate struct {
	entered  chan struct{}
	open     chan struct{}
	announce sync.Once
}

// wait returns when no BlockApply holds Apply and Reconcile, or with the
// context's error.
func (f *Fake) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	g := f.blocked
	f.mu.Unlock()
	if g == nil {
		return nil
	}
	g.announce.Do(func() { close(g.entered) })
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
