package enforcer_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// BenchmarkKernelEngineProgram programs what the engine compiles for one node
// of the generated clusters into a real kernel (a fresh network namespace):
// the first start of a node, with the program shaped by real policies rather
// than nft's synthetic node state. Needs CAP_NET_ADMIN.
func BenchmarkKernelEngineProgram(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			g := newGenCluster(n)
			e, _ := g.build(b, nil)
			benchKernelApply(b, e)
		})
	}
}

// benchKernelApply applies e's whole desired state to a fresh network
// namespace's kernel per iteration (removing it in between) and reports the
// CPU time and the program's size. Needs CAP_NET_ADMIN.
func benchKernelApply(b *testing.B, e *enforcer.Engine) {
	st := e.Stats()
	tx := nft.Diff(nil, e.Desired(), nil)
	ns := nfttest.NewNetNS(b) // skips without CAP_NET_ADMIN
	k, err := nft.NewKernel(nft.WithNetNS(ns.FD), nft.WithTable("nftw-bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = k.Close() })
	ctx := context.Background()
	m := &meter{b: b}
	b.ResetTimer()
	for range b.N {
		m.start()
		if err := k.Apply(ctx, tx); err != nil {
			b.Fatalf("Apply: %v", err)
		}
		m.stop()
		if err := k.Cleanup(ctx); err != nil {
			b.Fatalf("Cleanup: %v", err)
		}
	}
	b.ReportMetric(float64(m.cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(st.Elements), "elements")
	b.ReportMetric(float64(st.Chains), "chains")
	b.ReportMetric(float64(st.Sets), "sets")
}
