package nft

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// While any socket listens to NFNLGRP_NFTABLES, the kernel builds a
// notification for every element, rule, chain and set a batch commits: one
// allocation, fill and copy each, about 1.4 µs per element on the test VM,
// which made programming a whole node of 10,000 policies 35-50% more costly
// (BenchmarkKernelProgram, watch=on). A socket filter only saves the reading.
// So a large batch of this Kernel is sent with its monitors unsubscribed:
//
//  1. read the ruleset generation (g0), then unsubscribe the monitors;
//  2. send the batch;
//  3. subscribe again, then read the generation (g1).
//
// Every commit that changes something moves the generation by one. Only
// batches that certainly change the table if accepted (they add a rule or
// delete something) are muted, so our own batch moved it by exactly one when
// accepted and not at all when refused; any other move means that another
// batch was committed between steps 1 and 3. The monitors could not see it,
// so they report a gap (Lost) and Untouched turns false. A batch committed
// between the reads and the (un)subscriptions is both seen and counted: a
// spurious gap, which only costs one full read.

// muteMinMessages is the smallest batch sent muted: the two generation reads
// and four socket options cost about as much as notifying 70 elements, and a
// pod's delta stays watched without a window.
const muteMinMessages = 1000

// muted is one batch sent with the monitors unsubscribed.
type muted struct {
	k        *Kernel
	gen      uint32
	monitors []*monitor
	messages int
}

// mute unsubscribes this Kernel's monitors for a batch of tx when that is
// worth it and safe (see above); nil when it did not.
func (k *Kernel) mute(tx *Transaction, messages int) *muted {
	if messages < muteMinMessages || !certainlyChanges(tx) {
		return nil
	}
	running := k.tamper.running()
	if len(running) == 0 {
		return nil
	}
	gen, err := k.generation()
	if err != nil {
		return nil // send it watched
	}
	u := &muted{k: k, gen: gen, messages: messages}
	for _, m := range running {
		// One that cannot leave stays subscribed and sees everything.
		if err := m.conn.LeaveGroup(unix.NFNLGRP_NFTABLES); err == nil {
			u.monitors = append(u.monitors, m)
		}
	}
	if len(u.monitors) == 0 {
		return nil
	}
	return u
}

// end subscribes the monitors again and reports a gap if another batch was
// committed meanwhile. accepted says whether the kernel took our batch.
func (u *muted) end(accepted bool) {
	if u == nil {
		return
	}
	for _, m := range u.monitors {
		if err := m.conn.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
			// A deaf monitor must stop; a stopping one fails here too,
			// harmlessly.
			u.k.tamper.touch()
			m.interrupt("", fmt.Errorf("subscribe again after a batch sent unwatched: %w", err))
		}
	}
	ours := uint32(0)
	if accepted {
		ours = 1
	}
	var gap string
	switch gen, err := u.k.generation(); {
	case err != nil:
		gap = fmt.Sprintf("cannot tell whether others committed while a batch of %d messages of this Kernel was sent unwatched: %v", u.messages, err)
	case gen-u.gen != ours:
		gap = fmt.Sprintf("the ruleset generation moved by %d, not %d, while a batch of %d messages of this Kernel was sent unwatched: others committed",
			int32(gen-u.gen), ours, u.messages)
	default:
		return
	}
	u.k.tamper.touch()
	for _, m := range u.monitors {
		m.interrupt(gap, nil)
	}
}

// certainlyChanges reports whether a batch of tx, if the kernel accepts it,
// changes the table, and so moves the ruleset generation: a rule added is
// always new, a deletion that succeeds always removes something. Adding a
// chain, set or element that exists already is accepted without a change.
func certainlyChanges(tx *Transaction) bool {
	for _, op := range tx.opsOrNil() {
		switch op.Kind {
		case OpReplaceRules:
			if op.Chain != nil && len(op.Chain.Rules) > 0 {
				return true
			}
		case OpDeleteChain, OpDeleteSet:
			return true
		case OpDeleteElements:
			if len(op.Elements) > 0 {
				return true
			}
		}
	}
	return false
}
