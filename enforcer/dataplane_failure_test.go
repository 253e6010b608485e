package enforcer_test

// IP plan: see helpers_test.go and semantics_test.go (the base world).

import (
	"context"
	"errors"
	"fmt"
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
// batch the kernel rejects: none of it takes effect), and while hold is set
// each call first waits for it to close or for its context to end.
type flakyDataplane struct {
	*nft.Fake
	mu       sync.Mutex
	failures int
	hold     chan struct{}
	arrived  chan struct{} // receives a value as each held call starts waiting
	calls    []string
}

func (d *flakyDataplane) Apply(ctx context.Context, tx *nft.Transaction) error {
	if err := d.gate(ctx, "apply"); err != nil {
		return err
	}
	return d.Fake.Apply(ctx, tx)
}

func (d *flakyDataplane) Reconcile(ctx context.Context, desired *nft.State) (*nft.Transaction, error) {
	if err := d.gate(ctx, "reconcile"); err != nil {
		return nil, err
	}
	return d.Fake.Reconcile(ctx, desired)
}

func (d *flakyDataplane) gate(ctx context.Context, call string) error {
	d.mu.Lock()
	hold, arrived := d.hold, d.arrived
	fail := d.failures > 0
	if fail {
		d.failures--
	}
	d.calls = append(d.calls, call)
	d.mu.Unlock()
	if hold != nil {
		if arrived != nil {
			arrived <- struct{}{}
		}
		select {
		case <-hold:
		case <-ctx.Done():
			return fmt.Errorf("%s: held: %w", call, ctx.Err())
		}
	}
	if fail {
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
			dp.set(func(d *flakyDataplane) {
				d.calls = nil
				if tc.held {
					d.hold = make(chan struct{})
				} else {
					d.failures = tc.failures
				}
			})
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
					dp.Mutate(func(s *nft.State) { delete(s.Sets["ingress-v4"].Elements, "198.18.1.10") })
					good, _ = dp.Read(ctx)
				}
			}
			dp.set(func(d *flakyDataplane) {
				if !slices.Equal(d.calls, tc.calls) {
					t.Errorf("dataplane calls %v, want %v", d.calls, tc.calls)
				}
				d.hold = nil
			})
			res, err := e.Flush(ctx)
			if err != nil || !res.Full {
				t.Fatalf("flush once the failures stopped: %+v %v, want a full reconcile", res, err)
			}
			checkProgrammed(t, dp.Fake, e)
		})
	}
}

// TestFlushHeldByDataplane: while the dataplane holds a Flush, changes wait
// for the engine, and none is lost: once released, the held Flush applies
// what it had and the next one what came meanwhile.
func TestFlushHeldByDataplane(t *testing.T) {
	ctx := context.Background()
	dp := &flakyDataplane{Fake: nft.NewFake(nft.DefaultTable)}
	e := loadBaseInto(t, dp)
	hold := make(chan struct{})
	dp.set(func(d *flakyDataplane) { d.hold, d.arrived = hold, make(chan struct{}, 1) })
	_ = e.UpsertPod(mkPod("prod", "new", podLabels("app", "cli"), podIPs("198.18.1.60")))
	flushed := make(chan error, 1)
	go func() {
		_, err := e.Flush(ctx)
		flushed <- err
	}()
	<-dp.arrived
	upserted := make(chan error, 1)
	go func() {
		upserted <- e.UpsertPod(mkPod("prod", "newer", podLabels("app", "web"), podIPs("198.18.1.61")))
	}()
	dp.set(func(d *flakyDataplane) { d.hold = nil })
	close(hold)
	if err := <-flushed; err != nil {
		t.Fatalf("held flush: %v", err)
	}
	if err := <-upserted; err != nil {
		t.Fatal(err)
	}
	res, err := e.Flush(ctx)
	if err != nil || res.Full || res.Operations == 0 {
		t.Fatalf("flush after the held one: %+v %v, want the change made meanwhile as a delta", res, err)
	}
	checkProgrammed(t, dp.Fake, e)
}

// loadBaseInto makes an engine for node-a over dp with the base world and
// policies, flushed.
func loadBaseInto(t *testing.T, dp nft.Dataplane) *enforcer.Engine {
	t.Helper()
	e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Dataplane: dp, Logger: quietLogger})
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
