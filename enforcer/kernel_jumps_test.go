package enforcer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// TestPrivilegedKernelBusyPodJumps: on a real kernel, policies selecting a
// pod that 60 others select are created and deleted at random, one or a few
// per flush: each flush sends a handful of operations (the jumps inserted or
// deleted, the policies' own chains), and the kernel reads back as the
// engine's record of what it programmed and as its desired state.
func TestPrivilegedKernelBusyPodJumps(t *testing.T) {
	_, k, e := newKernelEngine(t)
	ctx := context.Background()
	if err := e.UpsertNamespace(mkNamespace("shop", "env", "prod")); err != nil {
		t.Fatal(err)
	}
	for _, p := range deltaPods() {
		p.Spec.NodeName = map[string]string{"n1": "node-a", "n2": "node-b"}[p.Spec.NodeName]
		if err := e.UpsertPod(p); err != nil {
			t.Fatal(err)
		}
	}
	live := map[int]bool{}
	for i := range 60 {
		if err := e.UpsertNetworkPolicy(extraDBPolicy(i)); err != nil {
			t.Fatal(err)
		}
		live[i] = true
	}
	enforcer.FlushToKernel(t, "program", e, k)
	rng := rand.New(rand.NewPCG(16, 1))
	for step := range 40 {
		changes := 1 + rng.IntN(3)
		for range changes {
			i := rng.IntN(90)
			if live[i] {
				e.DeleteNetworkPolicy("shop", fmt.Sprintf("db-extra-%d", i))
			} else if err := e.UpsertNetworkPolicy(extraDBPolicy(i)); err != nil {
				t.Fatal(err)
			}
			live[i] = !live[i]
		}
		name := fmt.Sprintf("step %d", step)
		res := enforcer.FlushToKernel(t, name, e, k)
		if res.Full || res.Operations > 6*changes {
			t.Fatalf("%s: %+v for %d policies created or deleted: want a delta of a few operations each", name, res, changes)
		}
		got, err := k.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tx := nft.Diff(got, e.Programmed(), nil); !tx.Empty() {
			t.Fatalf("%s: kernel differs from the engine's record:\n%s", name, tx)
		}
	}
}
