package nft

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// While any socket listens to NFNLGRP_NFTABLES, the kernel builds a
// notification for every element, rule, chain and set a batch commits: an
// allocation, fill and copy each, about 1 µs per element on the test VM
// (the socket filter only saves the reading). Measured with a monitor
// running and without this (medians of 5 interleaved runs, CPU time):
// programming a whole node of 10,000 policies took 689-720 ms instead of
// 469-510 ms (+36-47%, BenchmarkKernelProgram), 100,000 elements into one
// set 266 ms instead of 152 (BenchmarkKernelElements). With it, 473-506 ms
// and 149 ms: no difference beyond the noise. So a large batch of this Kernel
// is sent with its monitors unsubscribed:
//
//  1. read the ruleset generation (g0), then unsubscribe the monitors;
//  2. send the batch, asking the kernel to echo its NEWGEN notification to
//     the batch socket: it does so only when the batch committed a change,
//     and that tells whether our batch moved the generation (by one) or not;
//  3. subscribe again, then read the generation (g1).
//
// Every commit that changes something moves the generation by one, so if g1
// moved from g0 by more than our batch did, another batch was committed
// between steps 1 and 3. The monitors could not see it, so they report a gap
// (Lost) and Untouched turns false. A batch committed between a generation
// read and an (un)subscription is both seen and counted: a spurious gap,
// which only costs one full read. So is every muted batch on a kernel older
// than the echo without listeners ("netfilter: nf_tables: fix netlink report
// logic in flowtable and genid", 2021).

// muteMinSize is the smallest transaction (Transaction.Size: about one
// notification per element, rule, chain and set) sent muted: the two
// generation reads and the socket options cost about as much as 100
// notifications, and a pod's delta stays watched without a window.
const muteMinSize = 1000

// muted is one batch sent with the monitors unsubscribed.
type muted struct {
	k        *Kernel
	gen      uint32
	monitors []*monitor
	size     int
}

// mute unsubscribes this Kernel's monitors for a batch of tx when that is
// worth it (see above); nil when it did not.
func (k *Kernel) mute(tx *Transaction) *muted {
	size := tx.Size()
	if size < muteMinSize {
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
	u := &muted{k: k, gen: gen, size: size}
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
// committed meanwhile; b is the batch as sent (its echoed generation).
func (u *muted) end(b *pendingBatch) {
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
	if b.committed {
		ours = 1
	}
	var gap string
	switch gen, err := u.k.generation(); {
	case err != nil:
		gap = fmt.Sprintf("cannot tell whether others committed while a batch of %d operations of this Kernel was sent unwatched: %v", u.size, err)
	case gen-u.gen != ours:
		gap = fmt.Sprintf("the ruleset generation moved by %d, this Kernel's batch of %d operations by %d, while the batch was sent unwatched: others committed",
			int32(gen-u.gen), u.size, ours)
	default:
		return
	}
	u.k.tamper.touch()
	for _, m := range u.monitors {
		m.interrupt(gap, nil)
	}
}
