package podwatch

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// at is 2026-12-06 11:00:00 UTC plus s seconds: API timestamps are whole seconds.
func at(s int) time.Time {
	return time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC).Add(time.Duration(s) * time.Second)
}

func mt(s int) *metav1.Time { t := metav1.NewTime(at(s)); return &t }

func managedAt(secs ...int) func(*metav1.ObjectMeta) {
	return func(m *metav1.ObjectMeta) {
		for _, s := range secs {
			m.ManagedFields = append(m.ManagedFields, metav1.ManagedFieldsEntry{Manager: "m", Operation: metav1.ManagedFieldsOperationUpdate, Time: mt(s)})
		}
	}
}

func TestChangeTime(t *testing.T) {
	grace := int64(30)
	tests := []struct {
		name string
		meta func(*metav1.ObjectMeta)
		// conditions are the pod's condition transition times (seconds).
		conditions []int
		want       time.Time
	}{
		{name: "no timestamps", meta: func(*metav1.ObjectMeta) {}, want: time.Time{}},
		{name: "creation only (no managed fields)", meta: func(m *metav1.ObjectMeta) { m.CreationTimestamp = *mt(1) }, want: at(1)},
		{name: "newest managed field wins, in any order", meta: managedAt(5, 9, 2), want: at(9)},
		{name: "managed field without a time", meta: func(m *metav1.ObjectMeta) {
			m.CreationTimestamp = *mt(1)
			m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "old"}}
		}, want: at(1)},
		{name: "deletion request: timestamp less grace period", meta: func(m *metav1.ObjectMeta) {
			managedAt(3)(m)
			m.DeletionTimestamp, m.DeletionGracePeriodSeconds = mt(40), &grace
		}, want: at(10)},
		{name: "deletion without grace period", meta: func(m *metav1.ObjectMeta) {
			managedAt(3)(m)
			m.DeletionTimestamp = mt(8)
		}, want: at(8)},
		{name: "older deletion request than the last update", meta: func(m *metav1.ObjectMeta) {
			managedAt(50)(m)
			m.DeletionTimestamp, m.DeletionGracePeriodSeconds = mt(40), &grace
		}, want: at(50)},
		{name: "pod: a later condition transition (the IP appeared)", meta: managedAt(4), conditions: []int{2, 6, 5}, want: at(6)},
		{name: "pod: conditions older than the update", meta: managedAt(7), conditions: []int{2, 6}, want: at(7)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := pod("frontend", "web", localNode, []string{"198.18.0.10"})
			tc.meta(&p.ObjectMeta)
			for _, s := range tc.conditions {
				p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, LastTransitionTime: *mt(s)})
			}
			want := tc.want
			if len(tc.conditions) == 0 {
				if got := apiChangeTime(&p.ObjectMeta); !got.Equal(want) {
					t.Errorf("apiChangeTime = %v, want %v", got, want)
				}
			}
			if got := podChangeTime(p); !got.Equal(want) {
				t.Errorf("podChangeTime = %v, want %v", got, want)
			}
			// What the transforms keep reads back as the same time, and
			// transforming again keeps it.
			cached, _ := Transform(p)
			if got := changedAt(cached); !got.Equal(want) {
				t.Errorf("changedAt(cached pod) = %v, want %v", got, want)
			}
			if got := changedAt(TransformPod(TransformPod(p))); !got.Equal(want) {
				t.Errorf("changedAt(TransformPod twice) = %v, want %v", got, want)
			}
			if len(tc.conditions) == 0 {
				np := ingressPolicy("frontend", "p", "web", "lb", 80)
				tc.meta(&np.ObjectMeta)
				once := TransformNetworkPolicy(np)
				if got := changedAt(TransformNetworkPolicy(once)); !got.Equal(want) {
					t.Errorf("changedAt(policy transformed twice) = %v, want %v", got, want)
				}
			}
		})
	}
}

func TestChangeTimeOfEvent(t *testing.T) {
	seen := at(20).Add(300 * time.Millisecond)
	updated := TransformNetworkPolicy(func() *networkingv1.NetworkPolicy {
		np := ingressPolicy("frontend", "p", "web", "lb", 80)
		managedAt(12)(&np.ObjectMeta)
		return np
	}())
	deleting := updated.DeepCopy()
	deleting.DeletionTimestamp = mt(15)
	future := updated.DeepCopy()
	future.ManagedFields = changeStamp(at(25)) // the API server's clock is ahead
	podGone := compactPodOf(pod("frontend", "web", localNode, nil, func(p *corev1.Pod) {
		managedAt(3)(&p.ObjectMeta)
		p.DeletionTimestamp = mt(40) // end of a grace period not over yet
	}))
	tests := []struct {
		name    string
		obj     any
		deleted bool
		want    time.Time
	}{
		{name: "update: the object's change time", obj: updated, want: at(12)},
		{name: "deletion of an object being deleted: the request", obj: deleting, deleted: true, want: at(15)},
		{name: "deletion of an object never marked: when seen", obj: updated, deleted: true, want: seen},
		{name: "deletion before the end of the grace period: when seen", obj: podGone, deleted: true, want: seen},
		{name: "a time after seen reads as seen", obj: future, want: seen},
		{name: "no time at all: when seen", obj: TransformNamespace(namespace("frontend")), want: seen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := changeTimeOf(tc.obj, tc.deleted, seen); !got.Equal(tc.want) {
				t.Errorf("changeTimeOf = %v, want %v", got, tc.want)
			}
		})
	}
}
