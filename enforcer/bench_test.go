package enforcer_test

// IP plan of the generated clusters: pod k has 198.18.0.0 + k + 1 (all of
// 198.18.0.0/15 holds 131,072 addresses) and every fourth pod also
// 2001:db8:100::<k+1>; ipBlock peers use 198.19.0.0/16 and 2001:db8:ff::/48.

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// discardDataplane accepts every transaction without keeping it, so that the
// benchmarks measure the engine (model, compiler and diff) and not a dataplane.
// With trusted set it claims nobody else touched the table (nft.TamperEvident).
type discardDataplane struct {
	ops     int
	trusted bool
}

func (d *discardDataplane) Untouched() bool { return d.trusted }

func (d *discardDataplane) Apply(_ context.Context, tx *nft.Transaction) error {
	d.ops += tx.Size()
	return nil
}
func (d *discardDataplane) Reconcile(_ context.Context, desired *nft.State) (*nft.Transaction, error) {
	return nft.Diff(nil, desired, nil), nil
}
func (d *discardDataplane) Read(context.Context) (*nft.State, error) { return nil, nft.ErrNotFound }
func (d *discardDataplane) Cleanup(context.Context) error            { return nil }

// genCluster is a synthetic cluster: pods/100 namespaces, pods/200 nodes,
// pods/10 policies (ten per namespace, a mix of pod selectors, namespace
// selectors, ipBlocks, named ports and port ranges).
// Pods are generated on the fly so that the fixture does not sit in the heap
// (it would inflate both the GC work and the heap figure).
type genCluster struct {
	namespaces []*corev1.Namespace
	pods       int
	policies   []*networkingv1.NetworkPolicy
	nodes      int
	// experimental builds engines with the experimental channel of
	// ClusterNetworkPolicy (tiers_exp_bench_test.go).
	experimental bool
	// cfg is the rest of the engines' configuration (the log and counters).
	cfg enforcer.Config
}

// pod k lives in namespace k/100: the generator lists pods by namespace, as
// an informer's initial list does (etcd returns them sorted by key).
func (g *genCluster) pod(k int) *corev1.Pod {
	return benchPod(k, min(k/100, len(g.namespaces)-1), g.nodes)
}

func benchAddr4(k int) string {
	a := netip.MustParseAddr("198.18.0.0").As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(k) + 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

func benchPod(k, nsIdx, nodes int, extraLabels ...string) *corev1.Pod {
	ips := []string{benchAddr4(k)}
	if k%4 == 0 {
		ips = append(ips, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 13: byte((k + 1) >> 16), 14: byte((k + 1) >> 8), 15: byte(k + 1)}).String())
	}
	kv := append([]string{"app", fmt.Sprintf("a%d", k%10), "role", fmt.Sprintf("r%d", k%3)}, extraLabels...)
	tweaks := []podTweak{podLabels(kv...), onNode(fmt.Sprintf("node-%03d", int(uint32(k)*2654435761>>8)%nodes)), podIPs(ips...), containerPort("http", TCP, 8080)}
	if k%10 == 0 {
		tweaks = append(tweaks, initPort("metrics", 9090, true))
	}
	return mkPod(fmt.Sprintf("ns-%04d", nsIdx), fmt.Sprintf("pod-%06d", k), tweaks...)
}

func benchPolicy(nsIdx, j, namespaces int) *networkingv1.NetworkPolicy {
	ns := fmt.Sprintf("ns-%04d", nsIdx)
	name := fmt.Sprintf("pol-%02d", j)
	app := func(i int) metav1.LabelSelector { return sel("app", fmt.Sprintf("a%d", i%10)) }
	switch j % 10 {
	case 0:
		return mkPolicy(ns, name) // default deny ingress
	case 1:
		return mkPolicy(ns, name, selecting(app(nsIdx)), ingress(peers(podPeer(app(nsIdx+1))), tcp(80)))
	case 2:
		return mkPolicy(ns, name, selecting(app(nsIdx+2)), ingress(peers(nsPodPeer(sel("env", "prod"), sel("role", "r0"))), namedPort(TCP, "http")))
	case 3:
		return mkPolicy(ns, name, selecting(app(nsIdx+3)), ingress(peers(ipBlock("198.19.0.0/16", "198.19.1.0/24")), tcp(443)))
	case 4:
		return mkPolicy(ns, name, selecting(app(nsIdx+4)), types(networkingv1.PolicyTypeEgress),
			egress(peers(nsPeer(sel("team", fmt.Sprintf("t%d", nsIdx%50)))), portRange(TCP, 8000, 8080)))
	case 5:
		return mkPolicy(ns, name, selecting(app(nsIdx+5)), types(networkingv1.PolicyTypeEgress),
			egress(peers(podPeer(app(nsIdx+6))), namedPort(TCP, "http")), egress(nil, port(UDP, 53)))
	case 6:
		return mkPolicy(ns, name, selecting(app(nsIdx+6)),
			ingress(peers(nsPeer(sel("kubernetes.io/metadata.name", fmt.Sprintf("ns-%04d", (nsIdx+1)%namespaces))))))
	case 7:
		return mkPolicy(ns, name, selecting(expr("app", metav1.LabelSelectorOpIn, "a7", "a8")),
			ingress(peers(podPeer(expr("role", metav1.LabelSelectorOpNotIn, "r2"))), tcp(80), tcp(8080), namedPort(TCP, "metrics")))
	case 8:
		return mkPolicy(ns, name, selecting(app(nsIdx+8)), types(networkingv1.PolicyTypeEgress),
			egress(peers(ipBlock("2001:db8:ff::/48")), port(UDP, 53)), egress(peers(nsPodPeer(sel("env", "dev"), sel("role", "r1")))))
	}
	return mkPolicy(ns, name, selecting(app(nsIdx+9)), ingress(peers(podPeer(sel()))))
}

func newGenCluster(pods int) *genCluster {
	g := &genCluster{nodes: max(1, pods/200)}
	nss := max(1, pods/100)
	for i := range nss {
		g.namespaces = append(g.namespaces, mkNamespace(fmt.Sprintf("ns-%04d", i),
			"env", []string{"prod", "dev", "staging", "test"}[i%4], "team", fmt.Sprintf("t%d", i%50)))
	}
	g.pods = pods
	for i := range nss {
		for j := range 10 {
			g.policies = append(g.policies, benchPolicy(i, j, nss))
		}
	}
	return g
}

// meter pauses the benchmark timer and the CPU clock while the fixture is
// generated, so that the figures are the engine's.
type meter struct {
	b   *testing.B
	cpu time.Duration
	t0  time.Duration
	// bytes and objects are what the measured parts allocated: unlike the
	// CPU time they do not depend on the machine or its load, and, as the
	// collector's work follows the allocation, they tell a small change of
	// the engine's cost from the noise (±15% between runs here).
	bytes, objects uint64
	a0             [2]metrics.Sample
}

// allocSamples are the runtime's cumulative counts of heap allocation.
func allocSamples() [2]metrics.Sample {
	s := [2]metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s[:])
	return s
}

func (m *meter) start() {
	if m != nil {
		m.b.StartTimer()
		m.a0 = allocSamples()
		m.t0 = cpuTime()
	}
}

func (m *meter) stop() {
	if m != nil {
		m.cpu += cpuTime() - m.t0
		a := allocSamples()
		m.bytes += a[0].Value.Uint64() - m.a0[0].Value.Uint64()
		m.objects += a[1].Value.Uint64() - m.a0[1].Value.Uint64()
		m.b.StopTimer()
	}
}

// build feeds the cluster into a new engine and flushes it. Pods are generated
// in chunks with the meter (if any) paused.
func (g *genCluster) build(tb testing.TB, m *meter) (*enforcer.Engine, *discardDataplane) {
	dp := &discardDataplane{}
	return g.buildOn(tb, m, dp), dp
}

// buildOn is build onto the dataplane dp.
func (g *genCluster) buildOn(tb testing.TB, m *meter, dp nft.Dataplane) *enforcer.Engine {
	m.start()
	cfg := g.cfg
	cfg.NodeName, cfg.Dataplane, cfg.Logger, cfg.ClusterNetworkPolicyExperimental = "node-000", dp, quietLogger, g.experimental
	e, err := enforcer.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ns := range g.namespaces {
		if err := e.UpsertNamespace(ns); err != nil {
			tb.Fatal(err)
		}
	}
	const chunk = 2000
	pods := make([]*corev1.Pod, 0, chunk)
	for k0 := 0; k0 < g.pods; k0 += chunk {
		m.stop()
		pods = pods[:0]
		for k := k0; k < min(k0+chunk, g.pods); k++ {
			pods = append(pods, g.pod(k))
		}
		m.start()
		for _, p := range pods {
			if err := e.UpsertPod(p); err != nil {
				tb.Fatal(err)
			}
		}
	}
	for _, np := range g.policies {
		if err := e.UpsertNetworkPolicy(np); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := e.Flush(context.Background()); err != nil {
		tb.Fatal(err)
	}
	m.stop()
	return e
}

var benchSizes = []int{1_000, 10_000, 100_000}

// BenchmarkEngineFullBuild: a new engine fed the whole cluster, then the first
// (full) Flush. Reports the live heap after the build and the CPU time (on a
// shared machine the wall clock includes waiting for a core).
func BenchmarkEngineFullBuild(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			g := newGenCluster(n)
			var e *enforcer.Engine
			m := &meter{b: b}
			n := 0
			b.ResetTimer()
			for range b.N {
				e, _ = g.build(b, m)
				n++
			}
			b.StopTimer()
			b.ReportMetric(float64(m.cpu.Nanoseconds())/float64(n), "cpu-ns/op")
			b.ReportMetric(float64(m.bytes)/float64(n), "engine-B/op")
			b.ReportMetric(float64(m.objects)/float64(n), "engine-allocs/op")
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			st := e.Stats()
			b.ReportMetric(float64(ms.HeapAlloc), "heap-bytes")
			b.ReportMetric(float64(st.Elements), "elements")
			b.ReportMetric(float64(st.Chains), "chains")
			b.ReportMetric(float64(st.Sets), "sets")
			runtime.KeepAlive(g)
		})
	}
}

// benchDelta builds the cluster once and measures one change plus its Flush.
func benchDelta(b *testing.B, change func(e *enforcer.Engine, g *genCluster, i int)) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			g := newGenCluster(n)
			e, dp := g.build(b, nil)
			measureDelta(b, e, dp, func(i int) { change(e, g, i) })
		})
	}
}

// measureDelta measures change(i) plus its Flush, for i = 0, 1, ...
func measureDelta(b *testing.B, e *enforcer.Engine, dp *discardDataplane, change func(i int)) {
	ctx := context.Background()
	i := 0
	var worst time.Duration
	dp.ops = 0
	// The build's garbage is collected before the clock starts: a cycle
	// marking the whole cluster (~100 ms of CPU) would otherwise land in
	// the measured changes or not, by chance, and be a thousand of them.
	runtime.GC()
	cpu0 := cpuTime()
	for b.Loop() {
		start := time.Now()
		change(i)
		if _, err := e.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(start))
		i++
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(i), "cpu-ns/op")
	b.ReportMetric(float64(dp.ops)/float64(i), "nft-ops/op")
	b.ReportMetric(float64(worst.Nanoseconds()), "worst-ns")
}

// BenchmarkEngineResyncTrusted: the periodic Reconcile when the dataplane
// proves nobody else changed the table: the engine's record is exact, so it
// costs what an empty Flush costs instead of a read of the kernel.
func BenchmarkEngineResyncTrusted(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			e, dp := newGenCluster(n).build(b, nil)
			dp.trusted = true
			ctx := context.Background()
			cpu0 := cpuTime()
			i := 0
			for b.Loop() {
				res, err := e.Reconcile(ctx)
				if err != nil || res.ReadDataplane || res.Operations != 0 {
					b.Fatalf("trusted resync: %+v, %v", res, err)
				}
				i++
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(i), "cpu-ns/op")
		})
	}
}

// BenchmarkEngineDeltaPodLabel flips the labels of a local pod between two
// values that change which selectors and policies match it.
func BenchmarkEngineDeltaPodLabel(b *testing.B) {
	benchDelta(b, func(e *enforcer.Engine, g *genCluster, i int) {
		p := g.pod(0) // pod 0 is on node-000
		if i%2 == 0 {
			p.Labels["app"] = "a1"
			p.Labels["role"] = "r1"
		}
		if err := e.UpsertPod(p); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkEngineDeltaPodAdd adds a new pod to a namespace that has local
// pods, alternating between this node and others.
func BenchmarkEngineDeltaPodAdd(b *testing.B) {
	benchDelta(b, func(e *enforcer.Engine, g *genCluster, i int) {
		k := g.pods + i
		if err := e.UpsertPod(benchPod(k, (i*37)%len(g.namespaces), g.nodes)); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkEngineDeltaPolicyAdd adds a new policy, cycling through the kinds.
func BenchmarkEngineDeltaPolicyAdd(b *testing.B) {
	benchDelta(b, func(e *enforcer.Engine, g *genCluster, i int) {
		np := benchPolicy(i%len(g.namespaces), 10+i, len(g.namespaces))
		if err := e.UpsertNetworkPolicy(np); err != nil {
			b.Fatal(err)
		}
	})
}

// cpuTime is the CPU time of the process: on a shared machine it tells more
// than the wall clock.
func cpuTime() time.Duration {
	user, system := cpuTimes()
	return user + system
}

// cpuTimes is the process's CPU time in user and in kernel mode (the kernel
// splits its exact total in the proportion of the timer ticks that found it
// in each, so the split is an estimate).
func cpuTimes() (user, system time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
