package enforcer_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
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
// more than between two batches a moment apart. user-ms/op and
// floor-user-ms/op are the user-mode part of the CPU. With
// NFTW_PERF_LOAD=node (or floor) and NFTW_PERF_CTL, a profiler records
// only the loads of the node (or of the floor):
//
//	mkfifo /tmp/ctl /tmp/ack
//	NFTW_PERF_LOAD=node NFTW_PERF_CTL=/tmp/ctl,/tmp/ack perf record -a -g -e cpu-clock \
//	    --control fifo:/tmp/ctl,/tmp/ack -D -1 -- ./enforcer.test -test.run '^$' \
//	    -test.bench 'KernelEngineProgram/pods=100000' -test.benchtime 5x
//
// Needs CAP_NET_ADMIN.
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
	set := &nft.Set{Name: "floor", Key: []nft.KeyType{nft.TypeIPv4Addr}}
	base := binary.BigEndian.Uint32(netip.MustParseAddr("198.18.0.0").AsSlice())
	for i := range floorElements {
		e := nft.Element{Key: []nft.Value{binary.BigEndian.AppendUint32(nil, base+uint32(i))}}
		set.PutElements(e)
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
		n += set.Elements.Len()
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
	// apply programs tx and removes it again, and returns the CPU time, the
	// part of it in user mode (nftwarden, the Go runtime) and the wall time
	// of the Apply. NFTW_PERF_CTL (nfttest.PerfWindow) with
	// NFTW_PERF_LOAD=floor or node opens a profiler's window around each
	// load of that one.
	apply := func(tx *nft.Transaction, name string) (cpu, user, wall float64) {
		perfCtl := ""
		if name == os.Getenv("NFTW_PERF_LOAD") {
			perfCtl = os.Getenv("NFTW_PERF_CTL")
		}
		window := nfttest.PerfWindow(b, perfCtl)
		u0, s0 := cpuTimes()
		t0 := time.Now()
		if err := k.Apply(ctx, tx); err != nil {
			b.Fatalf("Apply: %v", err)
		}
		wall = float64(time.Since(t0))
		u1, s1 := cpuTimes()
		window.Close()
		cpu, user = float64(u1+s1-u0-s0), float64(u1-u0)
		if err := k.Cleanup(ctx); err != nil {
			b.Fatalf("Cleanup: %v", err)
		}
		return cpu, user, wall
	}
	var floor *nft.Transaction
	if withFloor {
		floor = elementsFloor()
	}
	var cpu, user, wall, floorCPU, floorUser, floorWall []float64
	b.ResetTimer()
	for range b.N {
		if withFloor {
			b.StopTimer()
			c, u, w := apply(floor, "floor")
			floorCPU, floorUser, floorWall = append(floorCPU, c), append(floorUser, u), append(floorWall, w)
			b.StartTimer()
		}
		c, u, w := apply(tx, "node")
		cpu, user, wall = append(cpu, c), append(user, u), append(wall, w)
	}
	b.StopTimer()
	b.ReportMetric(sum(cpu)/1e6/float64(b.N), "cpu-ms/op")
	b.ReportMetric(sum(user)/1e6/float64(b.N), "user-ms/op")
	if withFloor {
		b.ReportMetric(sum(floorCPU)/1e6/float64(b.N), "floor-cpu-ms/op")
		b.ReportMetric(sum(floorUser)/1e6/float64(b.N), "floor-user-ms/op")
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
