package podwatch

// IP plan: fixture_test.go. The pod coming up is frontend/web on node-a
// (local) at 198.18.0.10 and 2001:db8:a::10, announced by its CNI result.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// The recorder's synchronous pod API: it records the call with the pod's
// labels and the addresses, and flushes as Flush does (a failed flush took
// time, as the engine's does).

func (r *recorder) StartPod(_ context.Context, p *enforcer.Pod, addrs []netip.Addr) (enforcer.FlushResult, error) {
	r.record("startpod", fmt.Sprintf("Pod/%s/%s %v %v", p.Namespace(), p.Name(), p.Labels(), addrs), nil)
	return r.podFlush()
}

func (r *recorder) StopPod(_ context.Context, namespace, name string, addrs []netip.Addr) (enforcer.FlushResult, error) {
	r.record("stoppod", fmt.Sprintf("Pod/%s/%s %v", namespace, name, addrs), nil)
	return r.podFlush()
}

func (r *recorder) podFlush() (enforcer.FlushResult, error) {
	res, err := r.sync("flush")
	if err != nil {
		res.Duration = time.Millisecond
	}
	return res, err
}

func (r *recorder) PodProgrammed(namespace, name string, addrs []netip.Addr) error {
	r.record("podprogrammed", fmt.Sprintf("Pod/%s/%s %v", namespace, name, addrs), nil)
	return nil
}

var webAddrs = []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("2001:db8:a::10")}

// newPod is the pod as the API server holds it before the kubelet writes
// its status: no IPs yet.
func newPod(uid string) *corev1.Pod {
	return pod("frontend", "web", localNode, nil, func(p *corev1.Pod) {
		p.UID = types.UID(uid)
		p.Status.Phase = corev1.PodPending
	})
}

// gets counts the GETs of pods the fake clientset answers.
func gets(h *harness) *atomic.Int32 {
	var n atomic.Int32
	h.client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		n.Add(1)
		return false, nil, nil
	})
	return &n
}

// startPod runs StartPod in the background and returns its result.
func startPod(h *harness, ctx context.Context, uid string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := h.w.StartPod(ctx, "frontend", "web", uid, webAddrs)
		done <- err
	}()
	return done
}

// podCalls are the recorder's calls of the synchronous pod API.
func podCalls(h *harness) []string {
	calls, _, _ := h.rec.snapshot()
	return slices.DeleteFunc(calls, func(c string) bool {
		return !strings.HasPrefix(c, "startpod ") && !strings.HasPrefix(c, "stoppod ") && !strings.HasPrefix(c, "podprogrammed ")
	})
}

const wantStart = "startpod Pod/frontend/web map[app:web] [198.18.0.10 2001:db8:a::10]"

func TestStartPodFindsThePod(t *testing.T) {
	tests := []struct {
		name string
		// cached is in the API server from the start; created (if not nil)
		// replaces it once the watches run.
		cached, created *corev1.Pod
		uid             string
		// hide keeps pods from the informer: only a GET finds them.
		hide     bool
		wantErr  error
		wantGets int32
	}{
		{name: "in the cache", cached: newPod("uid-1"), uid: "uid-1"},
		{name: "in the cache, no UID asked", cached: newPod("uid-1")},
		{name: "arrives after the call", created: newPod("uid-1"), uid: "uid-1"},
		{name: "cache has the old pod of that name, the new one arrives", cached: newPod("uid-old"), created: newPod("uid-1"), uid: "uid-1"},
		{name: "only through a GET", cached: newPod("uid-1"), uid: "uid-1", hide: true, wantGets: 1},
		{name: "cache and API have another pod of that name", cached: newPod("uid-old"), uid: "uid-1", wantErr: ErrPodNotFound, wantGets: 1},
		{name: "nowhere", uid: "uid-1", wantErr: ErrPodNotFound, wantGets: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{namespace("frontend")}
			if tc.cached != nil {
				objs = append(objs, tc.cached)
			}
			// PodWait leaves a loaded machine's informer time to deliver a pod
			// created 50 ms into it (the cases expecting no GET).
			h := startHarness(t, Options{PodWait: time.Second}, objs...)
			if tc.hide {
				h.client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, &corev1.PodList{}, nil
				})
				h.client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
					h.watches.Add(1)
					return true, watch.NewFake(), nil
				})
			}
			getCount := gets(h)
			h.run(t)
			h.waitReady(t)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := startPod(h, ctx, tc.uid)
			if tc.created != nil {
				// StartPod is waiting (the cache has no pod of that UID).
				time.Sleep(50 * time.Millisecond)
				if tc.cached != nil {
					if err := h.client.CoreV1().Pods("frontend").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := h.client.CoreV1().Pods("frontend").Create(ctx, tc.created, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			err := <-done
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("StartPod = %v, want %v", err, tc.wantErr)
			}
			if got := getCount.Load(); got != tc.wantGets {
				t.Errorf("%d GETs, want %d", got, tc.wantGets)
			}
			want := []string{wantStart}
			if tc.wantErr != nil {
				want = nil
			}
			if got := podCalls(h); !slices.Equal(got, want) {
				t.Errorf("engine pod calls %q, want %q", got, want)
			}
		})
	}
}

// TestStartPodNewPodNotMissed starts many StartPods for one pod while the
// informer delivers it: each finds it without a GET (a delivery between a
// waiter's cache read and its wait would leave it waiting for PodWait).
func TestStartPodNewPodNotMissed(t *testing.T) {
	h := startHarness(t, Options{PodWait: time.Minute}, namespace("frontend"))
	getCount := gets(h)
	h.run(t)
	h.waitReady(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var dones []<-chan error
	for range 20 {
		dones = append(dones, startPod(h, ctx, "uid-1"))
	}
	if _, err := h.client.CoreV1().Pods("frontend").Create(ctx, newPod("uid-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, done := range dones {
		if err := <-done; err != nil {
			t.Fatalf("StartPod: %v", err)
		}
	}
	if n := getCount.Load(); n != 0 {
		t.Errorf("%d GETs, want none", n)
	}
	if n := h.w.podWaiters.waiting.Load(); n != 0 {
		t.Errorf("%d waiters left registered", n)
	}
}

func TestStartPodWaitsForReady(t *testing.T) {
	h := startHarness(t, Options{}, namespace("frontend"), newPod("uid-1"))
	h.rec.setFail(1000) // the first reconcile fails and is retried: never ready
	h.run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := h.w.StartPod(ctx, "frontend", "web", "uid-1", webAddrs); !errors.Is(err, ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("StartPod before ready = %v, want ErrNotReady and the deadline", err)
	}
	if _, err := h.w.StopPod(ctx, "frontend", "web", nil); !errors.Is(err, ErrNotReady) {
		t.Errorf("StopPod before ready = %v, want ErrNotReady", err)
	}
	if err := h.w.PodProgrammed("frontend", "web", webAddrs); !errors.Is(err, ErrNotReady) {
		t.Errorf("PodProgrammed before ready = %v, want ErrNotReady", err)
	}
	if got := podCalls(h); len(got) != 0 {
		t.Errorf("the engine got pod calls before ready: %q", got)
	}

	// Once ready, a waiting StartPod goes on.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := startPod(h, ctx, "uid-1")
	time.Sleep(50 * time.Millisecond)
	h.rec.setFail(0)
	if err := <-done; err != nil {
		t.Fatalf("StartPod once ready: %v", err)
	}
}

// TestPodCallsReportTheirFlush: StartPod and StopPod report the engine's
// flush to Hooks.Flushed; a failed one also makes the worker flush again.
func TestPodCallsReportTheirFlush(t *testing.T) {
	var flushed, failed atomic.Int32
	h := startHarness(t, Options{Hooks: Hooks{Flushed: func(_ enforcer.FlushResult, err error) {
		flushed.Add(1)
		if err != nil {
			failed.Add(1)
		}
	}}}, namespace("frontend"), newPod("uid-1"))
	h.run(t)
	h.waitReady(t)
	before := flushed.Load()
	ctx := context.Background()
	if _, err := h.w.StartPod(ctx, "frontend", "web", "uid-1", webAddrs); err != nil {
		t.Fatal(err)
	}
	if _, err := h.w.StopPod(ctx, "frontend", "web", webAddrs[:1]); err != nil {
		t.Fatal(err)
	}
	want := []string{wantStart, "stoppod Pod/frontend/web [198.18.0.10]"}
	if got := podCalls(h); !slices.Equal(got, want) {
		t.Errorf("engine pod calls %q, want %q", got, want)
	}
	if n := flushed.Load() - before; n != 2 {
		t.Errorf("Flushed called %d times, want 2", n)
	}
	if err := h.w.PodProgrammed("frontend", "web", webAddrs); err != nil {
		t.Errorf("PodProgrammed: %v", err)
	}

	_, flushes, _ := h.rec.snapshot()
	h.rec.setFail(1)
	if _, err := h.w.StartPod(ctx, "frontend", "web", "uid-1", webAddrs); !errors.Is(err, ErrFlushFailed) {
		t.Fatalf("StartPod with a failing flush = %v, want ErrFlushFailed", err)
	}
	eventually(t, "the worker's retry", func() bool {
		_, n, _ := h.rec.snapshot()
		return n >= flushes+2 && failed.Load() == 1
	})
}

// TestCompactPodSize: the compact pod stays in the 48-byte size class of
// Go's allocator (its name and namespace are the engine pod's).
func TestCompactPodSize(t *testing.T) {
	if n := unsafe.Sizeof(compactPod{}); n > 48 {
		t.Errorf("compactPod is %d bytes, want at most 48", n)
	}
}

// TestStartPodRealEngine runs StartPods of ten new pods at once against the
// real engine over nft.Fake: each returns with its address in the dispatch
// map, and Hooks.Flushed hears of each kernel batch once, although the
// engine hands a shared batch's result to every StartPod it carried.
func TestStartPodRealEngine(t *testing.T) {
	const n = 10
	objs := []runtime.Object{namespace("backend"), ingressPolicy("backend", "allow-web", "api", "web", 8080)}
	for i := range n {
		objs = append(objs, pod("backend", fmt.Sprintf("api-%d", i), localNode, nil, func(p *corev1.Pod) {
			p.Labels["app"] = "api"
			p.Status.Phase = corev1.PodPending
		}))
	}
	dp := nft.NewFake(nft.DefaultTable)
	eng, err := enforcer.New(enforcer.Config{NodeName: localNode, Dataplane: dp, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var reported atomic.Int32
	w := New(fake.NewClientset(objs...), eng, Options{Logger: testLogger(t), ResyncPeriod: -1,
		Hooks: Hooks{Flushed: func(_ enforcer.FlushResult, err error) {
			if err == nil {
				reported.Add(1)
			}
		}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, "ready", w.Ready)
	time.Sleep(100 * time.Millisecond) // the worker idle
	dp.ResetHistory()
	reported.Store(0)

	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := w.StartPod(ctx, "backend", fmt.Sprintf("api-%d", i), "", []netip.Addr{netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", 30+i))})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("StartPod: %v", err)
		}
	}
	st, err := dp.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if addr := fmt.Sprintf("198.18.0.%d", 30+i); !hasVmap(holders(st, addr), "ingress-v4") {
			t.Errorf("%s not in the ingress-v4 dispatch map after its StartPod returned", addr)
		}
	}
	batches := len(dp.Transactions())
	t.Logf("%d StartPods in %d kernel batches", n, batches)
	if got := int(reported.Load()); got != batches {
		t.Errorf("Hooks.Flushed reported %d batches, the dataplane got %d", got, batches)
	}
}

// TestReportFlushedOncePerBatch: a batch's result reported by several
// callers reaches Hooks.Flushed once, also when a caller reports it after a
// later batch was reported; failures and unnumbered results always do.
func TestReportFlushedOncePerBatch(t *testing.T) {
	var got []uint64
	w := &Watcher{opts: Options{Hooks: Hooks{Flushed: func(res enforcer.FlushResult, err error) {
		if err != nil {
			got = append(got, 999)
			return
		}
		got = append(got, res.Batch)
	}}}}
	for _, r := range []struct {
		batch uint64
		err   error
	}{
		{1, nil}, {1, nil}, // two StartPods carried by batch 1
		{2, nil}, {3, nil}, {2, nil}, // a StartPod of batch 2 reports after the worker's batch 3
		{0, nil}, {0, nil}, // unnumbered: each reported
		{0, errors.New("apply failed")},
		{4, nil},
	} {
		w.reportFlushed(enforcer.FlushResult{Batch: r.batch}, r.err)
	}
	if want := []uint64{1, 2, 3, 0, 0, 999, 4}; !slices.Equal(got, want) {
		t.Errorf("reported batches %v, want %v", got, want)
	}
}
