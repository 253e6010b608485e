package daemon

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/podwatch"
)

// changeWatcher is what the daemon needs of a dataplane that reports changes
// made to its table by others (nft.Kernel).
type changeWatcher interface {
	WatchChanges(ctx context.Context, fn func(nft.ForeignChange)) error
}

// Pacing of drift repairs: the first foreign change is repaired at once;
// while changes keep coming, the next repair waits at least
// driftRepairInterval and at least as long as the last full read took, so
// that another program fighting over the table (a firewall manager that
// flushes the ruleset every second) cannot keep the daemon reading the kernel
// more than half of the time.
const driftRepairInterval = 200 * time.Millisecond

// maxDriftCauses bounds what one repair's log line lists.
const maxDriftCauses = 5

// driftRepair turns the kernel's reports of foreign changes into full
// reconciles, and reports each repair once: a log line naming what was
// changed and by which process, and nftwarden_drift_repaired_total.
//
// Without a change monitor (or when it lost events) drift is found by the
// periodic reconcile (--resync-period), which then reads the kernel; that
// repair is logged and counted the same way.
type driftRepair struct {
	log      *slog.Logger
	m        *metrics
	request  func() // podwatch.Watcher.RequestReconcile
	interval time.Duration

	mu       sync.Mutex
	causes   []string
	more     int           // causes beyond maxDriftCauses
	lastRead time.Duration // how long the last full read took
	wanted   chan struct{}
}

func newDriftRepair(log *slog.Logger, m *metrics, request func()) *driftRepair {
	return &driftRepair{log: log, m: m, request: request, interval: driftRepairInterval, wanted: make(chan struct{}, 1)}
}

// changed is the WatchChanges callback.
func (d *driftRepair) changed(c nft.ForeignChange) {
	d.m.driftDetected.Inc()
	d.mu.Lock()
	if len(d.causes) < maxDriftCauses {
		d.causes = append(d.causes, c.String())
	} else {
		d.more++
	}
	d.mu.Unlock()
	select {
	case d.wanted <- struct{}{}:
	default:
	}
}

// run asks for a reconcile per wanted repair, paced, until ctx ends.
func (d *driftRepair) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wanted:
		}
		d.request()
		d.mu.Lock()
		pause := max(d.interval, d.lastRead)
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// takeCauses returns and clears what was reported since the last reconcile.
func (d *driftRepair) takeCauses() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := strings.Join(d.causes, "; ")
	if d.more > 0 {
		s += "; and more"
	}
	d.causes, d.more = nil, 0
	return s
}

// hooks returns h with Flushed also reporting repairs.
func (d *driftRepair) hooks(h podwatch.Hooks) podwatch.Hooks {
	flushed := h.Flushed
	h.Flushed = func(res enforcer.FlushResult, err error) {
		if flushed != nil {
			flushed(res, err)
		}
		if err != nil || !res.Full || !res.ReadDataplane {
			return
		}
		d.mu.Lock()
		d.lastRead = res.Duration
		d.mu.Unlock()
		causes := d.takeCauses()
		switch {
		case res.Repaired && causes != "":
			d.m.driftRepaired.Inc()
			d.log.Warn("repaired the table after another process changed it", "changes", causes,
				"operations", res.Operations, "duration", res.Duration)
		case res.Repaired:
			d.m.driftRepaired.Inc()
			d.log.Warn("repaired the table: the periodic check found it changed", "operations", res.Operations,
				"duration", res.Duration)
		case causes != "":
			d.log.Info("another process changed the table; nothing needed repair", "changes", causes)
		}
	}
	return h
}
