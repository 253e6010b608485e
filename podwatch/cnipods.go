package podwatch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/nftwarden/nftwarden/enforcer"
)

// Errors of StartPod, StopPod and PodProgrammed, besides the engine's
// (enforcer.Engine.StartPod) and the context's.
var (
	// ErrNotReady: the first full reconcile has not programmed the table
	// yet (Ready is false), and the caller's context ended while StartPod
	// or StopPod waited for it; PodProgrammed does not wait.
	ErrNotReady = errors.New("podwatch: not ready: the first full reconcile has not programmed the table yet")
	// ErrPodNotFound: the API server has no pod of that namespace and name,
	// or one with another UID (the sandbox's pod was deleted and replaced).
	ErrPodNotFound = errors.New("podwatch: pod not found")
	// ErrFlushFailed: the engine took the call but the kernel batch that
	// was to carry it failed; the watcher flushes again with backoff, and
	// the caller may retry.
	ErrFlushFailed = errors.New("podwatch: programming the dataplane failed")
)

// podStarter is the engine's synchronous pod API (part of engine), which
// StartPod, StopPod and PodProgrammed hand their calls to.
type podStarter interface {
	StartPod(ctx context.Context, p *enforcer.Pod, addrs []netip.Addr) (enforcer.FlushResult, error)
	StopPod(ctx context.Context, namespace, name string, addrs []netip.Addr) (enforcer.FlushResult, error)
	PodProgrammed(namespace, name string, addrs []netip.Addr) error
}

// StartPod programs pod namespace/name, which is coming up with addrs (from
// its CNI result), and returns when a kernel batch has carried it. It is the
// CNI ADD of a chained plugin or of a CNI that embeds nftwarden.
//
// It waits until the watcher is Ready (a model the informers have not
// filled would be no policy at all), then takes the pod from the informer
// cache, with the UID uid unless uid is empty. A pod the informer has not
// delivered yet (a lagging watch) is waited for up to Options.PodWait and
// then read once from the API server, through the informer's Transform: a
// pod is never programmed without its labels. The engine uses addrs until
// the pod's status lists its own (enforcer.Engine.StartPod). The flush is
// reported to Hooks.Flushed like the worker's. Everything is bounded by ctx.
func (w *Watcher) StartPod(ctx context.Context, namespace, name, uid string, addrs []netip.Addr) (enforcer.FlushResult, error) {
	if err := w.waitReady(ctx); err != nil {
		return enforcer.FlushResult{}, err
	}
	p, err := w.resolvePod(ctx, namespace, name, types.UID(uid))
	if err != nil {
		return enforcer.FlushResult{}, err
	}
	return w.reportPodFlush(w.eng.StartPod(ctx, p, addrs))
}

// StopPod takes addrs (all the pod's addresses when empty) of pod
// namespace/name out of the dataplane, although the pod object may still
// list them (CNI DEL: its sandbox is gone), and returns when a kernel batch
// has carried that. It waits for Ready first, bounded by ctx; an unknown
// pod or address is not an error. The flush is reported to Hooks.Flushed.
func (w *Watcher) StopPod(ctx context.Context, namespace, name string, addrs []netip.Addr) (enforcer.FlushResult, error) {
	if err := w.waitReady(ctx); err != nil {
		return enforcer.FlushResult{}, err
	}
	return w.reportPodFlush(w.eng.StopPod(ctx, namespace, name, addrs))
}

// PodProgrammed reports whether pod namespace/name is programmed with every
// address of addrs (CNI CHECK): nil if so, ErrNotReady before the first full
// reconcile, otherwise the engine's error saying what is missing.
func (w *Watcher) PodProgrammed(namespace, name string, addrs []netip.Addr) error {
	if !w.Ready() {
		return ErrNotReady
	}
	return w.eng.PodProgrammed(namespace, name, addrs)
}

// waitReady returns nil once the watcher is Ready, ErrNotReady when ctx ends
// first.
func (w *Watcher) waitReady(ctx context.Context) error {
	select {
	case <-w.readyC:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (%w)", ErrNotReady, context.Cause(ctx))
	}
}

// reportPodFlush reports the flush of a StartPod or StopPod as the worker
// reports its own, and returns its result, a failed flush's error marked
// ErrFlushFailed. A failed kernel batch leaves the engine's changes for the
// next flush (a full reconcile, after a failure): the worker is asked for
// one, so the kernel converges whether or not the runtime retries. An error
// without a flush (the engine refused the call: no Duration) is the
// caller's alone.
func (w *Watcher) reportPodFlush(res enforcer.FlushResult, err error) (enforcer.FlushResult, error) {
	if err != nil && res.Duration == 0 {
		return res, err
	}
	w.reportFlushed(res, err)
	if err != nil {
		w.queue.Add(key{Kind: kindFlush})
		err = fmt.Errorf("%w: %w", ErrFlushFailed, err)
	}
	return res, err
}

// reportFlushed calls Hooks.Flushed once per kernel batch. The engine hands
// the result of a successful batch to every caller it carried: concurrent
// StartPods share one, and a StartPod whose change the worker's batch
// carried gets that batch's result. Reported by each, it would count twice in
// the metrics and the revoker, so a successful result whose batch number
// (enforcer.FlushResult.Batch) was reported recently is not reported again.
// Results without a number (a failure, an engine that does not number its
// batches) are always reported.
func (w *Watcher) reportFlushed(res enforcer.FlushResult, err error) {
	h := w.opts.Hooks.Flushed
	if h == nil {
		return
	}
	if err == nil && res.Batch != 0 {
		w.reportMu.Lock()
		again := slices.Contains(w.reported[:], res.Batch)
		if !again {
			w.reported[w.reportedNext%len(w.reported)] = res.Batch
			w.reportedNext++
		}
		w.reportMu.Unlock()
		if again {
			return
		}
	}
	h(res, err)
}

// resolvePod returns the engine's form of pod namespace/name (with UID uid,
// unless empty): from the informer cache, waiting for the informer up to
// Options.PodWait, and then from one GET.
func (w *Watcher) resolvePod(ctx context.Context, namespace, name string, uid types.UID) (*enforcer.Pod, error) {
	k := cache.NewObjectName(namespace, name).String()
	wait := time.NewTimer(w.opts.PodWait)
	defer wait.Stop()
	for {
		// Registered before the cache is read, so that a delivery between
		// the read and the wait is not missed.
		arrived := w.podWaiters.add(k)
		p, err := w.cachedPod(k, uid)
		if p != nil || err != nil {
			w.podWaiters.remove(k, arrived)
			return p, err
		}
		select {
		case <-arrived:
			// Read the cache again: it may be another pod of that name.
		case <-wait.C:
			w.podWaiters.remove(k, arrived)
			w.log.Info("the informer has not delivered the pod in time; reading it from the API server",
				"pod", k, "waited", w.opts.PodWait)
			return w.getPod(ctx, namespace, name, uid)
		case <-ctx.Done():
			w.podWaiters.remove(k, arrived)
			return nil, fmt.Errorf("podwatch: pod %s not seen by the informer: %w", k, context.Cause(ctx))
		}
	}
}

// cachedPod returns the cached pod of key k, nil if the cache has none or
// one with another UID than uid (when not empty).
func (w *Watcher) cachedPod(k string, uid types.UID) (*enforcer.Pod, error) {
	obj, exists, err := w.pods.GetByKey(k)
	if err != nil || !exists {
		return nil, err
	}
	c, ok := obj.(*compactPod)
	if !ok {
		return nil, fmt.Errorf("podwatch: unexpected %T in the pod cache", obj)
	}
	if uid != "" && c.uid != uidHash(uid) {
		return nil, nil
	}
	return c.pod, nil
}

// getPod reads pod namespace/name from the API server and parses it as the
// informer does (Transform).
func (w *Watcher) getPod(ctx context.Context, namespace, name string, uid types.UID) (*enforcer.Pod, error) {
	got, err := w.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: %s/%s", ErrPodNotFound, namespace, name)
	case err != nil:
		return nil, fmt.Errorf("podwatch: get pod %s/%s: %w", namespace, name, err)
	case uid != "" && got.UID != uid:
		return nil, fmt.Errorf("%w: %s/%s with UID %s (the API server's has UID %s)", ErrPodNotFound, namespace, name, uid, got.UID)
	}
	obj, err := Transform(got)
	if err != nil {
		return nil, fmt.Errorf("podwatch: pod %s/%s: %w", namespace, name, err)
	}
	return obj.(*compactPod).pod, nil
}

// podWaiters lets StartPod wait for the informer to deliver a pod: the pod
// handlers call arrived with every pod they are given.
type podWaiters struct {
	// waiting counts the registered waiters, so that the handlers, which see
	// every pod of the cluster, take no lock while nobody waits.
	waiting atomic.Int32
	mu      sync.Mutex
	byKey   map[string]*podWaiter
}

// podWaiter is the channel the waiters of one pod share, closed when it
// arrives, and their number.
type podWaiter struct {
	c chan struct{}
	n int
}

// add registers a waiter for the pod of key k and returns the channel that
// is closed when the pod arrives. Every add is followed by one remove,
// unless the channel was closed.
func (pw *podWaiters) add(k string) <-chan struct{} {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.byKey == nil {
		pw.byKey = map[string]*podWaiter{}
	}
	wt := pw.byKey[k]
	if wt == nil {
		wt = &podWaiter{c: make(chan struct{})}
		pw.byKey[k] = wt
	}
	wt.n++
	pw.waiting.Add(1)
	return wt.c
}

// remove unregisters a waiter of k that stops waiting on c, the channel add
// returned (a no-op when the pod arrived meanwhile: arrived unregistered
// it, and k's waiters now, if any, wait on another channel).
func (pw *podWaiters) remove(k string, c <-chan struct{}) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	wt := pw.byKey[k]
	if wt == nil || wt.c != c {
		return
	}
	wt.n--
	pw.waiting.Add(-1)
	if wt.n == 0 {
		delete(pw.byKey, k)
	}
}

// arrived wakes the waiters of obj if it is a pod.
func (pw *podWaiters) arrived(obj any) {
	if pw.waiting.Load() == 0 {
		return
	}
	c, ok := obj.(*compactPod)
	if !ok {
		return
	}
	k := cache.NewObjectName(c.GetNamespace(), c.GetName()).String()
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if wt := pw.byKey[k]; wt != nil {
		close(wt.c)
		pw.waiting.Add(-int32(wt.n))
		delete(pw.byKey, k)
	}
}
