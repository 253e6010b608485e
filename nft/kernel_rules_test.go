package nft_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// Rule edits in the kernel (kernel_rules.go): every batch leaves the kernel
// holding exactly what State.Apply makes of the same transaction, which the
// caller keeps as its record.

const editTargets = 64

func jumpRule(i int) nft.Rule {
	return nft.Rule{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: fmt.Sprintf("p%d", i)}}, Comment: fmt.Sprintf("policy %d", i)}
}

// jumpState is a state whose chain "pod" jumps to p<ids[i]> in order, then
// drops.
func jumpState(ids []int) *nft.State {
	s := nft.NewState()
	for i := range editTargets {
		addChain(s, nft.Chain{Name: fmt.Sprintf("p%d", i)})
	}
	var rules []nft.Rule
	for _, id := range ids {
		rules = append(rules, jumpRule(id))
	}
	rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}})
	addChain(s, nft.Chain{Name: "pod", Rules: rules})
	return s
}

// applyBoth applies tx to the kernel and to the record, and checks that the
// kernel holds the record.
func applyBoth(t *testing.T, k *nft.Kernel, record *nft.State, tx *nft.Transaction, step string) {
	t.Helper()
	ctx := context.Background()
	want := record.Clone()
	wantErr := want.Apply(tx)
	err := k.Apply(ctx, tx)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%s: kernel: %v, State.Apply: %v\n%s", step, err, wantErr, tx)
	}
	if err != nil {
		return
	}
	*record = *want
	got, err := k.Read(ctx)
	if err != nil {
		t.Fatalf("%s: Read: %v", step, err)
	}
	if d := nft.Diff(got, record, nil); !d.Empty() {
		t.Fatalf("%s: kernel differs from the record after\n%s\nfix:\n%s\nkernel pod chain:\n%s", step, tx, d, nft.Render(testTable, got))
	}
}

// checkHandles checks that k knows the handles of chain's rules (from the
// echoes of its last batch) and that they are the kernel's.
func checkHandles(t *testing.T, k *nft.Kernel, chain, step string) {
	t.Helper()
	recorded, dumped, err := k.RuleHandles(chain)
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	if recorded == nil || !slices.Equal(recorded, dumped) {
		t.Fatalf("%s: recorded handles of %s %v, the kernel's %v", step, chain, recorded, dumped)
	}
}

// programJumps programs jumpState(ids) with k and returns it as the record.
func programJumps(t *testing.T, k *nft.Kernel, ids []int) *nft.State {
	t.Helper()
	record := nft.NewState()
	applyBoth(t, k, record, nft.Diff(record, jumpState(ids), nil), "program")
	return record
}

// sameTableKernel is a second Kernel on the test table of ns.
func sameTableKernel(t *testing.T, ns *nfttest.NetNS) *nft.Kernel {
	t.Helper()
	k, err := nft.NewKernel(nft.WithTable(testTable), nft.WithNetNS(ns.FD))
	if err != nil {
		t.Fatalf("NewKernel: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

// TestKernelRuleEditsRandom edits a pod chain of 40 jumps at random, a few
// rules per batch and now and then many (a rewrite, after which the handles
// of the chain are dumped when next needed), and every fifth batch through a
// second Kernel: the first time it knows no handles (a dump of the chain),
// later it has read the table since the first one changed it, as a caller
// reconciles after a foreign change (handles are trusted like the caller's
// record: a change by someone else is the drift that Untouched reports).
func TestKernelRuleEditsRandom(t *testing.T) {
	ns, k := newKernel(t)
	ids := make([]int, 40)
	for i := range ids {
		ids[i] = i
	}
	record := programJumps(t, k, ids)
	other := sameTableKernel(t, ns)
	rng := rand.New(rand.NewPCG(3, 5))
	edited := 0
	for step := range 120 {
		edits := 1 + rng.IntN(4)
		if step%17 == 16 {
			edits = 40
		}
		for range edits {
			if len(ids) > 0 && rng.IntN(2) == 0 {
				j := rng.IntN(len(ids))
				ids = slices.Delete(ids, j, j+1)
				continue
			}
			ids = slices.Insert(ids, rng.IntN(len(ids)+1), rng.IntN(editTargets))
		}
		tx := nft.Diff(record, jumpState(ids), nil)
		for _, op := range tx.Ops {
			if op.Kind == nft.OpInsertRule || op.Kind == nft.OpDeleteRule {
				edited++
			}
		}
		dp := k
		if step%5 == 4 {
			dp = other
			if step > 4 { // k changed the chain since other's last batch
				if _, err := other.Read(context.Background()); err != nil {
					t.Fatalf("Read: %v", err)
				}
			}
		} else if step%5 == 0 && step > 0 { // other changed it
			if _, err := k.Read(context.Background()); err != nil {
				t.Fatalf("Read: %v", err)
			}
		}
		applyBoth(t, dp, record, tx, fmt.Sprintf("step %d", step))
		checkHandles(t, dp, "pod", fmt.Sprintf("step %d", step)) // also after a rewrite: echoed in a small batch
	}
	if edited < 100 {
		t.Fatalf("only %d rule edits in 120 steps: the test does not exercise them", edited)
	}
}

// TestKernelRuleEditsInOneBatch: edits of rules added earlier in the same
// batch (positions and deletions by ID), after a ReplaceRules of the same
// chain, and of a chain created in the batch; and the errors, which Fake
// gives too.
func TestKernelRuleEditsInOneBatch(t *testing.T) {
	_, k := newKernel(t)
	record := programJumps(t, k, []int{1, 2, 3})
	ins := func(tx *nft.Transaction, chain string, pos, id int) { tx.InsertRule(chain, pos, jumpRule(id)) }
	cases := []struct {
		name string
		tx   func(tx *nft.Transaction)
		fail bool
	}{
		{"inserts after new rules, deletes of new rules", func(tx *nft.Transaction) {
			ins(tx, "pod", 0, 10) // 10 1 2 3 drop
			ins(tx, "pod", 1, 11) // 10 11 1 2 3 drop: after a new rule
			ins(tx, "pod", 2, 12) // 10 11 12 1 ...
			tx.DeleteRule("pod", 1, nil)
			ins(tx, "pod", 5, 13) // 10 12 1 2 3 13 drop
			tx.DeleteRule("pod", 0, nil)
		}, false},
		{"edits after a ReplaceRules", func(tx *nft.Transaction) {
			tx.ReplaceRules("pod", []nft.Rule{jumpRule(20), jumpRule(21), jumpRule(22)})
			ins(tx, "pod", 2, 23)
			tx.DeleteRule("pod", 0, nil)
			ins(tx, "pod", 3, 24)
		}, false},
		{"a chain created in the batch", func(tx *nft.Transaction) {
			tx.AddChain(nft.Chain{Name: "fresh"})
			ins(tx, "fresh", 0, 30)
			ins(tx, "fresh", 1, 31)
			ins(tx, "fresh", 1, 32)
			tx.DeleteRule("fresh", 2, nil)
		}, false},
		{"a chain deleted and created again", func(tx *nft.Transaction) {
			tx.ReplaceRules("fresh", nil)
			tx.DeleteChain("fresh")
			tx.AddChain(nft.Chain{Name: "fresh"})
			ins(tx, "fresh", 0, 33)
		}, false},
		{"plain edits on what the batches above left", func(tx *nft.Transaction) {
			ins(tx, "pod", 1, 40)
			tx.DeleteRule("pod", 3, nil)
			ins(tx, "fresh", 1, 41)
			ins(tx, "fresh", 0, 42)
		}, false},
		{"delete beyond the chain", func(tx *nft.Transaction) { tx.DeleteRule("pod", 99, nil) }, true},
		{"insert beyond the chain", func(tx *nft.Transaction) { ins(tx, "pod", 99, 1) }, true},
		{"insert into a missing chain", func(tx *nft.Transaction) { ins(tx, "missing", 0, 1) }, true},
		{"after a failure, edits still land right", func(tx *nft.Transaction) {
			ins(tx, "pod", 0, 50)
			tx.DeleteRule("fresh", 0, nil)
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tx := &nft.Transaction{}
			tc.tx(tx)
			before := record.Clone()
			applyBoth(t, k, record, tx, tc.name)
			if failed := nft.Diff(before, record, nil).Empty(); failed != tc.fail {
				t.Fatalf("failed %v, want %v", failed, tc.fail)
			}
			if tc.fail {
				return
			}
			for _, chain := range []string{"pod", "fresh"} {
				for _, op := range tx.Ops {
					if op.Name == chain && (op.Kind == nft.OpInsertRule || op.Kind == nft.OpDeleteRule || op.Kind == nft.OpReplaceRules) {
						checkHandles(t, k, chain, tc.name)
						break
					}
				}
			}
		})
	}
}

// TestKernelReconcileConvergesDriftedChain: someone else deletes a rule of
// the chain and inserts one of their own; Reconcile edits it back rule by
// rule, and the next delta lands right on the handles it learnt.
func TestKernelReconcileConvergesDriftedChain(t *testing.T) {
	ns, k := newKernel(t)
	ctx := context.Background()
	ids := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	record := programJumps(t, k, ids)
	stranger := sameTableKernel(t, ns)
	drift := &nft.Transaction{}
	drift.DeleteRule("pod", 3, nil)
	drift.InsertRule("pod", 7, nft.Rule{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictAccept}}, Comment: "foreign"})
	if err := stranger.Apply(ctx, drift); err != nil {
		t.Fatalf("drift: %v", err)
	}
	tx, err := k.Reconcile(ctx, record)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if s := tx.String(); tx.Size() != 2 || tx.Ops[0].Kind != nft.OpDeleteRule || tx.Ops[1].Kind != nft.OpInsertRule {
		t.Fatalf("Reconcile sent %d operations, want the foreign rule deleted and the lost one inserted:\n%s", tx.Size(), s)
	}
	got, err := k.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if d := nft.Diff(got, record, nil); !d.Empty() {
		t.Fatalf("after Reconcile the kernel differs from the record:\n%s", d)
	}
	checkHandles(t, k, "pod", "after Reconcile")
	applyBoth(t, k, record, nft.Diff(record, jumpState(append(ids[:5:5], append([]int{40}, ids[5:]...)...)), nil), "delta after Reconcile")
	checkHandles(t, k, "pod", "delta after Reconcile")
}

// TestKernelRuleEditsAfterLargeBatch: a batch as large as a node program
// does not ask for the echoes of its rules; the chain's handles are dumped
// when a later batch edits it.
func TestKernelRuleEditsAfterLargeBatch(t *testing.T) {
	_, k := newKernel(t)
	ids := make([]int, 1200)
	for i := range ids {
		ids[i] = i % editTargets
	}
	record := nft.NewState()
	program := nft.Diff(record, jumpState(ids), nil)
	if err := k.Apply(context.Background(), program); err != nil {
		t.Fatalf("program: %v", err)
	}
	if err := record.Apply(program); err != nil {
		t.Fatal(err)
	}
	if recorded, _, err := k.RuleHandles("pod"); err != nil || recorded != nil {
		t.Fatalf("after a large batch: recorded handles %v (%v), want none", len(recorded), err)
	}
	ids = slices.Insert(ids, 600, 7)
	ids = slices.Delete(ids, 100, 101)
	tx := nft.Diff(record, jumpState(ids), nil)
	if tx.Size() != 2 {
		t.Fatalf("%d operations, want a deletion and an insertion:\n%s", tx.Size(), tx)
	}
	applyBoth(t, k, record, tx, "edit")
	checkHandles(t, k, "pod", "edit")
}
