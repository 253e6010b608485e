package podwatch

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/nftwarden/nftwarden/enforcer"
)

// TestCompactPodInCache checks that what Transform stores for a pod works as an
// informer cache object (keys, namespace index, deep copy) and that the pod
// rebuilt from the cache is the one TransformPod describes.
func TestCompactPodInCache(t *testing.T) {
	in := realisticPod(3)
	obj, err := Transform(in)
	if err != nil {
		t.Fatalf("Transform: %v", err)
	}
	c, ok := obj.(*compactPod)
	if !ok {
		t.Fatalf("Transform stored %T, want *compactPod", obj)
	}
	if _, err := meta.Accessor(obj); err != nil {
		t.Fatalf("meta.Accessor: %v", err)
	}
	store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := store.Add(obj); err != nil {
		t.Fatalf("add to indexer: %v", err)
	}
	got, exists, err := store.GetByKey(in.Namespace + "/" + in.Name)
	if err != nil || !exists || got != obj {
		t.Fatalf("GetByKey = %v, %v, %v; want the stored object", got, exists, err)
	}
	if byNS, err := store.ByIndex(cache.NamespaceIndex, in.Namespace); err != nil || len(byNS) != 1 {
		t.Errorf("namespace index: %d objects, %v; want 1", len(byNS), err)
	}
	if !enforcer.NewPod(TransformPod(in)).Equal(c.pod) {
		t.Error("the cached pod differs from the engine's parse of TransformPod")
	}
	if c.GetNamespace() != in.Namespace || c.GetName() != in.Name || c.ResourceVersion != in.ResourceVersion {
		t.Errorf("cached metadata %s/%s %+v, want the pod's name, namespace and resourceVersion", c.GetNamespace(), c.GetName(), c.podMeta)
	}
	if diff := cmp.Diff(in.Labels, c.GetLabels()); diff != "" {
		t.Errorf("GetLabels (-pod +cached):\n%s", diff)
	}
	again, _ := Transform(obj)
	if again != obj {
		t.Error("Transform of a compact pod is not the identity")
	}

	cp, ok := c.DeepCopyObject().(*compactPod)
	if !ok {
		t.Fatalf("DeepCopyObject returned %T", c.DeepCopyObject())
	}
	if !samePodForEngine(c, cp) || cp.ResourceVersion != c.ResourceVersion {
		t.Error("deep copy differs from the original")
	}
	cp.SetResourceVersion("changed")
	if c.ResourceVersion == "changed" {
		t.Error("deep copy shares metadata with the original")
	}
}

// TestPodTombstoneQueued checks that a pod deleted while the watch was down (a
// tombstone holding the last compact pod) is queued under its key.
func TestPodTombstoneQueued(t *testing.T) {
	w := newWatcher(fake.NewClientset(), newRecorder(), Options{})
	t.Cleanup(w.queue.ShutDown)
	w.listing.Store(true) // as after the initial sync
	last, _ := Transform(pod("frontend", "web", localNode, []string{"198.18.0.10"}))
	w.handler(KindPod).OnDelete(cache.DeletedFinalStateUnknown{Key: "frontend/web", Obj: last})
	if n := w.queue.Len(); n != 1 {
		t.Fatalf("queue length %d, want 1", n)
	}
	k, _ := w.queue.Get()
	if want := (key{Kind: KindPod, Namespace: "frontend", Name: "web"}); k != want {
		t.Errorf("queued %v, want %v", k, want)
	}
	w.queue.Done(k)
}
