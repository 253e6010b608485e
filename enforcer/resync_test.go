package enforcer_test

// IP plan: see helpers_test.go (the base world: prod/web 198.18.0.10 on node-a).

import (
	"context"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// TestReconcileTrustsAnUntouchedDataplane: a periodic Reconcile reads the
// dataplane only when it cannot prove that nobody else changed the table; then
// it repairs what it finds and says so, and the next one trusts its record
// again.
func TestReconcileTrustsAnUntouchedDataplane(t *testing.T) {
	c := newCluster(t, "node-a")
	loadBase(t, c, basePolicies()...)
	e, f := c.engines["node-a"], c.fakes["node-a"]
	ctx := context.Background()
	reconcile := func(step string) enforcer.FlushResult {
		t.Helper()
		res, err := e.Reconcile(ctx)
		if err != nil {
			t.Fatalf("%s: Reconcile: %v", step, err)
		}
		return res
	}

	if res := reconcile("untouched"); res.ReadDataplane || res.Repaired || res.Operations != 0 {
		t.Errorf("untouched table: %+v, want a trusted no-op", res)
	}

	// Someone deletes the table's dispatch elements and a peer set's members.
	before, err := f.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.Mutate(func(s *nft.State) {
		for _, set := range s.Sets {
			set.Elements.Clear()
		}
	})
	res := reconcile("drifted")
	if !res.ReadDataplane || !res.Repaired || res.Operations == 0 || !res.Restricts {
		t.Errorf("drifted table: %+v, want a read that repairs (and restricts)", res)
	}
	after, err := f.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tx := nft.Diff(before, after, nil); !tx.Empty() {
		t.Errorf("not repaired: %d operations from the state before the drift", tx.Size())
	}

	if res := reconcile("untouched again"); res.ReadDataplane || res.Repaired {
		t.Errorf("after the repair: %+v, want a trusted no-op", res)
	}
	// Lost events (or the age bound) make it read again; nothing to repair.
	f.MarkTouched()
	if res := reconcile("touched, unchanged"); !res.ReadDataplane || res.Repaired || res.Operations != 0 {
		t.Errorf("touched but unchanged table: %+v, want a read without repair", res)
	}
}

// TestFirstReconcileIsNoRepair: programming a node at start-up, or after a
// failed flush, sends operations without counting as drift.
func TestFirstReconcileIsNoRepair(t *testing.T) {
	f := nft.NewFake(nft.DefaultTable)
	e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Dataplane: f, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	loadBaseWorld(e)
	res, err := e.Flush(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Full || !res.ReadDataplane || res.Repaired || res.Operations == 0 {
		t.Errorf("first flush: %+v, want a full read that programs without counting as a repair", res)
	}
}
