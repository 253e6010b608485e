package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/podwatch"
)

// Pacing of conntrack sweeps (--revoke-established).
const (
	// minSweepInterval is the least time from the end of one sweep to the
	// start of the next, so that policy churn cannot keep the revoker
	// sweeping: a change lands in the sweep after it at most this much
	// later.
	minSweepInterval = 200 * time.Millisecond
	// maxSweepBackoff bounds the wait before retrying a failed sweep.
	maxSweepBackoff = time.Minute
)

// revoker runs conntrack sweeps (Engine.RevokeDenied) when a flush may have
// denied connections that were allowed, so that established connections stop
// too. Sweeps run on its own goroutine, never on podwatch's: a request only
// marks a sweep as wanted.
//
// At most one sweep runs at a time; requests made while one runs cause
// exactly one more after it, which sees every change flushed before it
// starts. Between the end of a sweep and the start of the next it waits at
// least minInterval and at least as long as the last sweep took, so on a
// node whose table is large the revoker spends at most half its time
// sweeping however fast policies change. A failed sweep is retried with a
// backoff that doubles up to maxSweepBackoff.
//
// A sweep that revoked UDP flows asks to be followed up (RevokeResult.
// FollowUp: about 100 ms and 1 s later, to delete the flows that answers in
// flight revived): the revoker sweeps again then. A follow-up waits as long
// as the last sweep took (and out any backoff), but not minInterval: it
// comes only after a sweep that revoked something, a bounded number of times
// per revoked flow, and while it waits the revived flow carries traffic.
type revoker struct {
	sweep       func(context.Context) (enforcer.RevokeResult, error)
	minInterval time.Duration
	maxBackoff  time.Duration
	log         *slog.Logger
	m           *metrics
	wanted      chan struct{} // one slot: a pending request
	followUp    chan struct{} // one slot: a follow-up is due
}

func newRevoker(sweep func(context.Context) (enforcer.RevokeResult, error), log *slog.Logger, m *metrics) *revoker {
	return &revoker{sweep: sweep, minInterval: minSweepInterval, maxBackoff: maxSweepBackoff, log: log, m: m,
		wanted: make(chan struct{}, 1), followUp: make(chan struct{}, 1)}
}

// request asks for a sweep and returns at once.
func (r *revoker) request() {
	select {
	case r.wanted <- struct{}{}:
	default: // one is pending already; it will see this change too
	}
}

// hooks returns h with Flushed and Ready also requesting sweeps: after every
// successful flush whose result Restricts, and once the first full reconcile
// has made the daemon ready (a previous daemon may have flushed a change and
// stopped before it swept).
func (r *revoker) hooks(h podwatch.Hooks) podwatch.Hooks {
	flushed, ready := h.Flushed, h.Ready
	h.Flushed = func(res enforcer.FlushResult, err error) {
		if flushed != nil {
			flushed(res, err)
		}
		if err == nil && res.Restricts {
			r.request()
		}
	}
	h.Ready = func() {
		if ready != nil {
			ready()
		}
		r.request()
	}
	return h
}

// followUpDue marks the follow-up the last sweep asked for as due.
func (r *revoker) followUpDue() {
	select {
	case r.followUp <- struct{}{}:
	default:
	}
}

// run sweeps on request until ctx ends.
func (r *revoker) run(ctx context.Context) {
	var (
		ended    time.Time     // end of the last sweep
		gap      time.Duration // wait after it before a requested sweep
		took     time.Duration // wait after it before a follow-up
		failures int
		// followUp fires when the follow-up the last sweep asked for is due.
		followUp = time.AfterFunc(time.Hour, r.followUpDue)
	)
	followUp.Stop()
	defer followUp.Stop()
	for {
		wait := gap
		select {
		case <-ctx.Done():
			return
		case <-r.wanted:
		case <-r.followUp:
			wait = took
		}
		if wait := wait - time.Since(ended); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		// A request made during the wait is served by this sweep: it reads
		// the model as it is now. So is a follow-up that came due.
		for _, c := range []chan struct{}{r.wanted, r.followUp} {
			select {
			case <-c:
			default:
			}
		}
		res, err := r.sweep(ctx)
		ended = time.Now()
		gap, took = max(r.minInterval, res.Duration), res.Duration
		if ctx.Err() != nil {
			return
		}
		// Each sweep says when the next check is due, counting every flow
		// still watched: it replaces what the one before asked for (and this
		// sweep did a check that came due while it ran).
		followUp.Stop()
		select {
		case <-r.followUp:
		default:
		}
		if !res.FollowUp.IsZero() {
			followUp.Reset(time.Until(res.FollowUp))
		}
		r.observe(res, err)
		if err != nil {
			failures++
			gap = max(gap, min(r.minInterval<<min(failures, 20), r.maxBackoff))
			took = gap
			r.request()
			continue
		}
		failures = 0
	}
}

func (r *revoker) observe(res enforcer.RevokeResult, err error) {
	r.m.conntrackRevoked.Add(float64(res.Deleted))
	r.m.conntrackSweepDuration.Observe(res.Duration.Seconds())
	if err != nil {
		r.m.errors.WithLabelValues("conntrack").Inc()
		r.log.Warn("conntrack sweep failed; retrying with backoff", "error", err,
			"deleted", res.Deleted, "examined", res.Examined)
		return
	}
	if res.Deleted > 0 {
		r.log.Info("revoked established connections that policy now denies", "deleted", res.Deleted,
			"revived", res.Revived, "examined", res.Examined, "duration", res.Duration.Round(time.Microsecond))
	}
}
