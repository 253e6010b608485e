package podwatch

// BenchmarkMemoryPerPod loads the workload of integration/cmd/memload (the
// end-to-end daemon memory benchmark) in process: package podwatchtest.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/podwatch/podwatchtest"
)

const memNode = "bench-node-000"

// -heapprofile writes a heap profile while the cache and the engine of
// BenchmarkMemoryPerPod are live (go test's -memprofile is written after
// they are gone); run it with -memprofilerate=512 or lower for detail.
var heapProfile = flag.String("heapprofile", "", "BenchmarkMemoryPerPod: write a heap profile with the pods loaded to this file")

// memPod is the i-th pod of memload as a watch delivers it: with the
// resourceVersion and UID the API server sets, and its status.
func memPod(i int, created metav1.Time) *corev1.Pod {
	p := podwatchtest.Pod(podwatchtest.NamespaceName(i/100), i, fmt.Sprintf("bench-node-%03d", i%500))
	p.UID = types.UID(fmt.Sprintf("6f1c2a9e-0000-4000-8000-%012d", i))
	p.ResourceVersion = fmt.Sprint(100000 + i)
	p.CreationTimestamp = created
	p.Status = podwatchtest.PodStatus(i, created)
	return p
}

// discardDataplane accepts every transaction and keeps nothing: the kernel's
// copy of the table is not the daemon's memory.
type discardDataplane struct{}

func (discardDataplane) Apply(context.Context, *nft.Transaction) error { return nil }
func (discardDataplane) Reconcile(_ context.Context, want *nft.State) (*nft.Transaction, error) {
	return nft.Diff(nft.NewState(), want, nil), nil
}
func (discardDataplane) Read(context.Context) (*nft.State, error) { return nft.NewState(), nil }
func (discardDataplane) Cleanup(context.Context) error            { return nil }

// BenchmarkMemoryPerPod measures the live heap per pod of the daemon's two
// holders of pods: the pod informer cache (JSON-decoded pods, transformed, in an
// indexer like the informer's) and the engine (model and compiled state after a
// full reconcile), with namespaces and policies loaded first and not counted.
// It is the in-process counterpart of scripts/bench-daemon-memory.sh. The
// engine keeps the pods the cache holds (enforcer.Pod) rather than copies, so
// the pods themselves count in cache-B/pod; engine-B/pod is its indexes and
// compiled state.
func BenchmarkMemoryPerPod(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			var cachePer, enginePer float64
			for b.Loop() {
				eng, err := enforcer.New(enforcer.Config{NodeName: memNode, Dataplane: discardDataplane{}})
				if err != nil {
					b.Fatal(err)
				}
				nns := (n + 99) / 100
				for i := range nns {
					ns := podwatchtest.Namespace(i)
					if err := eng.UpsertNamespace(ns); err != nil {
						b.Fatal(err)
					}
					for k := range 10 {
						if err := eng.UpsertNetworkPolicy(podwatchtest.Policy(ns.Name, k)); err != nil {
							b.Fatal(err)
						}
					}
				}
				if _, err := eng.Reconcile(context.Background()); err != nil {
					b.Fatal(err)
				}
				// As the watcher's pod informer: no index but the key.
				store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
				created := metav1.Now()
				before := heapInUse()
				for i := range n {
					raw, err := json.Marshal(memPod(i, created))
					if err != nil {
						b.Fatal(err)
					}
					p := &corev1.Pod{}
					if err := json.Unmarshal(raw, p); err != nil {
						b.Fatal(err)
					}
					obj, _ := Transform(p)
					if err := store.Add(obj); err != nil {
						b.Fatal(err)
					}
				}
				cached := heapInUse()
				for _, obj := range store.List() {
					if err := eng.UpsertParsedPod(obj.(*compactPod).pod); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := eng.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
				after := heapInUse()
				if *heapProfile != "" {
					if err := writeHeapProfile(*heapProfile); err != nil {
						b.Fatal(err)
					}
				}
				cachePer = float64(int64(cached)-int64(before)) / float64(n)
				enginePer = float64(int64(after)-int64(cached)) / float64(n)
				if st := eng.Stats(); st.Pods != n {
					b.Fatalf("engine knows %d pods, want %d", st.Pods, n)
				}
				runtime.KeepAlive(store)
				runtime.KeepAlive(eng)
			}
			b.ReportMetric(cachePer, "cache-B/pod")
			b.ReportMetric(enginePer, "engine-B/pod")
			b.ReportMetric(cachePer+enginePer, "B/pod")
		})
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("heap profile %s: %w", path, err)
	}
	return f.Close()
}
