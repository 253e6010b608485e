package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// apiWatch is the benchmark's own watch of the objects its writes change
// (pods, namespaces, NetworkPolicies), as the daemon's informers watch them:
// when its events arrive is the API server's part of a write's latency (and
// of the machine's scheduling), the floor under any watcher's, measured
// beside the daemon's.
type apiWatch struct {
	mu     sync.Mutex
	events map[string][]time.Time // by object key (objectKey), in arrival order
	stop   []func()
}

// objectKey names an object as the watch and the writes name it.
func objectKey(resource, namespace, name string) string {
	return resource + "/" + namespace + "/" + name
}

// deletedSuffix makes an object's key name only its deletion events: a
// scheduled pod's deletion comes as an update (deletionTimestamp set) and
// then the deletion, which is the event the write's change waits for.
const deletedSuffix = " deleted"

// watchAPI starts watching the three resources from their current
// resource versions (no events for what exists already).
func watchAPI(ctx context.Context, client kubernetes.Interface) (*apiWatch, error) {
	w := &apiWatch{events: map[string][]time.Time{}}
	type source struct {
		resource string
		list     func(context.Context, metav1.ListOptions) (metav1.ListInterface, error)
		watch    func(context.Context, metav1.ListOptions) (watch.Interface, error)
	}
	core, netv1 := client.CoreV1(), client.NetworkingV1()
	for _, s := range []source{
		{"pods",
			func(ctx context.Context, o metav1.ListOptions) (metav1.ListInterface, error) {
				return core.Pods("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return core.Pods("").Watch(ctx, o)
			}},
		{"namespaces",
			func(ctx context.Context, o metav1.ListOptions) (metav1.ListInterface, error) {
				return core.Namespaces().List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return core.Namespaces().Watch(ctx, o)
			}},
		{"networkpolicies",
			func(ctx context.Context, o metav1.ListOptions) (metav1.ListInterface, error) {
				return netv1.NetworkPolicies("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return netv1.NetworkPolicies("").Watch(ctx, o)
			}},
	} {
		// A list of one object answers the current resource version.
		l, err := s.list(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			w.close()
			return nil, fmt.Errorf("watch %s: list: %w", s.resource, err)
		}
		rw, err := watchtools.NewRetryWatcherWithContext(ctx, l.GetResourceVersion(), &cache.ListWatch{
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return s.watch(ctx, o) },
		})
		if err != nil {
			w.close()
			return nil, fmt.Errorf("watch %s: %w", s.resource, err)
		}
		w.stop = append(w.stop, rw.Stop)
		go w.read(s.resource, rw.ResultChan())
	}
	return w, nil
}

func (w *apiWatch) read(resource string, events <-chan watch.Event) {
	for ev := range events {
		at := time.Now()
		m, err := meta.Accessor(ev.Object)
		if err != nil || ev.Type == watch.Bookmark || ev.Type == watch.Error {
			continue
		}
		k := objectKey(resource, m.GetNamespace(), m.GetName())
		w.mu.Lock()
		w.events[k] = append(w.events[k], at)
		if ev.Type == watch.Deleted {
			w.events[k+deletedSuffix] = append(w.events[k+deletedSuffix], at)
		}
		w.mu.Unlock()
	}
}

// firstAfter returns the arrival of the first event of key at or after t.
func (w *apiWatch) firstAfter(key string, t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	evs := w.events[key]
	i := sort.Search(len(evs), func(i int) bool { return !evs[i].Before(t) })
	if i == len(evs) {
		return time.Time{}, false
	}
	return evs[i], true
}

// waitFor waits until every key has an event at or after its time, bounded
// by limit; it returns the arrivals in order.
func (w *apiWatch) waitFor(ctx context.Context, keys []string, after []time.Time, limit time.Duration) ([]time.Time, error) {
	out := make([]time.Time, len(keys))
	deadline := time.Now().Add(limit)
	for k, key := range keys {
		for {
			at, ok := w.firstAfter(key, after[k])
			if ok {
				out[k] = at
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("no watch event of %s within %v", key, limit)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}
	return out, nil
}

func (w *apiWatch) close() {
	for _, stop := range w.stop {
		stop()
	}
}

// arrivals returns, for each write, when the first event of its object at
// or after its request (samples[k].sent) arrived.
func (w *apiWatch) arrivals(ctx context.Context, writes []write, samples []*sample, limit time.Duration) ([]time.Time, error) {
	keys := make([]string, len(writes))
	after := make([]time.Time, len(writes))
	for k, wr := range writes {
		keys[k], after[k] = wr.object, samples[k].sent
	}
	return w.waitFor(ctx, keys, after, limit)
}

// stamp sets the samples' delivered times from api and viaNode (nil: not
// watched that way).
func stamp(ctx context.Context, api, viaNode *apiWatch, writes []write, samples []*sample, limit time.Duration) error {
	at, err := api.arrivals(ctx, writes, samples, limit)
	if err != nil {
		return err
	}
	for k, s := range samples {
		s.delivered = at[k]
	}
	if viaNode == nil {
		return nil
	}
	if at, err = viaNode.arrivals(ctx, writes, samples, limit); err != nil {
		return fmt.Errorf("through the node: %w", err)
	}
	for k, s := range samples {
		s.deliveredViaNode = at[k]
	}
	return nil
}
