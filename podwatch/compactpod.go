package podwatch

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/nftwarden/nftwarden/enforcer"
)

// compactPod is what the pod informer cache holds instead of a *corev1.Pod:
// the object metadata client-go needs (keys, delete handling) and the pod as
// the engine keeps it (enforcer.NewPod), which the watcher hands to the engine
// as it is (Engine.UpsertParsedPod). So every pod is held once, shared by the
// cache and the engine's model, rather than once in each.
//
// Even stripped, a corev1.Pod costs about 1.5 KB of empty PodSpec and
// PodStatus structs per pod, and its own copy of every label string; the
// enforcer.Pod interns what pods repeat (label keys and values, node and
// port names).
type compactPod struct {
	podMeta
	pod *enforcer.Pod
}

var _ runtime.Object = (*compactPod)(nil)

// GetObjectKind implements runtime.Object. The cache never needs the kind, and
// a TypeMeta would cost two strings per pod.
func (*compactPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. The enforcer.Pod is immutable and
// shared.
func (c *compactPod) DeepCopyObject() runtime.Object {
	out := *c
	out.podMeta = c.podMeta.deepCopy()
	return &out
}

// compactPodOf returns the compact form of p; it keeps p's resourceVersion
// string, its change time (podChangeTime) and nothing else of p, which
// becomes garbage.
func compactPodOf(p *corev1.Pod) *compactPod {
	ep := enforcer.NewPod(p)
	m := podMetaOf(&p.ObjectMeta)
	if t := podChangeTime(p); !t.IsZero() {
		m.changed = t.Unix()
	}
	return &compactPod{podMeta: m, pod: ep}
}

// samePodForEngine reports whether two compact pods carry the same information
// for the engine (see sameForEngine). A pod being deleted is the same: the
// engine enforces for a terminating pod as before (it may serve through its
// grace period), and the API server removes even a pod deleted with grace
// period 0 in two writes (deletionTimestamp set, then the removal), whose
// first would only cost a batch that the removal waits behind.
func samePodForEngine(a, b *compactPod) bool {
	return a.pod.Equal(b.pod)
}
