package enforcer

import (
	"context"
	"fmt"
	"time"

	"github.com/nftwarden/nftwarden/nft"
)

// Sending the desired state to the dataplane: Flush (the changes since the
// last one), Reconcile (the whole table against what the kernel holds), and
// the record of what the dataplane holds that both keep.

// Flush sends the pending changes as one transaction: the difference between
// what was programmed and the desired state, limited to what changed since the
// last Flush. After a failed Apply (and before the first sync) it reconciles
// instead. On failure the next Flush reconciles.
//
// Changes made while the transaction is in flight are not lost: they are
// recorded for the next Flush (after a failure, the next Flush reconciles).
func (e *Engine) Flush(ctx context.Context) (FlushResult, error) {
	if e.cfg.Dataplane == nil {
		return FlushResult{}, fmt.Errorf("enforcer: flush: %w", ErrNoDataplane)
	}
	e.applyMu.Lock()
	defer e.unlockApply()
	return e.sync(ctx)
}

// sync is Flush; the caller holds applyMu.
func (e *Engine) sync(ctx context.Context) (FlushResult, error) {
	if e.needFull {
		return e.reconcile(ctx)
	}
	return e.flush(ctx, false)
}

// unlockApply releases applyMu and wakes the callers waiting for it
// (flushUpTo).
func (e *Engine) unlockApply() {
	e.applyMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.applyFreed != nil {
		close(e.applyFreed)
		e.applyFreed = nil
	}
}

// flush sends what changed within the recorded scope (full: as a Reconcile
// that trusts the record). The caller holds applyMu.
func (e *Engine) flush(ctx context.Context, full bool) (FlushResult, error) {
	start := time.Now()
	tx, record, restricting, upTo := e.takeDelta()
	res := FlushResult{Full: full, Operations: tx.Size()}
	if tx.Empty() {
		e.landed() // changes that cancelled out
		res.Duration = time.Since(start)
		return e.carried(upTo, res), nil
	}
	if err := e.cfg.Dataplane.Apply(ctx, tx); err != nil {
		e.failed()
		res.Operations = 0
		res.Duration = time.Since(start)
		return res, fmt.Errorf("enforcer: flush (%d operations): %w", tx.Size(), err)
	}
	res.Restricts = restricting
	if err := e.programmed.Apply(record); err != nil {
		// The dataplane took it but our record disagrees: resync next time.
		e.failed()
		e.log.Error("programmed state out of sync; next flush reconciles", "error", err)
	} else {
		e.landed()
	}
	res.Duration = time.Since(start)
	// The dataplane holds the batch even when the record disagrees.
	return e.carried(upTo, res), nil
}

// carried records that the dataplane holds the changes numbered up to upTo
// after a successful batch that res describes (StartPod, PodProgrammed), and
// returns res with the batch's number.
func (e *Engine) carried(upTo uint64, res FlushResult) FlushResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.batches++
	res.Batch = e.batches
	e.flushedChanges = max(e.flushedChanges, upTo)
	e.lastFlush = res
	e.synced = true
	return res
}

// Reconcile converges the dataplane to the full desired state (start-up, timer,
// after errors). Changes made while it runs are recorded for the next Flush.
func (e *Engine) Reconcile(ctx context.Context) (FlushResult, error) {
	if e.cfg.Dataplane == nil {
		return FlushResult{}, fmt.Errorf("enforcer: reconcile: %w", ErrNoDataplane)
	}
	e.applyMu.Lock()
	defer e.unlockApply()
	return e.reconcile(ctx)
}

// reconcile is Reconcile; the caller holds applyMu.
func (e *Engine) reconcile(ctx context.Context) (FlushResult, error) {
	if te, ok := e.cfg.Dataplane.(nft.TamperEvident); ok && !e.needFull && te.Untouched() {
		// Nobody else changed the table since the dataplane last read it
		// (its change monitor would have said so), and every flush since
		// succeeded: the table holds exactly the engine's record, so a
		// Reconcile is a Flush. The dataplane reads the kernel again at
		// least every nft.UntouchedMaxAge, which also checks the record.
		return e.flush(ctx, true)
	}
	start := time.Now()
	expected := e.needFull
	want, upTo := e.takeDesired()
	tx, err := e.cfg.Dataplane.Reconcile(ctx, want)
	res := FlushResult{Full: true, ReadDataplane: true, Operations: tx.Size(), Duration: time.Since(start)}
	if err != nil {
		e.failed()
		return res, fmt.Errorf("enforcer: reconcile: %w", err)
	}
	res.Restricts = restricts(tx, want)
	res.Repaired = !expected && !tx.Empty()
	e.programmed = want
	e.needFull = false
	return e.carried(upTo, res), nil
}

// The three helpers below are the only places where a sync touches the
// compiler, under mu: what a sync sends is computed from the desired state
// and the scope of what changed, and the compiler records the changes made
// while the dataplane works in a new scope. The transaction and the state
// they return share rules and values with the desired state, which the
// compiler never changes in place (it replaces chains and elements), so they
// are read safely without mu.

// takeDelta returns the difference between the record and the desired state
// within the recorded scope, what of it the record's Apply does (the
// journaled sets' changes land instead: journal.go), whether it may deny
// connections allowed before, and the number of the last change of a local
// pod it carries; it starts a new scope.
func (e *Engine) takeDelta() (tx, record *nft.Transaction, restricting bool, upTo uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m.commit()
	e.c.settle()
	scope := e.c.w.takeScope()
	e.c.w.withOverlays(func() { tx = nft.Diff(e.programmed, e.c.w.desired, scope) })
	e.c.w.freeze()
	record = e.c.w.recordable(tx)
	e.unshare(record)
	return tx, record, restricts(tx, e.c.w.desired), e.changes
}

// landed lands the journaled sets' changes a Flush sent in the maps the
// record shares with the desired state. The caller holds applyMu.
func (e *Engine) landed() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.c.w.land()
}

// unshare gives each set of the record whose elements tx changes a map of
// its own if the desired state may still share it (writer.snapshot): Apply
// changes them in place. The compiler has copied every set it changed but
// the journaled ones, which tx (recordable) leaves out, so this copies only
// for a Diff that deletes and adds back elements of a set nobody changed (a
// verdict map pointing at a recreated base chain). The caller holds mu and
// applyMu.
func (e *Engine) unshare(tx *nft.Transaction) {
	var copied map[string]bool
	for _, op := range tx.Ops {
		if op.Kind != nft.OpAddElements && op.Kind != nft.OpDeleteElements || copied[op.Name] {
			continue
		}
		if _, ok := e.c.w.owned[op.Name]; ok {
			continue
		}
		if s := e.programmed.Sets[op.Name]; s != nil {
			e.programmed.Sets[op.Name] = s.WithOwnElements()
		}
		if copied == nil {
			copied = map[string]bool{}
		}
		copied[op.Name] = true
	}
}

// takeDesired returns a copy of the whole desired state for a reconcile, and
// starts recording changes in a new scope: what changes while the reconcile
// runs is the next Flush's. upTo is the number of the last change of a local
// pod it carries. The copy shares the sets' elements with the desired state
// until the compiler changes a set (writer.snapshot); it becomes the record
// of what the dataplane holds, which Apply changes only in sets the
// compiler changed (those a Flush sends), so never a shared one.
func (e *Engine) takeDesired() (desired *nft.State, upTo uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m.commit()
	e.c.settle()
	e.c.w.takeScope()
	e.c.w.untracked = false
	return e.c.w.snapshot(), e.changes
}

// failed makes the next Flush a full reconcile; until then the compiler
// need not record what it touches. The caller holds applyMu.
func (e *Engine) failed() {
	e.needFull = true
	e.mu.Lock()
	defer e.mu.Unlock()
	e.c.w.untracked = true
	e.c.w.takeScope()
}
