package enforcer_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// A server pod that many policies select: pod 0 of the generated cluster
// (local to node-000, app=a0 in ns-0000), selected by busyPolicies more
// policies on top of the cluster's own. Creating or deleting one more of
// them changes one jump of the pod's chain.

const busyPolicies = 2000

// busyPolicy is policy i of those selecting pod 0: pods app=a1 may reach its
// port 10000+i.
func busyPolicy(i int) *networkingv1.NetworkPolicy {
	return mkPolicy("ns-0000", fmt.Sprintf("busy-%05d", i), selecting(sel("app", "a0")),
		ingress(peers(podPeer(sel("app", "a1"))), tcp(int32(10000+i))))
}

// busyCluster is the generated cluster of pods pods with the busy policies.
func busyCluster(pods int) *genCluster {
	g := newGenCluster(pods)
	for i := range busyPolicies {
		g.policies = append(g.policies, busyPolicy(2*i))
	}
	return g
}

// busyChange creates (i even) or deletes (i odd) a policy selecting pod 0,
// between two that exist (the jump goes into the middle of its chain).
func busyChange(e *enforcer.Engine, i int) error {
	if i%2 == 1 {
		e.DeleteNetworkPolicy("ns-0000", fmt.Sprintf("busy-%05d", busyPolicies+1))
		return nil
	}
	return e.UpsertNetworkPolicy(busyPolicy(busyPolicies + 1))
}

// BenchmarkEngineDeltaBusyPodPolicy: a policy selecting a pod that 2,000
// others select, created or deleted (alternately), plus its Flush into a
// discarding dataplane; nft-ops/op is the size of the transaction.
func BenchmarkEngineDeltaBusyPodPolicy(b *testing.B) {
	for _, n := range benchSizes[1:] {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			e, dp := busyCluster(n).build(b, nil)
			measureDelta(b, e, dp, func(i int) {
				if err := busyChange(e, i); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkKernelBusyPodPolicy is BenchmarkEngineDeltaBusyPodPolicy into a
// real kernel (a fresh network namespace) holding the node's program:
// from the change to the end of its kernel batch, with p50 and p99 of the
// wall time, and beside it the kernel's floor for any batch that adds a jump
// to that table (x-floor-*: kernelJumpFloor). Needs CAP_NET_ADMIN.
func BenchmarkKernelBusyPodPolicy(b *testing.B) {
	for _, n := range benchSizes[1:] {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			g := busyCluster(n)
			ns := nfttest.NewNetNS(b) // skips without CAP_NET_ADMIN
			k, err := nft.NewKernel(nft.WithNetNS(ns.FD), nft.WithTable("nftw-bench"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = k.Close() })
			e := g.buildOn(b, nil, k)
			ctx := context.Background()
			var walls []time.Duration
			ops := 0
			i := 0
			cpu0 := cpuTime()
			for b.Loop() {
				start := time.Now()
				if err := busyChange(e, i); err != nil {
					b.Fatal(err)
				}
				res, err := e.Flush(ctx)
				if err != nil || res.Full {
					b.Fatalf("flush: %+v %v", res, err)
				}
				walls = append(walls, time.Since(start))
				ops += res.Operations
				i++
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(i), "cpu-ns/op")
			b.ReportMetric(float64(ops)/float64(i), "nft-ops/op")
			slices.Sort(walls)
			b.ReportMetric(float64(walls[len(walls)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(walls[len(walls)*99/100].Nanoseconds()), "p99-ns")
			b.StopTimer()
			floor := kernelJumpFloor(b, k, i)
			b.ReportMetric(float64(floor[len(floor)/2].Nanoseconds()), "x-floor-p50-ns")
			b.ReportMetric(float64(floor[len(floor)*99/100].Nanoseconds()), "x-floor-p99-ns")
		})
	}
}

// kernelJumpFloor is what the kernel alone takes for a batch that adds one
// jump to the table k holds, n times (each time the two chains of the jump
// added, then deleted by the next batch, which is not measured): any rule
// with a jump or goto makes the commit validate the whole table, a walk
// from the base chain through every chain it reaches
// (nft_table_validate), which is most of a policy change's kernel batch.
// Sorted wall times of the adding batches.
func kernelJumpFloor(b *testing.B, k *nft.Kernel, n int) []time.Duration {
	ctx := context.Background()
	walls := make([]time.Duration, 0, n)
	for range n {
		add := &nft.Transaction{}
		add.AddChain(nft.Chain{Name: "floor-from"})
		add.AddChain(nft.Chain{Name: "floor-to"})
		add.ReplaceRules("floor-from", []nft.Rule{{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: "floor-to"}}}})
		start := time.Now()
		if err := k.Apply(ctx, add); err != nil {
			b.Fatalf("floor: add a jump: %v", err)
		}
		walls = append(walls, time.Since(start))
		del := &nft.Transaction{}
		del.DeleteChain("floor-from")
		del.DeleteChain("floor-to")
		if err := k.Apply(ctx, del); err != nil {
			b.Fatalf("floor: delete the jump: %v", err)
		}
	}
	slices.Sort(walls)
	return walls
}
