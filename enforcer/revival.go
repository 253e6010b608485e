package enforcer

import (
	"sync"
	"time"

	"github.com/nftwarden/nftwarden/nft"
)

// Follow-up sweeps for UDP flows that a reply in flight may revive.
//
// Deleting the entry of a revoked UDP flow C:cp -> S:sp does not stop a
// datagram that S sent just before: it reaches the node after the delete,
// is new to conntrack, and creates the entry S:sp -> C:cp, which policy
// judges as S's own new flow and mostly allows (S's egress, C's ingress).
// C's next datagrams are then its replies, and the revoked flow goes on. UDP
// has no flags that tell such a reply from a new flow, so the program cannot
// drop it as it drops TCP segments picked up mid-stream; instead the sweeps
// that follow a revocation delete any entry with the exact reversed tuple. A
// flow that starts there within a second of the delete is the revoked one
// revived, or S sending to the very port pair on its own, which, once the
// checks are over, is a flow policy allows.

// revivalChecks are the times after a UDP flow's delete when a sweep must
// look for its reversal: 100 ms catches the replies in flight at the delete
// (an answer takes microseconds to milliseconds), 1 s the slow ones.
var revivalChecks = []time.Duration{100 * time.Millisecond, time.Second}

// maxRevivals bounds how often one flow's reversal is deleted. A revival
// that a sweep deletes is watched anew, since the datagrams it let through
// may have an answer in flight in turn. A client that asks again the moment
// an answer arrives has one in flight about half of the time, so a delete
// revives its flow once more with an even chance; twenty in a row happen
// about once in a million. A flow revived that often is more likely S
// sending to C's port by itself, which policy allows.
const maxRevivals = 20

// revivalWatch remembers the UDP flows that sweeps deleted recently, keyed
// by their reversal (the flow a revival shows in a dump). It has its own
// lock: sweeps read it without the engine lock.
type revivalWatch struct {
	mu    sync.Mutex
	flows map[nft.Flow]*revival
}

type revival struct {
	deleted  time.Time // when the flow, or its last revival, was deleted
	checked  int       // revivalChecks done since
	revivals int
}

// reversed is the flow a reply from f's destination creates (Local is not
// part of a key: revoked flows are never local).
func reversed(f nft.Flow) nft.Flow {
	return nft.Flow{Protocol: f.Protocol, Src: f.Dst, SrcPort: f.DstPort, Dst: f.Src, DstPort: f.SrcPort}
}

// watched returns the reversals to delete, for a sweep to read without the
// lock.
func (w *revivalWatch) watched() map[nft.Flow]struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[nft.Flow]struct{}, len(w.flows))
	for k := range w.flows {
		out[k] = struct{}{}
	}
	return out
}

// update records a sweep that started at start and ended at now: it deleted
// the entries of the revoked UDP flows and of the revived reversals (keys of
// watched). Each revoked flow and each revival is watched from now on; every
// other flow counts the checks whose time had come when the sweep started,
// and is forgotten after the last. update returns when the next check is
// due, or the zero time when nothing is watched.
func (w *revivalWatch) update(start, now time.Time, revoked, revived []nft.Flow) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flows == nil {
		w.flows = map[nft.Flow]*revival{}
	}
	again := make(map[nft.Flow]bool, len(revived))
	for _, k := range revived {
		again[k] = true
	}
	for k, r := range w.flows {
		if again[k] {
			if r.revivals++; r.revivals > maxRevivals {
				delete(w.flows, k)
				continue
			}
			r.deleted, r.checked = now, 0
			continue
		}
		for r.checked < len(revivalChecks) && !start.Before(r.deleted.Add(revivalChecks[r.checked])) {
			r.checked++
		}
		if r.checked == len(revivalChecks) {
			delete(w.flows, k)
		}
	}
	for _, f := range revoked {
		w.flows[reversed(f)] = &revival{deleted: now}
	}
	var next time.Time
	for _, r := range w.flows {
		if due := r.deleted.Add(revivalChecks[r.checked]); next.IsZero() || due.Before(next) {
			next = due
		}
	}
	return next
}
