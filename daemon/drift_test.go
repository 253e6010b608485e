package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// TestDriftRepairReports: what the change monitor reported is named once, by
// the reconcile that repaired it; a repair found by the periodic check is
// reported too; reconciles that trusted their record say nothing.
func TestDriftRepairReports(t *testing.T) {
	var logs bytes.Buffer
	m := newMetrics(metricSources{})
	requests := make(chan struct{}, 10)
	d := newDriftRepair(slog.New(slog.NewTextHandler(&logs, nil)), m, func() { requests <- struct{}{} })
	d.interval = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.run(ctx)
	flushed := d.hooks(m.hooks(nil)).Flushed

	d.changed(nft.ForeignChange{What: `delete table "nftwarden"`, Process: "nft", PID: 42})
	d.changed(nft.ForeignChange{What: "socket overflow", Lost: true})
	select {
	case <-requests:
	case <-time.After(5 * time.Second):
		t.Fatal("no reconcile requested")
	}
	flushed(enforcer.FlushResult{Full: true}, nil) // a trusted one: says nothing
	flushed(enforcer.FlushResult{Full: true, ReadDataplane: true, Repaired: true, Operations: 12}, nil)
	flushed(enforcer.FlushResult{Full: true, ReadDataplane: true, Repaired: true, Operations: 3}, nil)
	flushed(enforcer.FlushResult{Full: true, ReadDataplane: true}, nil)

	out := logs.String()
	for _, want := range []string{
		`repaired the table after another process changed it" changes="delete table \"nftwarden\" (by nft, pid 42); socket overflow: the table may have changed" operations=12`,
		`repaired the table: the periodic check found it changed" operations=3`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "level="); n != 2 {
		t.Errorf("%d log lines, want 2:\n%s", n, out)
	}
	if got := testutil.ToFloat64(m.driftDetected); got != 2 {
		t.Errorf("drift_detected_total = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.driftRepaired); got != 2 {
		t.Errorf("drift_repaired_total = %v, want 2", got)
	}
}
