package podwatch

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGracelessDeletionIsOneChange: the API server deletes a scheduled pod in
// two writes even with grace period 0 (k8s.io/apiserver's Store.Delete: an
// update that sets deletionTimestamp, then the removal), so the informer
// delivers an update and then the deletion. The engine reads nothing of the
// first, and a deleted pod must leave the sets at once: the update is not
// queued (no batch, no flush that the deletion would wait behind), and the
// deletion is one change.
func TestGracelessDeletionIsOneChange(t *testing.T) {
	var events atomic.Int32
	web := pod("frontend", "web", remoteNode, []string{"198.18.1.10"})
	other := pod("frontend", "other", remoteNode, []string{"198.18.1.11"})
	h := startHarness(t, Options{Hooks: Hooks{Event: func(Kind) { events.Add(1) }}}, namespace("frontend"), web, other)
	h.run(t)
	h.waitReady(t)
	ctx := context.Background()
	pods := h.client.CoreV1().Pods("frontend")
	before, _, _ := h.rec.snapshot()
	queued := events.Load()

	// What the API server writes first for a deletion with grace period 0.
	now := metav1.Now()
	web.DeletionTimestamp, web.DeletionGracePeriodSeconds = &now, new(int64)
	if _, err := pods.Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The informer notifies in order: once the next change of the same
	// informer is flushed, the first one has been handled.
	other.Labels["rev"] = "2"
	if _, err := pods.Update(ctx, other, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	upsertedOther := func() bool {
		calls, _, _ := h.rec.snapshot()
		return slices.Contains(calls[len(before):], "upsert Pod/frontend/other") && calls[len(calls)-1] == "flush" && h.w.QueueLen() == 0
	}
	eventually(t, "the other pod's change flushed", upsertedOther)
	calls, _, _ := h.rec.snapshot()
	if slices.Contains(calls[len(before):], "upsert Pod/frontend/web") || events.Load() != queued+1 {
		t.Errorf("after deletionTimestamp was set: engine calls %q, %d events queued; want only the other pod's (1)",
			calls[len(before):], events.Load()-queued)
	}

	if err := pods.Delete(ctx, "web", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deletion flushed", func() bool {
		calls, _, _ := h.rec.snapshot()
		return calls[len(calls)-1] == "flush" && slices.Contains(calls, "delete Pod/frontend/web")
	})
	if events.Load() != queued+2 {
		t.Errorf("%d events queued in all, want 2 (the other pod's change, the deletion)", events.Load()-queued)
	}
}
