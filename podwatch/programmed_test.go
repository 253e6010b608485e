package podwatch

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/enforcer"
)

// programmedLog records, in order, the flushes' results and the changes
// Hooks.Programmed reports.
type programmedLog struct {
	mu      sync.Mutex
	events  []string
	changes []Change
	ats     []time.Time
}

func (l *programmedLog) hooks() Hooks {
	return Hooks{
		Flushed: func(_ enforcer.FlushResult, err error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if err != nil {
				l.events = append(l.events, "failed")
			} else {
				l.events = append(l.events, "flushed")
			}
		},
		Programmed: func(at time.Time, cs []Change) {
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, c := range cs {
				l.events = append(l.events, "programmed "+string(c.Kind))
				l.changes = append(l.changes, c)
				l.ats = append(l.ats, at)
			}
		},
	}
}

func (l *programmedLog) snapshot() ([]string, []Change, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events), slices.Clone(l.changes), slices.Clone(l.ats)
}

// TestProgrammedReportsEachChangeOnce: every change delivered after the
// initial sync is reported once, after the flush that carried it succeeded
// (a failed flush reports nothing; its retry does), with the API server's
// time of the change, when the informer delivered it, and when the batch
// ended, in that order.
func TestProgrammedReportsEachChangeOnce(t *testing.T) {
	var l programmedLog
	web := pod("frontend", "web", localNode, []string{"198.18.0.10"})
	h := startHarness(t, Options{Hooks: l.hooks()}, namespace("frontend"), web)
	h.run(t)
	h.waitReady(t)
	ctx := context.Background()
	if events, _, _ := l.snapshot(); !slices.Equal(events, []string{"flushed"}) {
		t.Fatalf("after the initial sync: %q, want one flush and no change (the initial list is not a change)", events)
	}

	// A namespace, applied by one successful flush. The fake API server
	// stamps its managed fields as the real one does (with nanoseconds; the
	// real one keeps whole seconds).
	backend, err := h.client.CoreV1().Namespaces().Create(ctx, namespace("backend"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created := apiChangeTime(&backend.ObjectMeta)
	if created.IsZero() {
		t.Fatal("the fake API server kept no managed fields time")
	}
	eventually(t, "namespace programmed", func() bool { _, cs, _ := l.snapshot(); return len(cs) == 1 })

	// A policy whose first flush fails: reported after the retry only.
	h.rec.setFail(1)
	np := ingressPolicy("frontend", "p", "web", "lb", 80)
	if _, err := h.client.NetworkingV1().NetworkPolicies("frontend").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "policy programmed", func() bool { _, cs, _ := l.snapshot(); return len(cs) == 2 })

	// A status update the engine does not read is no change; a deletion is.
	web.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := h.client.CoreV1().Pods("frontend").UpdateStatus(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.client.CoreV1().Pods("frontend").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deletion programmed", func() bool { _, cs, _ := l.snapshot(); return len(cs) == 3 })
	time.Sleep(50 * time.Millisecond) // nothing more may come

	events, changes, ats := l.snapshot()
	want := []string{"flushed", "flushed", "programmed Namespace", "failed", "flushed", "programmed NetworkPolicy", "flushed", "programmed Pod"}
	if !slices.Equal(events, want) {
		t.Errorf("events = %q,\nwant      %q", events, want)
	}
	for i, c := range changes {
		if c.Changed.After(c.Seen) || c.Seen.After(ats[i]) {
			t.Errorf("change %d (%s): changed %v, seen %v, programmed %v: not in order", i, c.Kind, c.Changed, c.Seen, ats[i])
		}
	}
	if len(changes) == 3 {
		if !changes[0].Changed.Equal(created) {
			t.Errorf("namespace changed at %v, want its managed fields' time %v", changes[0].Changed, created)
		}
		if !changes[2].Changed.Equal(changes[2].Seen) {
			t.Errorf("pod deletion: changed %v, want when seen (%v): the object is gone", changes[2].Changed, changes[2].Seen)
		}
	}
}

// A change recorded for a key is carried by the batch holding that key only,
// and reported once.
func TestChangeLog(t *testing.T) {
	l := newChangeLog()
	a, b := key{Kind: KindPod, Namespace: "n", Name: "a"}, key{Kind: KindPod, Namespace: "n", Name: "b"}
	c := func(s int) Change { return Change{Kind: KindPod, Changed: at(s), Seen: at(s)} }
	l.record(a, c(1))
	l.record(b, c(2))
	l.record(a, c(3))
	l.take([]key{a})
	got := l.flushed()
	if fmt.Sprint(got) != fmt.Sprint([]Change{c(1), c(3)}) {
		t.Errorf("first flush carried %v, want both changes of a", got)
	}
	if got := l.flushed(); len(got) != 0 {
		t.Errorf("reported again: %v", got)
	}
	l.take([]key{a, b})
	if got := l.flushed(); fmt.Sprint(got) != fmt.Sprint([]Change{c(2)}) {
		t.Errorf("second flush carried %v, want b's change", got)
	}
	for i := range maxUnflushedChanges + 10 {
		l.record(a, c(i))
	}
	l.take([]key{a})
	if n := len(l.flushed()); n != maxUnflushedChanges {
		t.Errorf("kept %d changes, want the bound %d", n, maxUnflushedChanges)
	}
}

// BenchmarkChangeLog is what Hooks.Programmed costs per change: recorded at
// the notification, taken into its batch, handed over after the flush, for
// batches of n changes of n objects.
func BenchmarkChangeLog(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		keys := make([]key, n)
		for i := range keys {
			keys[i] = key{Kind: KindPod, Namespace: "bench", Name: fmt.Sprint("pod-", i)}
		}
		b.Run(fmt.Sprint("batch=", n), func(b *testing.B) {
			l := newChangeLog()
			c := Change{Kind: KindPod, Changed: at(0), Seen: at(1)}
			for b.Loop() {
				for _, k := range keys {
					l.record(k, c)
				}
				l.take(keys)
				if got := len(l.flushed()); got != n {
					b.Fatalf("%d changes, want %d", got, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/change")
		})
	}
}
