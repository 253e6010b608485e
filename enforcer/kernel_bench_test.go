package enforcer_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// BenchmarkKernelEngineProgram programs what the engine compiles for one node
// of the generated clusters into a real kernel (a fresh network namespace):
// the first start of a node, with the program shaped by real policies rather
// than nft's synthetic node state. Each iteration also programs the floor
// the figure is read against (elementsFloor) into the same namespace just
// before, and the benchmark reports the medians of the per-iteration ratios
// (x-floor-cpu, x-floor-wall): the machine's speed drifts between runs much
// more than between two batches a moment apart. Needs CAP_NET_ADMIN.
func BenchmarkKernelEngineProgram(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			g := newGenCluster(n)
			e, _ := g.build(b, nil)
			benchKernelApply(b, e, true)
		})
	}
}

// floorElements is the size of the floor's set.
const floorElements = 100_000

// elementsFloor is the floor a node program is read against: one set of
// 100,000 IPv4 addresses programmed in one batch (nft's
// BenchmarkKernelElements), what getting that many elements into the
// kernel costs at the least.
func elementsFloor() *nft.Transaction {
	s := nft.NewState()
	set := &nft.Set{Name: "floor", Key: []nft.KeyType{nft.TypeIPv4Addr}, Elements: map[string]nft.Element{}}
	base := binary.BigEndian.Uint32(netip.MustParseAddr("198.18.0.0").AsSlice())
	for i := range floorElements {
		e := nft.Element{Key: []nft.Value{binary.BigEndian.AppendUint32(nil, base+uint32(i))}}
		set.Elements[nft.ElementID(set, e)] = e
	}
	s.Sets[set.Name] = set
	return nft.Diff(nil, s, nil)
}

// benchKernelApply applies e's whole desired state to a fresh network
// namespace's kernel per iteration (removing it in between) and reports the
// CPU time and the program's size; withFloor also programs elementsFloor
// before each (outside the timer) and reports the ratios to it. Needs
// CAP_NET_ADMIN.
func benchKernelApply(b *testing.B, e *enforcer.Engine, withFloor bool) {
	st := e.Stats()
	benchKernelProgram(b, nft.Diff(nil, e.Desired(), nil), withFloor)
	b.ReportMetric(float64(st.Elements), "elements")
	b.ReportMetric(float64(st.Chains), "chains")
	b.ReportMetric(float64(st.Sets), "sets")
}

// benchKernelStateApply is benchKernelApply for a state that is no engine's,
// always beside the floor.
func benchKernelStateApply(b *testing.B, s *nft.State) {
	benchKernelProgram(b, nft.Diff(nil, s, nil), true)
	n := 0
	for _, set := range s.Sets {
		n += len(set.Elements)
	}
	b.ReportMetric(float64(n), "elements")
	b.ReportMetric(float64(len(s.Sets)), "sets")
}

// benchKernelProgram programs tx per iteration (see benchKernelApply).
func benchKernelProgram(b *testing.B, tx *nft.Transaction, withFloor bool) {
	ns := nfttest.NewNetNS(b) // skips without CAP_NET_ADMIN
	k, err := nft.NewKernel(nft.WithNetNS(ns.FD), nft.WithTable("nftw-bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = k.Close() })
	ctx := context.Background()
	// apply programs tx and removes it again, and returns the CPU and wall
	// time of the Apply.
	apply := func(tx *nft.Transaction) (cpu, wall float64) {
		c0, t0 := cpuTime(), time.Now()
		if err := k.Apply(ctx, tx); err != nil {
			b.Fatalf("Apply: %v", err)
		}
		cpu, wall = float64(cpuTime()-c0), float64(time.Since(t0))
		if err := k.Cleanup(ctx); err != nil {
			b.Fatalf("Cleanup: %v", err)
		}
		return cpu, wall
	}
	var floor *nft.Transaction
	if withFloor {
		floor = elementsFloor()
	}
	var cpu, wall, floorCPU, floorWall []float64
	b.ResetTimer()
	for range b.N {
		if withFloor {
			b.StopTimer()
			c, w := apply(floor)
			floorCPU, floorWall = append(floorCPU, c), append(floorWall, w)
			b.StartTimer()
		}
		c, w := apply(tx)
		cpu, wall = append(cpu, c), append(wall, w)
	}
	b.StopTimer()
	b.ReportMetric(sum(cpu)/1e6/float64(b.N), "cpu-ms/op")
	if withFloor {
		b.ReportMetric(sum(floorCPU)/1e6/float64(b.N), "floor-cpu-ms/op")
		b.ReportMetric(nfttest.MedianRatio(floorCPU, cpu), "x-floor-cpu")
		b.ReportMetric(nfttest.MedianRatio(floorWall, wall), "x-floor-wall")
	}
}

func sum(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t
}
