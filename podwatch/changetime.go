package podwatch

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The time an object last changed, as the API server recorded it, is what the
// programming-latency metric (Hooks.Programmed) measures from. Objects carry
// no single "changed at" field: the API server stamps the times below, each
// in whole seconds (RFC 3339 without fractions), so a latency measured from
// them reads up to one second long (the true change lies anywhere in the
// second the stamp names).
//
//   - metadata.managedFields[].time: the server-side field manager stamps the
//     entry of the manager that wrote, on every create, update, patch and
//     apply that changes a field (also of the status subresource: the
//     kubelet's update that gives a pod its IP);
//   - metadata.creationTimestamp: the creation, for servers or clients that
//     keep no managed fields;
//   - metadata.deletionTimestamp less deletionGracePeriodSeconds: when the
//     deletion was requested (a graceful deletion stamps the end of its grace
//     period; a deletion request does not touch the managed fields);
//   - a pod's status.conditions[].lastTransitionTime: when the kubelet saw
//     the change (e.g. PodReadyToStartContainers, set with the sandbox and
//     its IP).
//
// The transforms keep the newest of them in the cached object (changeStamp),
// since they strip the fields it comes from.

// apiChangeTime returns the newest API-server time of m: managed fields,
// creation, deletion request. Zero when m has none.
func apiChangeTime(m *metav1.ObjectMeta) time.Time {
	var newest time.Time
	for i := range m.ManagedFields {
		if t := m.ManagedFields[i].Time; t != nil && t.After(newest) {
			newest = t.Time
		}
	}
	if m.CreationTimestamp.After(newest) {
		newest = m.CreationTimestamp.Time
	}
	if t := deletionRequested(m); t.After(newest) {
		newest = t
	}
	return newest
}

// deletionRequested returns when the deletion of m was requested: its
// deletionTimestamp less its grace period (zero when not being deleted). A
// cached pod keeps no grace period: its deletionTimestamp is the end of the
// grace period, at or after its removal.
func deletionRequested(m metav1.Object) time.Time {
	dt := m.GetDeletionTimestamp()
	if dt == nil {
		return time.Time{}
	}
	t := dt.Time
	if g := m.GetDeletionGracePeriodSeconds(); g != nil && *g > 0 {
		t = t.Add(-time.Duration(*g) * time.Second)
	}
	return t
}

// podChangeTime is apiChangeTime of a pod, or the newest transition of its
// status conditions if later (the kubelet's clock stamps those).
func podChangeTime(p *corev1.Pod) time.Time {
	newest := apiChangeTime(&p.ObjectMeta)
	for i := range p.Status.Conditions {
		if t := p.Status.Conditions[i].LastTransitionTime; t.After(newest) {
			newest = t.Time
		}
	}
	return newest
}

// changeStamp keeps t in a transformed object's metadata as the one managed
// fields entry, holding only its time (nil for a zero t). Transforming the
// result again finds the same newest time, as client-go wants of a transform.
func changeStamp(t time.Time) []metav1.ManagedFieldsEntry {
	if t.IsZero() {
		return nil
	}
	return []metav1.ManagedFieldsEntry{{Time: &metav1.Time{Time: t}}}
}

// changedAt returns the change time a transformed object keeps (zero if none).
func changedAt(obj any) time.Time {
	switch o := obj.(type) {
	case *compactPod:
		if o.changed == 0 {
			return time.Time{}
		}
		return time.Unix(o.changed, 0)
	case metav1.Object:
		var newest time.Time
		for _, e := range o.GetManagedFields() {
			if e.Time != nil && e.Time.After(newest) {
				newest = e.Time.Time
			}
		}
		return newest
	}
	return time.Time{}
}

// changeTimeOf returns when the change that an informer delivered at seen was
// made: for an add or update, the time the object keeps (changedAt); for a
// deletion, the object's deletion request if it had one (the object is gone,
// and its removal is stamped nowhere), else seen. A time after seen (the API
// server's clock ahead of this node's, a pod's grace period not over) or none
// at all reads as seen, so that no latency is negative.
func changeTimeOf(obj any, deleted bool, seen time.Time) time.Time {
	var t time.Time
	if !deleted {
		t = changedAt(obj)
	} else if m, ok := obj.(metav1.Object); ok {
		t = deletionRequested(m)
	}
	if t.IsZero() || t.After(seen) {
		return seen
	}
	return t
}
