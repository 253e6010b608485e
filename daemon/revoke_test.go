package daemon

// IP plan (daemon test): node-a runs backend/api 198.18.0.20, isolated for
// ingress by backend/allow-web, which admits backend/web (node-b,
// 198.18.1.10) on tcp 8080; the conntrack table of node-a holds one
// connection web -> api:8080.

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/podwatch"
)

// sweepRecorder is a sweep function that records when each sweep started
// and ended, and can hold a sweep until released.
type sweepRecorder struct {
	mu      sync.Mutex
	starts  []time.Time
	ends    []time.Time
	hold    chan struct{} // nil: sweeps return at once
	results []error       // error of sweep i (missing: nil)
	took    time.Duration // reported Duration
	// followUps[i] is the FollowUp sweep i reports, as a delay after its
	// start (missing or 0: none).
	followUps []time.Duration
	started   chan struct{}
}

func newSweepRecorder() *sweepRecorder { return &sweepRecorder{started: make(chan struct{}, 100)} }

func (s *sweepRecorder) sweep(context.Context) (enforcer.RevokeResult, error) {
	s.mu.Lock()
	i := len(s.starts)
	s.starts = append(s.starts, time.Now())
	hold := s.hold
	var err error
	if i < len(s.results) {
		err = s.results[i]
	}
	var followUp time.Time
	if i < len(s.followUps) && s.followUps[i] > 0 {
		followUp = s.starts[i].Add(s.followUps[i])
	}
	s.mu.Unlock()
	s.started <- struct{}{}
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	s.ends = append(s.ends, time.Now())
	s.mu.Unlock()
	return enforcer.RevokeResult{Examined: 10, Deleted: 1, Duration: s.took, FollowUp: followUp}, err
}

func (s *sweepRecorder) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.starts)
}

// waitSweep waits for the next sweep to start.
func (s *sweepRecorder) waitSweep(t *testing.T) {
	t.Helper()
	select {
	case <-s.started:
	case <-time.After(5 * time.Second):
		t.Fatal("no sweep started")
	}
}

// noSweep asserts that no sweep starts within d.
func (s *sweepRecorder) noSweep(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-s.started:
		t.Fatalf("an unrequested sweep started (sweep %d)", s.count())
	case <-time.After(d):
	}
}

// startRevoker runs a revoker over rec until the test ends.
func startRevoker(t *testing.T, rec *sweepRecorder, minInterval time.Duration) (*revoker, *metrics, *syncBuffer) {
	logs := &syncBuffer{}
	m := newMetrics(metricSources{})
	r := newRevoker(rec.sweep, slog.New(slog.NewTextHandler(logs, nil)), m)
	r.minInterval = minInterval
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r, m, logs
}

// Requests during a sweep cause exactly one more sweep after it; requests
// while idle cause one each.
func TestRevokerCoalesces(t *testing.T) {
	rec := newSweepRecorder()
	rec.hold = make(chan struct{})
	r, m, logs := startRevoker(t, rec, time.Millisecond)
	r.request()
	rec.waitSweep(t)
	for range 10 {
		r.request()
	}
	rec.hold <- struct{}{} // end sweep 1
	rec.waitSweep(t)
	rec.hold <- struct{}{} // end sweep 2
	rec.noSweep(t, 100*time.Millisecond)
	if n := rec.count(); n != 2 {
		t.Errorf("%d sweeps, want 2", n)
	}
	r.request()
	rec.waitSweep(t)
	rec.hold <- struct{}{}
	if got := testutil.ToFloat64(m.conntrackRevoked); got < 2 {
		t.Errorf("conntrack_revoked_total %v, want at least 2 (one per finished sweep)", got)
	}
	if n := testutil.CollectAndCount(m.conntrackSweepDuration); n != 1 {
		t.Errorf("sweep duration histogram: %d series", n)
	}
	if !strings.Contains(logs.String(), "revoked established connections that policy now denies") {
		t.Errorf("no log line for a sweep that deleted something:\n%s", logs)
	}
}

// Requests made while the revoker waits out its interval are served by the
// sweep that ends the wait: it reads the model after them.
func TestRevokerWaitCoalesces(t *testing.T) {
	rec := newSweepRecorder()
	r, _, _ := startRevoker(t, rec, 150*time.Millisecond)
	r.request()
	rec.waitSweep(t)
	r.request() // starts the wait
	time.Sleep(20 * time.Millisecond)
	r.request() // during the wait
	r.request()
	rec.waitSweep(t)
	rec.noSweep(t, 300*time.Millisecond)
	if n := rec.count(); n != 2 {
		t.Errorf("%d sweeps, want 2", n)
	}
}

// The next sweep starts at least minInterval, and at least as long as the
// last sweep took, after the end of the last one.
func TestRevokerPaces(t *testing.T) {
	const minInterval = 50 * time.Millisecond
	for _, took := range []time.Duration{0, 120 * time.Millisecond} {
		rec := newSweepRecorder()
		rec.took = took
		r, _, _ := startRevoker(t, rec, minInterval)
		for range 4 {
			r.request()
			rec.waitSweep(t)
		}
		rec.mu.Lock()
		for i := 1; i < len(rec.starts); i++ {
			if gap := rec.starts[i].Sub(rec.ends[i-1]); gap < max(minInterval, took) {
				t.Errorf("sweep took %v: sweep %d started %v after the previous ended, want at least %v",
					took, i, gap, max(minInterval, took))
			}
		}
		rec.mu.Unlock()
	}
}

// A sweep that asks for a follow-up gets it at that time without a
// request, after as long as the last sweep took but without the pause
// (minInterval) that requested sweeps wait; the follow-up's own answer
// replaces the schedule: none, or another.
func TestRevokerFollowsUp(t *testing.T) {
	const minInterval = 400 * time.Millisecond
	for _, tc := range []struct {
		name      string
		followUps []time.Duration
		took      time.Duration
		sweeps    int
	}{
		{"none asked", nil, 0, 1},
		{"one follow-up", []time.Duration{100 * time.Millisecond}, 0, 2},
		{"a follow-up asks for another", []time.Duration{100 * time.Millisecond, 50 * time.Millisecond}, 0, 3},
		{"due before the last sweep's duration has passed again", []time.Duration{time.Millisecond}, 120 * time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newSweepRecorder()
			rec.followUps = tc.followUps
			rec.took = tc.took
			r, _, _ := startRevoker(t, rec, minInterval)
			r.request()
			for range tc.sweeps {
				rec.waitSweep(t)
			}
			rec.noSweep(t, 300*time.Millisecond)
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for i := 1; i < len(rec.starts); i++ {
				due := rec.starts[i-1].Add(tc.followUps[i-1])
				if e := rec.ends[i-1].Add(tc.took); e.After(due) {
					due = e
				}
				if late := rec.starts[i].Sub(due); late < 0 || late > minInterval/2 {
					t.Errorf("sweep %d started %v after its follow-up was due, want soon after (and not before)", i, late)
				}
			}
		})
	}
}

// A change requested while a follow-up is pending waits out the pause as
// before; its sweep checks what the follow-up would, and its answer (here:
// nothing watched) replaces the schedule.
func TestRevokerFollowUpAndRequest(t *testing.T) {
	const minInterval = 100 * time.Millisecond
	rec := newSweepRecorder()
	rec.followUps = []time.Duration{250 * time.Millisecond}
	r, _, _ := startRevoker(t, rec, minInterval)
	r.request()
	rec.waitSweep(t)
	r.request()
	rec.waitSweep(t) // the requested sweep, after the pause
	rec.noSweep(t, 50*time.Millisecond)
	rec.mu.Lock()
	gap := rec.starts[1].Sub(rec.ends[0])
	rec.mu.Unlock()
	if gap < minInterval {
		t.Errorf("the requested sweep started %v after the first ended, want at least %v", gap, minInterval)
	}
	// The second sweep asked for nothing: its answer cancelled the
	// follow-up the first asked for.
	rec.noSweep(t, 400*time.Millisecond)
}

// A failed sweep is counted, logged, and retried with a growing wait until
// one succeeds; then the revoker waits for requests again.
func TestRevokerRetriesFailures(t *testing.T) {
	const minInterval = 20 * time.Millisecond
	rec := newSweepRecorder()
	failure := errors.New("netlink: no buffer space")
	rec.results = []error{failure, failure, failure}
	r, m, logs := startRevoker(t, rec, minInterval)
	r.request()
	for range 4 {
		rec.waitSweep(t)
	}
	rec.noSweep(t, 200*time.Millisecond)
	if got := testutil.ToFloat64(m.errors.WithLabelValues("conntrack")); got != 3 {
		t.Errorf(`errors_total{kind="conntrack"} = %v, want 3`, got)
	}
	if strings.Count(logs.String(), "conntrack sweep failed") != 3 {
		t.Errorf("want 3 warnings:\n%s", logs)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := 1; i < 4; i++ {
		if gap, want := rec.starts[i].Sub(rec.ends[i-1]), minInterval<<i; gap < want {
			t.Errorf("retry %d after %v, want at least %v", i, gap, want)
		}
	}
}

// Flushes request a sweep only when their result Restricts; readiness
// requests one; the hooks they wrap still run.
func TestRevokerHooks(t *testing.T) {
	rec := newSweepRecorder()
	r, _, _ := startRevoker(t, rec, time.Millisecond)
	var flushed, ready int
	h := r.hooks(podwatch.Hooks{
		Flushed: func(enforcer.FlushResult, error) { flushed++ },
		Ready:   func() { ready++ },
	})
	h.Flushed(enforcer.FlushResult{Operations: 3}, nil)
	h.Flushed(enforcer.FlushResult{Restricts: true}, errors.New("apply failed"))
	rec.noSweep(t, 50*time.Millisecond)
	h.Flushed(enforcer.FlushResult{Operations: 1, Restricts: true}, nil)
	rec.waitSweep(t)
	h.Ready()
	rec.waitSweep(t)
	if flushed != 3 || ready != 1 {
		t.Errorf("wrapped hooks called %d and %d times, want 3 and 1", flushed, ready)
	}
	// Hooks that were nil stay callable.
	h = r.hooks(podwatch.Hooks{})
	h.Flushed(enforcer.FlushResult{Restricts: true}, nil)
	h.Ready()
	rec.waitSweep(t)
}

// flowTableRecorder is a conntrack table for the daemon tests.
type flowTableRecorder struct {
	mu     sync.Mutex
	flows  []nft.Flow
	sweeps int
}

func (f *flowTableRecorder) DeleteFlows(_ context.Context, match func(nft.Flow) bool) (deleted, examined int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sweeps++
	var kept []nft.Flow
	for _, fl := range f.flows {
		examined++
		if match(fl) {
			deleted++
			continue
		}
		kept = append(kept, fl)
	}
	f.flows = kept
	return deleted, examined, nil
}

func (f *flowTableRecorder) state() (sweeps, flows int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sweeps, len(f.flows)
}

// The daemon sweeps once it is ready and after a policy edit that denies the
// connection in its table; with --revoke-established=false it never sweeps.
func TestDaemonRevokes(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")

	for _, on := range []bool{true, false} {
		client := fake.NewClientset(
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "backend"}},
			testPod("backend", "api", "node-a", "198.18.0.20"),
			testPod("backend", "web", "node-b", "198.18.1.10"),
			allowWeb(portOf(corev1.ProtocolTCP, 8080)),
		)
		table := &flowTableRecorder{flows: []nft.Flow{{Protocol: nft.ProtoTCP,
			Src: netip.MustParseAddr("198.18.1.10"), SrcPort: 40000, Dst: netip.MustParseAddr("198.18.0.20"), DstPort: 8080}}}
		logs := &syncBuffer{}
		d := &daemon{
			cfg:       runConfig{NodeName: "node-a", Table: "nftwarden", ResyncPeriod: time.Minute, RevokeEstablished: on},
			log:       slog.New(slog.NewTextHandler(logs, nil)),
			client:    client,
			dataplane: nft.NewFake("nftwarden"),
			flows:     table,
			notifier:  notifierFromEnv(),
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.run(ctx) }()
		waitFor := func(what string, cond func() bool) {
			t.Helper()
			for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("revoke=%v: %s: timed out; log:\n%s", on, what, logs)
				}
			}
		}
		waitFor("ready", func() bool { return strings.Contains(logs.String(), "ready: the dataplane enforces") })
		if on {
			waitFor("the sweep after the first reconcile", func() bool { sweeps, _ := table.state(); return sweeps > 0 })
		}
		if _, err := client.NetworkingV1().NetworkPolicies("backend").Update(ctx, allowWeb(portOf(corev1.ProtocolTCP, 9090)), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if on {
			waitFor("the connection is revoked", func() bool { _, n := table.state(); return n == 0 })
			waitFor("the log line", func() bool { return strings.Contains(logs.String(), "revoked established connections") })
		} else {
			time.Sleep(300 * time.Millisecond)
			if sweeps, n := table.state(); sweeps != 0 || n != 1 {
				t.Errorf("revoke off: %d sweeps, %d connections left; want none and 1", sweeps, n)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}
