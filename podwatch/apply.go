package podwatch

import (
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
)

// kindOrder applies namespaces before pods before policies (NetworkPolicies,
// then ClusterNetworkPolicies) within a batch (and
// each kind by namespace and name). The engine does not depend on the order; it
// makes logs and tests deterministic.
var kindOrder = map[Kind]int{kindReconcile: 0, kindFlush: 1, KindNamespace: 2, KindPod: 3, KindNetworkPolicy: 4, KindClusterNetworkPolicy: 5}

// applyAll hands the objects of a batch to the engine, namespaces first (see
// kindOrder), and reports whether it holds a reconcile key. Keys taken from
// the queue (queued) are marked done there.
func (w *Watcher) applyAll(batch []key, queued bool) (full bool) {
	sort.Slice(batch, func(i, j int) bool {
		a, b := batch[i], batch[j]
		if a.Kind != b.Kind {
			return kindOrder[a.Kind] < kindOrder[b.Kind]
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	for _, k := range batch {
		switch k.Kind {
		case kindReconcile:
			full = true
		case kindFlush:
			// A retry after a failed flush: process flushes anyway (and the
			// engine turns it into a full reconcile after a failed Apply).
		default:
			w.apply(k)
		}
		if queued {
			w.queue.Done(k)
		}
	}
	return full
}

// apply brings the engine's model of one object in line with the informer
// cache: present means upsert, absent means delete.
func (w *Watcher) apply(k key) {
	rejected, err := w.applyCached(k)
	if err != nil {
		w.log.Error("cannot read the object from the informer cache; skipped", "object", k.String(), "error", err)
		return
	}
	if rejected == nil {
		return
	}
	// Not logged here: the engine logs what it rejects, once per version of
	// the object, and returns the same error unlogged for an identical upsert
	// (a relist, an update that changed nothing it reads). Logging it again
	// would double every line.
	if h := w.opts.Hooks.ObjectError; h != nil {
		h(k.Kind, k.String(), rejected)
	}
}

// applyCached upserts or deletes the object of k as the cache holds it. It
// returns what the engine rejected of the object, or err when the cache could
// not be read.
func (w *Watcher) applyCached(k key) (rejected, err error) {
	switch k.Kind {
	case KindNamespace:
		ns, err := w.namespaces.Get(k.Name)
		if apierrors.IsNotFound(err) {
			w.eng.DeleteNamespace(k.Name)
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return w.eng.UpsertNamespace(ns), nil
	case KindPod:
		obj, exists, err := w.pods.GetByKey(cache.NewObjectName(k.Namespace, k.Name).String())
		c, ok := obj.(*compactPod)
		switch {
		case err != nil:
			return nil, err
		case !exists:
			w.eng.DeletePod(k.Namespace, k.Name)
			return nil, nil
		case !ok:
			return nil, fmt.Errorf("unexpected %T in the pod cache", obj)
		}
		return w.eng.UpsertParsedPod(c.pod), nil
	case KindNetworkPolicy:
		np, err := w.policies.NetworkPolicies(k.Namespace).Get(k.Name)
		if apierrors.IsNotFound(err) {
			w.eng.DeleteNetworkPolicy(k.Namespace, k.Name)
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return w.eng.UpsertNetworkPolicy(np), nil
	case KindClusterNetworkPolicy:
		cnp, err := w.cnp.get(k.Name)
		switch {
		case err != nil:
			return nil, err
		case cnp == nil:
			// Deleted, or its API is gone (the CRD's removal deleted it).
			w.eng.DeleteClusterNetworkPolicy(k.Name)
			return nil, nil
		}
		return w.eng.UpsertClusterNetworkPolicy(cnp), nil
	}
	return nil, fmt.Errorf("unknown kind %q", k.Kind)
}
