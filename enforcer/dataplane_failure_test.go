package enforcer_test

// IP plan: see helpers_test.go and semantics_test.go (the base world).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// errNetlink stands for the kernel rejecting a batch.
var errNetlink = errors.New("netlink receive: no buffer space available")

// flakyDataplane is an nft.Fake behind a dataplane that fails: the next
// failures calls to Apply or Reconcile fail before they reach the Fake (a
// batch the kernel rejects: none of it takes effect). To hold calls, block
// the Fake (nft.Fake.BlockApply).
type flakyDataplane struct {
	*nft.Fake
	mu       sync.Mutex
	failures int
	calls    []string
}

func (d *flakyDataplane) Apply(ctx context.Context, tx *nft.Transaction) error {
	if err := d.gate("apply"); err != nil {
		return err
	}
	return d.Fake.Apply(ctx, tx)
}

func (d *flakyDataplane) Reconcile(ctx context.Context, desired *nft.State) (*nft.Transaction, error) {
	if err := d.gate("reconcile"); err != nil {
		return nil, err
	}
	return d.Fake.Reconcile(ctx, desired)
}

func (d *flakyDataplane) gate(call string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, call)
	if d.failures > 0 {
		d.failures--
		return fmt.Errorf("%s: %w", call, errNetlink)
	}
	return nil
}

func (d *flakyDataplane) set(fn func(d *flakyDataplane)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d)
}

// TestFailingDataplane: a Flush whose transaction the dataplane rejects (or
// that waits past its deadline) returns an error naming the failure and
// leaves both the engine's record and the table in the last good state,
// whatever changes pile up meanwhile; the next Flush reconciles, and once the
// failures stop the table equals the desired state and an idle Flush sends
// nothing. Nothing is ever partially applied: the table is checked after
// every failed call.
func TestFailingDataplane(t *testing.T) {
	// Changes made one before each Flush attempt.
	changes := []func(e *enforcer.Engine){
		func(e *enforcer.Engine) {
			_ = e.UpsertPod(mkPod("prod", "new", podLabels("app", "cli"), podIPs("198.18.1.60")))
		},
		func(e *enforcer.Engine) {
			_ = e.UpsertNetworkPolicy(mkPolicy("prod", "web", selecting(sel("app", "web")), ingress(peers(ipBlock("198.19.0.0/16")), tcp(443))))
		},
		func(e *enforcer.Engine) { e.DeletePod("dev", "cli") },
		func(e *enforcer.Engine) { e.DeleteNetworkPolicy("prod", "db") },
	}
	cases := []struct {
		name     string
		failures int
		// held: the calls wait past a deadline instead of failing.
		held bool
		// drift: someone damages the table after the first failure; the
		// reconcile repairs that too.
		drift bool
		want  error
		calls []string // dataplane calls of the failing Flushes
	}{
		{name: "one apply rejected", failures: 1, want: errNetlink, calls: []string{"apply"}},
		{name: "apply then reconciles rejected", failures: 4, want: errNetlink, calls: []string{"apply", "reconcile", "reconcile", "reconcile"}},
		{name: "table damaged while failing", failures: 2, drift: true, want: errNetlink, calls: []string{"apply", "reconcile"}},
		{name: "held past the deadline", failures: 2, held: true, want: context.DeadlineExceeded, calls: []string{"apply", "reconcile"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dp := &flakyDataplane{Fake: nft.NewFake(nft.DefaultTable)}
			e := loadBaseInto(t, dp)
			good, _ := dp.Read(ctx)
			record := e.Programmed()
			if tx := nft.Diff(good, record, nil); !tx.Empty() {
				t.Fatalf("after the first flush the record differs from the table by %d operations", tx.Size())
			}
			applied := len(dp.Transactions())
			release := func() {}
			dp.set(func(d *flakyDataplane) {
				d.calls = nil
				if !tc.held {
					d.failures = tc.failures
				}
			})
			if tc.held {
				_, release = dp.BlockApply()
				defer release()
			}
			for i := range tc.failures {
				changes[i%len(changes)](e)
				fctx, cancel := context.WithCancel(ctx)
				if tc.held {
					fctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
				}
				res, err := e.Flush(fctx)
				cancel()
				if !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), "enforcer: ") {
					t.Fatalf("flush %d: error %v, want one from the enforcer wrapping %v", i, err, tc.want)
				}
				if res.Operations != 0 {
					t.Errorf("flush %d failed but reports %d operations", i, res.Operations)
				}
				got, _ := dp.Read(ctx)
				if tx := nft.Diff(good, got, nil); !tx.Empty() || len(dp.Transactions()) != applied {
					t.Fatalf("flush %d failed but the table changed (%d operations from the last good state)", i, tx.Size())
				}
				if tx := nft.Diff(record, e.Programmed(), nil); !tx.Empty() {
					t.Fatalf("flush %d failed but the engine's record changed (%d operations)", i, tx.Size())
				}
				if tc.drift && i == 0 {
					dp.Mutate(func(s *nft.State) { s.Sets["ingress-v4"].Elements.DeleteID("198.18.1.10") })
					good, _ = dp.Read(ctx)
				}
			}
			dp.set(func(d *flakyDataplane) {
				if !slices.Equal(d.calls, tc.calls) {
					t.Errorf("dataplane calls %v, want %v", d.calls, tc.calls)
				}
			})
			release()
			res, err := e.Flush(ctx)
			if err != nil || !res.Full {
				t.Fatalf("flush once the failures stopped: %+v %v, want a full reconcile", res, err)
			}
			checkProgrammed(t, dp.Fake, e)
		})
	}
}

// TestSyncHeldByDataplane: while the dataplane holds a Flush inside Apply (or
// a Reconcile inside Reconcile), the engine answers at once: Stats, Decide,
// Desired and an upsert do not wait for the kernel. No change is lost: once
// released, the held sync programs what it had, and the next Flush sends the
// upsert made meanwhile as a delta.
func TestSyncHeldByDataplane(t *testing.T) {
	for _, tc := range []struct {
		name string
		sync func(context.Context, *enforcer.Engine, *nft.Fake) (enforcer.FlushResult, error)
	}{
		{"flush", func(ctx context.Context, e *enforcer.Engine, _ *nft.Fake) (enforcer.FlushResult, error) {
			return e.Flush(ctx)
		}},
		{"reconcile", func(ctx context.Context, e *enforcer.Engine, f *nft.Fake) (enforcer.FlushResult, error) {
			f.MarkTouched() // the engine cannot trust its record: it reconciles
			return e.Reconcile(ctx)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := nft.NewFake(nft.DefaultTable)
			e := loadBaseInto(t, f)
			entered, release := f.BlockApply()
			defer release()
			_ = e.UpsertPod(mkPod("prod", "new", podLabels("app", "cli"), podIPs("198.18.1.60")))
			synced := make(chan error, 1)
			go func() {
				_, err := tc.sync(ctx, e, f)
				synced <- err
			}()
			receiveWithin(t, entered, "the sync to reach the dataplane")

			answered := make(chan error, 1)
			go func() {
				_ = e.Stats()
				_ = e.Decide(enforcer.Flow{Src: netip.MustParseAddr("198.18.1.20"), Dst: netip.MustParseAddr("198.18.1.10"), Protocol: TCP, Port: 8080})
				_ = e.Desired()
				answered <- e.UpsertPod(mkPod("prod", "newer", podLabels("app", "web"), podIPs("198.18.1.61")))
			}()
			receiveWithin(t, answered, "the engine to answer while the dataplane holds the sync")
			select {
			case err := <-synced:
				t.Fatalf("the sync returned (%v) while the dataplane held it", err)
			default:
			}

			release()
			if err := receiveWithin(t, synced, "the held sync"); err != nil {
				t.Fatalf("held sync: %v", err)
			}
			if strings.Contains(f.Dump(), "198.18.1.61") {
				t.Fatal("the upsert made during the held sync was sent by it")
			}
			res, err := e.Flush(ctx)
			if err != nil || res.Full || res.Operations == 0 {
				t.Fatalf("flush after the held one: %+v %v, want the change made meanwhile as a delta", res, err)
			}
			if !strings.Contains(f.Dump(), "198.18.1.61") {
				t.Fatalf("the upsert made during the held sync is not in the table:\n%s", f.Dump())
			}
			checkProgrammed(t, f, e)
		})
	}
}

// receiveWithin waits for ch to deliver (or be closed), failing the test
// after a deadline far beyond what the wait should take: a guard against a
// hang, not a measure of speed.
func receiveWithin[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// loadBaseInto makes an engine for node-a over dp with the base world and
// policies, flushed.
func loadBaseInto(t *testing.T, dp nft.Dataplane) *enforcer.Engine {
	t.Helper()
	return loadBaseLogging(t, dp, quietLogger)
}

// loadBaseLogging is loadBaseInto with the engine logging to log.
func loadBaseLogging(t *testing.T, dp nft.Dataplane, log *slog.Logger) *enforcer.Engine {
	t.Helper()
	e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Dataplane: dp, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	loadBaseWorld(e)
	for _, np := range basePolicies() {
		_ = e.UpsertNetworkPolicy(np)
	}
	if _, err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// checkProgrammed asserts that the table, the engine's record and its
// desired state agree, and that an idle Flush sends nothing.
func checkProgrammed(t *testing.T, f *nft.Fake, e *enforcer.Engine) {
	t.Helper()
	got, err := f.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tx := nft.Diff(got, e.Desired(), nil); !tx.Empty() {
		t.Fatalf("table differs from the desired state by %d operations", tx.Size())
	}
	if tx := nft.Diff(e.Programmed(), e.Desired(), nil); !tx.Empty() {
		t.Fatalf("engine's record differs from the desired state by %d operations", tx.Size())
	}
	if res, err := e.Flush(context.Background()); err != nil || res.Full || res.Operations != 0 {
		t.Fatalf("idle flush: %+v %v, want nothing sent", res, err)
	}
}
