package main

// Drift repaired for real: the daemon over a fake API server programs a node
// namespace's kernel; then the table is changed behind its back with the nft
// binary, the way an operator or another program could. Topology (routed, both
// pods on node-a):
//
//	backend/api  198.18.1.10  app=api, isolated for ingress by backend/allow-web
//	backend/web  198.18.1.20  app=web, the only allowed peer

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// TestPrivilegedDaemonRepairsDrift: with the periodic reconcile an hour away,
// every kind of tampering is reported by the kernel's change monitor, repaired
// at once, counted, and logged once.
func TestPrivilegedDaemonRepairsDrift(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	const table = "nftw-drift"
	node := nfttest.NewNetNS(t)
	k, err := nft.NewKernel(nft.WithNetNS(node.FD), nft.WithTable(table))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	web := &networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "backend"}},
		testPod("backend", "api", "node-a", "198.18.1.10"),
		testPod("backend", "web", "node-a", "198.18.1.20"),
		&networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "backend", Name: "allow-web"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{*web}}},
			},
		},
	)
	logs := &syncBuffer{}
	d := &daemon{
		cfg:       runConfig{NodeName: "node-a", Table: table, ResyncPeriod: time.Hour},
		log:       slog.New(slog.NewTextHandler(logs, nil)),
		client:    client,
		dataplane: k,
		notifier:  notifierFromEnv(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	waitLog := func(what, line string, n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); strings.Count(logs.String(), line) < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q not logged %d times; log:\n%s", what, line, n, logs)
			}
		}
	}
	waitLog("start", "ready: the dataplane enforces", 1)
	want := nfttest.Normalize(nfttest.ListTable(t, node, table))

	const repaired = "repaired the table after another process changed it"
	for i, tc := range []struct{ name, script string }{
		{"delete the table", "delete table inet " + table},
		{"flush the dispatch map", "flush map inet " + table + " ingress-v4"},
		{"delete a vmap element", "delete element inet " + table + " ingress-v4 { 198.18.1.10 }"},
		{"flush a pod chain", "flush chain inet " + table + " " + podChain(t, k)},
		{"accept at the top of a base chain", "insert rule inet " + table + " ingress accept"},
		{"flush a peer set", "flush set inet " + table + " " + peerSet(t, k)},
	} {
		time.Sleep(driftRepairInterval) // each change alone, not paced behind the last
		start := time.Now()
		if out, err := node.Exec("nft", tc.script); err != nil {
			t.Fatalf("%s: nft %s: %v\n%s", tc.name, tc.script, err, out)
		}
		waitLog(tc.name, repaired, i+1)
		took := time.Since(start)
		if got := nfttest.Normalize(nfttest.ListTable(t, node, table)); got != want {
			t.Fatalf("%s: table after the repair differs:\n--- want\n%s\n--- got\n%s", tc.name, want, got)
		}
		t.Logf("%s: repaired %v after the change", tc.name, took.Round(time.Millisecond))
	}
	if n := strings.Count(logs.String(), repaired); n != 6 {
		t.Errorf("%d repair lines for 6 changes:\n%s", n, logs)
	}
	// The log names what was done and by whom.
	if !strings.Contains(logs.String(), `delete table`) || !strings.Contains(logs.String(), "by nft, pid") {
		t.Errorf("the repair lines do not say what changed and who changed it:\n%s", logs)
	}
}

// podChain and peerSet name objects of the running program, read back from the
// kernel, so the test does not depend on the engine's naming.
func podChain(t *testing.T, k *nft.Kernel) string {
	t.Helper()
	st, err := k.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name := range st.Chains {
		if strings.HasPrefix(name, "pod-in-") {
			return name
		}
	}
	t.Fatal("no pod chain in the program")
	return ""
}

func peerSet(t *testing.T, k *nft.Kernel) string {
	t.Helper()
	st, err := k.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range st.Sets {
		if strings.HasPrefix(name, "peer-v4-") && len(s.Elements) > 0 {
			return name
		}
	}
	t.Fatal("no filled peer set in the program")
	return ""
}
