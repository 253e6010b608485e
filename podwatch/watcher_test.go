package podwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
)

// recorder is an engine that records the calls it gets, in order, and keeps the
// last upserted version of every object.
type recorder struct {
	mu         sync.Mutex
	calls      []string
	objects    map[string]any
	flushes    int
	reconciles int
	failFlush  int           // number of next Flush/Reconcile calls to fail
	block      chan struct{} // when set, Flush waits for it to close
}

func newRecorder() *recorder { return &recorder{objects: map[string]any{}} }

func (r *recorder) record(call string, k string, obj any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call+" "+k)
	if obj == nil {
		delete(r.objects, k)
	} else {
		r.objects[k] = obj
	}
}

func (r *recorder) UpsertNamespace(ns *corev1.Namespace) error {
	r.record("upsert", "Namespace/"+ns.Name, ns)
	return nil
}
func (r *recorder) DeleteNamespace(name string) { r.record("delete", "Namespace/"+name, nil) }
func (r *recorder) UpsertParsedPod(p *enforcer.Pod) error {
	r.record("upsert", "Pod/"+p.Namespace()+"/"+p.Name(), p)
	return nil
}
func (r *recorder) DeletePod(ns, name string) { r.record("delete", "Pod/"+ns+"/"+name, nil) }
func (r *recorder) UpsertNetworkPolicy(np *networkingv1.NetworkPolicy) error {
	r.record("upsert", "NetworkPolicy/"+np.Namespace+"/"+np.Name, np)
	if np.Spec.PolicyTypes == nil {
		return errors.New("test: policy without policyTypes rejected")
	}
	return nil
}
func (r *recorder) DeleteNetworkPolicy(ns, name string) {
	r.record("delete", "NetworkPolicy/"+ns+"/"+name, nil)
}
func (r *recorder) UpsertClusterNetworkPolicy(cnp *v1beta1.ClusterNetworkPolicy) error {
	r.record("upsert", "ClusterNetworkPolicy/"+cnp.Name, cnp)
	return nil
}
func (r *recorder) DeleteClusterNetworkPolicy(name string) {
	r.record("delete", "ClusterNetworkPolicy/"+name, nil)
}
func (r *recorder) UpsertNode(n *corev1.Node) error {
	r.record("upsert", "Node/"+n.Name, n)
	return nil
}
func (r *recorder) DeleteNode(name string) { r.record("delete", "Node/"+name, nil) }

func (r *recorder) sync(kind string) (enforcer.FlushResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, kind)
	if kind == "flush" {
		r.flushes++
	} else {
		r.reconciles++
	}
	if r.failFlush > 0 {
		r.failFlush--
		return enforcer.FlushResult{}, errors.New("test: netlink said no")
	}
	// Each batch takes its own time, as the engine's do (podwatch reports a
	// result equal to the last one reported once: reportFlushed).
	return enforcer.FlushResult{Full: kind == "reconcile", Operations: 1, Duration: time.Duration(r.flushes+r.reconciles) * time.Millisecond}, nil
}
func (r *recorder) Flush(ctx context.Context) (enforcer.FlushResult, error) {
	r.mu.Lock()
	block := r.block
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
		}
	}
	return r.sync("flush")
}
func (r *recorder) Reconcile(context.Context) (enforcer.FlushResult, error) {
	return r.sync("reconcile")
}

func (r *recorder) snapshot() (calls []string, flushes, reconciles int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls), r.flushes, r.reconciles
}

func (r *recorder) object(k string) any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.objects[k]
}

func (r *recorder) setFail(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failFlush = n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// harness runs a Watcher over a fake clientset and a recorder.
type harness struct {
	client  *fake.Clientset
	rec     *recorder
	w       *Watcher
	watches atomic.Int32 // established watches (3 once every informer watches)
	done    chan error
}

func startHarness(t *testing.T, opts Options, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{client: fake.NewClientset(objs...), rec: newRecorder(), done: make(chan error, 1)}
	// The fake clientset does not replay changes made between a list and the
	// watch that follows it; tests change objects only once all watches exist.
	h.client.PrependWatchReactor("*", func(k8stesting.Action) (bool, watch.Interface, error) {
		h.watches.Add(1)
		return false, nil, nil
	})
	opts.Logger = testLogger(t)
	h.w = newWatcher(h.client, h.rec, opts)
	return h
}

func (h *harness) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- h.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func (h *harness) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, "ready", h.w.Ready)
	eventually(t, "three watches", func() bool { return h.watches.Load() >= 3 })
}

func TestInitialSyncIsOneFullReconcile(t *testing.T) {
	h := startHarness(t, Options{},
		namespace("frontend"), namespace("backend"),
		pod("frontend", "web", localNode, []string{"198.18.0.10"}),
		pod("backend", "api", remoteNode, []string{"198.18.1.20", "2001:db8:b::20"}),
		ingressPolicy("backend", "allow-web", "api", "web", 8080),
	)
	h.run(t)
	h.waitReady(t)

	calls, flushes, reconciles := h.rec.snapshot()
	want := []string{
		"upsert Namespace/backend", "upsert Namespace/frontend",
		"upsert Pod/backend/api", "upsert Pod/frontend/web",
		"upsert NetworkPolicy/backend/allow-web",
		"reconcile",
	}
	if !slices.Equal(calls, want) {
		t.Errorf("calls = %q, want %q", calls, want)
	}
	if flushes != 0 || reconciles != 1 {
		t.Errorf("flushes, reconciles = %d, %d, want 0, 1", flushes, reconciles)
	}
}

// TestNothingBeforeSync holds the NetworkPolicy list back: while it is pending the
// engine must get neither objects nor a flush, and Ready stays false.
func TestNothingBeforeSync(t *testing.T) {
	release := make(chan struct{})
	h := startHarness(t, Options{SyncLogInterval: 50 * time.Millisecond},
		namespace("frontend"), pod("frontend", "web", localNode, []string{"198.18.0.10"}))
	var synced, readyHook atomic.Bool
	h.w.opts.Hooks.Synced = func() { synced.Store(true) }
	h.w.opts.Hooks.Ready = func() { readyHook.Store(true) }
	h.client.PrependReactor("list", "networkpolicies", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-release
		return false, nil, nil
	})
	h.run(t)

	time.Sleep(300 * time.Millisecond)
	if calls, _, _ := h.rec.snapshot(); len(calls) != 0 {
		t.Fatalf("engine was called before the informers synced: %q", calls)
	}
	if h.w.Ready() || synced.Load() {
		t.Fatal("ready before the informers synced")
	}
	close(release)
	h.waitReady(t)
	if !synced.Load() || !readyHook.Load() {
		t.Errorf("hooks called: Synced %v, Ready %v; want both", synced.Load(), readyHook.Load())
	}
	calls, _, _ := h.rec.snapshot()
	if calls[len(calls)-1] != "reconcile" || slices.Contains(calls, "flush") {
		t.Errorf("first programming is not one full reconcile: %q", calls)
	}
}

func TestBurstCoalesces(t *testing.T) {
	var events atomic.Int32
	var flushed atomic.Int32
	const interval = 500 * time.Millisecond
	// No periodic reconcile: on a loaded machine the burst can outlast
	// DefaultResyncPeriod, and a reconcile calls Flushed too.
	opts := Options{MinFlushInterval: interval, ResyncPeriod: -1, Hooks: Hooks{
		Event:   func(Kind) { events.Add(1) },
		Flushed: func(enforcer.FlushResult, error) { flushed.Add(1) },
	}}
	p := pod("frontend", "web", localNode, []string{"198.18.0.10"})
	h := startHarness(t, opts, namespace("frontend"), p)
	h.run(t)
	h.waitReady(t)

	ctx := context.Background()
	const updates = 1000
	start := time.Now()
	for i := range updates {
		p.Labels["rev"] = fmt.Sprint(i)
		if _, err := h.client.CoreV1().Pods("frontend").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := fmt.Sprint(updates - 1)
	eventually(t, "last update applied", func() bool {
		o, _ := h.rec.object("Pod/frontend/web").(*enforcer.Pod)
		return o != nil && o.Labels()["rev"] == want && h.w.QueueLen() == 0
	})
	eventually(t, "last flush", func() bool {
		calls, _, _ := h.rec.snapshot()
		return calls[len(calls)-1] == "flush"
	})
	elapsed := time.Since(start)
	_, flushes, _ := h.rec.snapshot()
	t.Logf("%d updates in %v: %d events queued, %d flushes", updates, elapsed.Round(time.Millisecond), events.Load(), flushes)
	// One flush per MinFlushInterval at most while the burst lasts (the fake
	// clientset takes a few ms per update on a loaded machine), plus the first
	// and the last.
	if limit := int(elapsed/interval) + 2; flushes > limit {
		t.Errorf("%d updates in %v caused %d flushes, want at most %d", updates, elapsed, flushes, limit)
	}
	// The hook runs just after the engine's flush returns: wait for the last.
	eventually(t, "Flushed hook called once per flush and for the first reconcile", func() bool {
		return flushed.Load() >= int32(flushes+1)
	})
	if got := flushed.Load(); got != int32(flushes+1) {
		t.Errorf("Flushed hook called %d times, want %d", got, flushes+1)
	}
}

// TestChangesDuringFlushAreOneBatch: with the default options a change to an
// idle watcher is flushed on its own, and the changes that arrive while that
// flush runs are applied together and flushed once after it.
func TestChangesDuringFlushAreOneBatch(t *testing.T) {
	h := startHarness(t, Options{}, namespace("frontend"))
	h.run(t)
	h.waitReady(t)
	block := make(chan struct{})
	h.rec.mu.Lock()
	h.rec.block = block
	h.rec.mu.Unlock()
	ctx := context.Background()
	if _, err := h.client.CoreV1().Namespaces().Create(ctx, namespace("first"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "first flush running", func() bool { return h.w.Busy() > 0 })
	before, _, _ := h.rec.snapshot()
	later := []string{"a", "b", "c", "d"}
	for _, name := range later {
		if _, err := h.client.CoreV1().Namespaces().Create(ctx, namespace(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "all queued", func() bool { return h.w.QueueLen() == len(later) })
	h.rec.mu.Lock()
	h.rec.block = nil
	h.rec.mu.Unlock()
	close(block)
	eventually(t, "second flush", func() bool {
		_, flushes, _ := h.rec.snapshot()
		return flushes >= 2
	})
	calls, flushes, _ := h.rec.snapshot()
	want := []string{"flush", "upsert Namespace/a", "upsert Namespace/b", "upsert Namespace/c", "upsert Namespace/d", "flush"}
	if got := calls[len(before):]; !slices.Equal(got, want) || flushes != 2 {
		t.Errorf("calls after the first upsert = %q (%d flushes), want %q", got, flushes, want)
	}
}

func TestDeltasAfterSync(t *testing.T) {
	var objErrs atomic.Int32
	opts := Options{Hooks: Hooks{ObjectError: func(Kind, string, error) { objErrs.Add(1) }}}
	web := pod("frontend", "web", localNode, []string{"198.18.0.10"})
	h := startHarness(t, opts, namespace("frontend"), web)
	h.run(t)
	h.waitReady(t)
	ctx := context.Background()

	// A status-only update is filtered: no engine call at all.
	before, _, _ := h.rec.snapshot()
	web.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := h.client.CoreV1().Pods("frontend").UpdateStatus(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod deletion and a rejected policy follow; they must be applied, and
	// nothing for the status update.
	if err := h.client.CoreV1().Pods("frontend").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	bad := ingressPolicy("frontend", "bad", "web", "x", 80)
	bad.Spec.PolicyTypes = nil
	if _, err := h.client.NetworkingV1().NetworkPolicies("frontend").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "policy applied", func() bool { return h.rec.object("NetworkPolicy/frontend/bad") != nil })
	eventually(t, "flush", func() bool {
		calls, _, _ := h.rec.snapshot()
		return calls[len(calls)-1] == "flush"
	})
	after, _, _ := h.rec.snapshot()
	var delta []string
	for _, c := range after[len(before):] {
		if c != "flush" {
			delta = append(delta, c)
		}
	}
	// Pods and policies come from different informers: with no wait between
	// batches either may be applied first.
	slices.Sort(delta)
	want := []string{"delete Pod/frontend/web", "upsert NetworkPolicy/frontend/bad"}
	if !slices.Equal(delta, want) {
		t.Errorf("engine calls after sync = %q, want %q", delta, want)
	}
	if objErrs.Load() != 1 {
		t.Errorf("ObjectError hook called %d times, want 1", objErrs.Load())
	}
}

func TestFlushFailureIsRetried(t *testing.T) {
	var failures atomic.Int32
	opts := Options{Hooks: Hooks{Flushed: func(_ enforcer.FlushResult, err error) {
		if err != nil {
			failures.Add(1)
		}
	}}}
	h := startHarness(t, opts, namespace("frontend"))
	h.rec.setFail(2) // the first reconcile and its first retry fail
	h.run(t)
	h.waitReady(t)
	_, _, reconciles := h.rec.snapshot()
	if reconciles != 3 || failures.Load() != 2 {
		t.Errorf("reconciles = %d, failures = %d, want 3, 2", reconciles, failures.Load())
	}

	h.rec.setFail(1)
	if _, err := h.client.CoreV1().Namespaces().Create(context.Background(), namespace("backend"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "flush retried", func() bool {
		_, flushes, _ := h.rec.snapshot()
		return flushes >= 2
	})
	calls, _, _ := h.rec.snapshot()
	if got := calls[len(calls)-3:]; !slices.Equal(got, []string{"upsert Namespace/backend", "flush", "flush"}) {
		t.Errorf("calls end with %q, want upsert, failed flush, retried flush", got)
	}
}

func TestPeriodicReconcile(t *testing.T) {
	h := startHarness(t, Options{ResyncPeriod: 50 * time.Millisecond, MinFlushInterval: -1})
	h.run(t)
	h.waitReady(t)
	eventually(t, "periodic reconciles", func() bool {
		_, _, reconciles := h.rec.snapshot()
		return reconciles >= 3
	})
}

// TestWatchErrorsAreSurvived fails the first list of pods, as an unreachable or
// overloaded API server would: the WatchError hook fires, the reflector retries,
// and the watcher becomes ready with everything.
func TestWatchErrorsAreSurvived(t *testing.T) {
	var watchErrs atomic.Int32
	h := startHarness(t, Options{Hooks: Hooks{WatchError: func(Kind, error) { watchErrs.Add(1) }}},
		namespace("frontend"), pod("frontend", "web", localNode, []string{"198.18.0.10"}))
	var lists atomic.Int32
	h.client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if lists.Add(1) == 1 {
			return true, nil, errors.New("test: connection refused")
		}
		return false, nil, nil
	})
	h.run(t)
	h.waitReady(t)
	if watchErrs.Load() < 1 {
		t.Error("WatchError hook not called")
	}
	if h.rec.object("Pod/frontend/web") == nil {
		t.Error("pod not applied after the list was retried")
	}
}

func TestRunTwice(t *testing.T) {
	h := startHarness(t, Options{})
	h.run(t)
	h.waitReady(t)
	if err := h.w.Run(context.Background()); err == nil {
		t.Error("second Run returned nil")
	}
}

func TestBusy(t *testing.T) {
	h := startHarness(t, Options{}, namespace("frontend"))
	h.run(t)
	h.waitReady(t)
	eventually(t, "idle", func() bool { return h.w.Busy() == 0 })
	block := make(chan struct{})
	h.rec.mu.Lock()
	h.rec.block = block
	h.rec.mu.Unlock()
	if _, err := h.client.CoreV1().Namespaces().Create(context.Background(), namespace("backend"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "busy", func() bool { return h.w.Busy() > 100*time.Millisecond })
	close(block)
	eventually(t, "idle again", func() bool { return h.w.Busy() == 0 })
}

// TestChangesWhileAwayAppliedAfterRelist cuts the pod watch off (its events are
// lost, as during an API server outage), changes pods meanwhile, then ends the
// watch with "410 Gone": the reflector relists, and the engine gets the
// additions and the deletion it missed, in one flush.
func TestChangesWhileAwayAppliedAfterRelist(t *testing.T) {
	h := startHarness(t, Options{MinFlushInterval: -1},
		namespace("frontend"), pod("frontend", "old", localNode, []string{"198.18.0.10"}))
	// Every pod watch is ours: nothing the tracker does reaches the informer
	// except through a relist.
	podWatches := make(chan *watch.FakeWatcher, 10)
	h.client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		fw := watch.NewFakeWithChanSize(10, false)
		h.watches.Add(1)
		podWatches <- fw
		return true, fw, nil
	})
	h.run(t)
	h.waitReady(t)
	var fw *watch.FakeWatcher
	select {
	case fw = <-podWatches:
	case <-time.After(10 * time.Second):
		t.Fatal("no pod watch")
	}
	ctx := context.Background()
	if _, err := h.client.CoreV1().Pods("frontend").Create(ctx, pod("frontend", "new", localNode, []string{"198.18.0.11"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.client.CoreV1().Pods("frontend").Delete(ctx, "old", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if h.rec.object("Pod/frontend/new") != nil {
		t.Fatal("the pod watch was not cut off")
	}
	_, flushesBefore, _ := h.rec.snapshot()

	fw.Error(&apierrors.NewResourceExpired("resource version too old").ErrStatus)
	eventually(t, "missed changes applied", func() bool {
		return h.rec.object("Pod/frontend/new") != nil && h.rec.object("Pod/frontend/old") == nil
	})
	eventually(t, "flushed", func() bool {
		calls, _, _ := h.rec.snapshot()
		return calls[len(calls)-1] == "flush"
	})
	if _, flushes, _ := h.rec.snapshot(); flushes-flushesBefore != 1 {
		t.Errorf("%d flushes after the relist, want 1", flushes-flushesBefore)
	}
}
