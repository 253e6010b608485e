package podwatch

import (
	"hash/fnv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podMeta is the object metadata a cached pod keeps besides its name and
// namespace (the compact pod reads those from the engine's pod, whose ID
// holds both): what client-go's cache reads (resourceVersion) and the
// deletion timestamp, the time of its last change, and a hash of its UID. A
// metav1.ObjectMeta is 232 bytes, most of them for fields the cache never
// sets; this is 40. The UID itself is not kept (a 36-character string per
// pod): client-go's cache does not read it, and the engine keys pods by
// namespace and name, so a pod recreated under the same name with the same
// content needs no change. Only StartPod asks whether the cached pod is the
// one whose sandbox the CNI plugin set up (a StatefulSet's pod recreated
// under its name is another pod); its hash answers that in 8 bytes.
//
// Together with compactPod's name and label methods it implements metav1.Object, the
// interface client-go reaches objects' metadata through (meta.Accessor). The
// fields it does not keep read as zero values and ignore writes: the
// transform drops them anyway.
type podMeta struct {
	ResourceVersion   string
	DeletionTimestamp *metav1.Time
	// changed is the Unix time (whole seconds, the API's resolution) of the
	// pod's last change (podChangeTime); 0 if unknown.
	changed int64
	// uid is uidHash of the pod's UID.
	uid uint64
}

func podMetaOf(m *metav1.ObjectMeta) podMeta {
	return podMeta{
		ResourceVersion:   m.ResourceVersion,
		DeletionTimestamp: m.DeletionTimestamp,
		uid:               uidHash(m.UID),
	}
}

// uidHash is the FNV-1a hash of uid: two pods of one name have different
// UIDs, and equal hashes of different UIDs (a chance of 2^-64) are not a
// concern.
func uidHash(uid types.UID) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	return h.Sum64()
}

func (m *podMeta) deepCopy() podMeta {
	out := *m
	if m.DeletionTimestamp != nil {
		out.DeletionTimestamp = m.DeletionTimestamp.DeepCopy()
	}
	return out
}

var _ metav1.Object = (*compactPod)(nil)

func (m *podMeta) GetResourceVersion() string          { return m.ResourceVersion }
func (m *podMeta) SetResourceVersion(version string)   { m.ResourceVersion = version }
func (m *podMeta) GetDeletionTimestamp() *metav1.Time  { return m.DeletionTimestamp }
func (m *podMeta) SetDeletionTimestamp(t *metav1.Time) { m.DeletionTimestamp = t }

// Fields the cache does not keep.

func (m *podMeta) GetUID() types.UID { return "" }
func (m *podMeta) SetUID(types.UID)  {}

func (m *podMeta) GetGenerateName() string                                    { return "" }
func (m *podMeta) SetGenerateName(string)                                     {}
func (m *podMeta) GetGeneration() int64                                       { return 0 }
func (m *podMeta) SetGeneration(int64)                                        {}
func (m *podMeta) GetSelfLink() string                                        { return "" }
func (m *podMeta) SetSelfLink(string)                                         {}
func (m *podMeta) GetCreationTimestamp() metav1.Time                          { return metav1.Time{} }
func (m *podMeta) SetCreationTimestamp(metav1.Time)                           {}
func (m *podMeta) GetDeletionGracePeriodSeconds() *int64                      { return nil }
func (m *podMeta) SetDeletionGracePeriodSeconds(*int64)                       {}
func (m *podMeta) GetAnnotations() map[string]string                          { return nil }
func (m *podMeta) SetAnnotations(map[string]string)                           {}
func (m *podMeta) GetFinalizers() []string                                    { return nil }
func (m *podMeta) SetFinalizers([]string)                                     {}
func (m *podMeta) GetOwnerReferences() []metav1.OwnerReference                { return nil }
func (m *podMeta) SetOwnerReferences([]metav1.OwnerReference)                 {}
func (m *podMeta) GetManagedFields() []metav1.ManagedFieldsEntry              { return nil }
func (m *podMeta) SetManagedFields(managedFields []metav1.ManagedFieldsEntry) {}

// GetNamespace returns the pod's namespace (a part of the engine pod's ID).
func (c *compactPod) GetNamespace() string { return c.pod.Namespace() }

// GetName returns the pod's name (a part of the engine pod's ID).
func (c *compactPod) GetName() string { return c.pod.Name() }

// SetNamespace and SetName ignore writes: the name is part of the immutable
// enforcer.Pod, and client-go never renames cached objects.
func (c *compactPod) SetNamespace(string) {}
func (c *compactPod) SetName(string)      {}

// GetLabels returns a new map of the pod's labels.
func (c *compactPod) GetLabels() map[string]string { return c.pod.Labels() }

// SetLabels ignores writes: the labels are part of the immutable
// enforcer.Pod, and client-go never sets labels of cached objects.
func (c *compactPod) SetLabels(map[string]string) {}
