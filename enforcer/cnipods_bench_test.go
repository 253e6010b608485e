package enforcer_test

// IP plan: the generated clusters of bench_test.go; the pods StartPod brings
// up take the generator's next addresses (pod k has 198.18.0.0 + k + 1).

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// BenchmarkStartPod: the time a CNI ADD waits in StartPod for a new local
// pod (no status IPs yet) of a generated cluster (pods/10 policies) on
// node-000, from the call to the end of the kernel batch that carries it.
// namespace=local puts it in a namespace that has local pods already (its
// policies are programmed: the batch adds elements), namespace=any in the
// namespaces in turn (mostly without a local pod: the batch programs their
// policies' chains and sets too). dataplane=discard measures the engine alone, dataplane=kernel a real
// kernel in a fresh network namespace (skipped without CAP_NET_ADMIN). Each
// pod is deleted again, untimed, so the cluster keeps its size. Reports
// the median and the 99th percentile of the calls besides the mean.
func BenchmarkStartPod(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		for _, where := range []string{"local", "any"} {
			for _, dpName := range []string{"discard", "kernel"} {
				b.Run(fmt.Sprintf("pods=%d/namespace=%s/dataplane=%s", n, where, dpName), func(b *testing.B) {
					var dp nft.Dataplane = &discardDataplane{}
					if dpName == "kernel" {
						ns := nfttest.NewNetNS(b) // skips without CAP_NET_ADMIN
						k, err := nft.NewKernel(nft.WithNetNS(ns.FD), nft.WithTable("nftw-bench"))
						if err != nil {
							b.Fatal(err)
						}
						b.Cleanup(func() { _ = k.Close() })
						dp = k
					}
					benchStartPod(b, newGenCluster(n), where == "local", dp)
				})
			}
		}
	}
}

func benchStartPod(b *testing.B, g *genCluster, localNamespaces bool, dp nft.Dataplane) {
	ctx := context.Background()
	e, err := enforcer.New(enforcer.Config{NodeName: "node-000", Dataplane: dp, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	for _, ns := range g.namespaces {
		if err := e.UpsertNamespace(ns); err != nil {
			b.Fatal(err)
		}
	}
	var namespaces []int // the indexes of the namespaces new pods go to
	for k := range g.pods {
		p := g.pod(k)
		if err := e.UpsertPod(p); err != nil {
			b.Fatal(err)
		}
		if nsIdx := min(k/100, len(g.namespaces)-1); !localNamespaces || p.Spec.NodeName == "node-000" && !slices.Contains(namespaces, nsIdx) {
			namespaces = append(namespaces, nsIdx)
		}
	}
	for _, np := range g.policies {
		if err := e.UpsertNetworkPolicy(np); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := e.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	ops := 0
	i := 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		k := g.pods + i
		raw := benchPod(k, namespaces[(i*37)%len(namespaces)], g.nodes)
		raw.Spec.NodeName = "node-000"
		addrs := make([]netip.Addr, 0, 2)
		for _, ip := range raw.Status.PodIPs {
			addrs = append(addrs, netip.MustParseAddr(ip.IP))
		}
		raw.Status.PodIPs, raw.Status.PodIP = nil, ""
		p := enforcer.NewPod(raw)
		b.StartTimer()
		t0 := time.Now()
		res, err := e.StartPod(ctx, p, addrs)
		took = append(took, time.Since(t0))
		if err != nil {
			b.Fatalf("StartPod: %v", err)
		}
		b.StopTimer()
		ops += res.Operations
		e.DeletePod(p.Namespace(), p.Name())
		if _, err := e.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		i++
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(ops)/float64(i), "operations/op")
}
