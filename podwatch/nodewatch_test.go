package podwatch

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func nodeObject(name, addr string, kv ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: addr}}}}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Labels[kv[i]] = kv[i+1]
	}
	return n
}

// TestNodesWatchedOnlyWithTheOption: with Options.Nodes the Nodes are in
// the first batch (after namespaces, before pods) and their changes reach
// the engine, transformed; without it no Node is listed or watched at all
// (the daemon's role may lack the permission).
func TestNodesWatchedOnlyWithTheOption(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[on], func(t *testing.T) {
			h := startHarness(t, Options{Nodes: on}, namespace("frontend"), nodeObject("n1", "198.18.0.1", "role", "infra"),
				pod("frontend", "web", localNode, []string{"198.18.16.1"}))
			h.run(t)
			h.waitReady(t)
			calls, _, _ := h.rec.snapshot()
			want := []string{"upsert Namespace/frontend", "upsert Pod/frontend/web", "reconcile"}
			if on {
				want = slices.Insert(want, 1, "upsert Node/n1")
			}
			if !slices.Equal(calls, want) {
				t.Fatalf("calls = %q, want %q", calls, want)
			}
			for _, a := range h.client.Actions() {
				if a.GetResource().Resource == "nodes" && !on {
					t.Errorf("nodes %s without the option", a.GetVerb())
				}
			}
			if !on {
				return
			}
			eventually(t, "four watches", func() bool { return h.watches.Load() >= 4 })
			ctx := context.Background()
			relabelled := nodeObject("n1", "198.18.0.2", "role", "worker")
			relabelled.Annotations = map[string]string{"big": "annotation"}
			if _, err := h.client.CoreV1().Nodes().Update(ctx, relabelled, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "relabelled node applied", func() bool {
				n, _ := h.rec.object("Node/n1").(*corev1.Node)
				return n != nil && n.Labels["role"] == "worker" && n.Status.Addresses[0].Address == "198.18.0.2" && n.Annotations == nil
			})
			if err := h.client.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "node deleted", func() bool {
				calls, _, _ := h.rec.snapshot()
				return slices.Contains(calls, "delete Node/n1")
			})
		})
	}
}
