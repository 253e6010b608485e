package podwatch

// Each invalid object is logged once per version, by the engine, whether it
// reaches the engine through Run (initial sync, then periodic resyncs) or Sync.
// Addresses of fixture_test.go; "198.18.0.300" is the malformed one.

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// linesWith counts the lines of logs that mention s.
func linesWith(logs *bytes.Buffer, s string) int {
	n := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// invalidObjects are the objects the engine rejects (in part), by the name
// their log lines carry.
func invalidObjects() (objs []runtime.Object, names []string) {
	sideways := ingressPolicy("frontend", "sideways", "web", "x", 80)
	sideways.Spec.PolicyTypes = []networkingv1.PolicyType{"Sideways"}
	badSelector := ingressPolicy("frontend", "bad-selector", "web", "x", 80)
	badSelector.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "app", Operator: metav1.LabelSelectorOpIn}, // In without values
	}}
	objs = []runtime.Object{
		namespace("frontend"),
		pod("frontend", "web", localNode, []string{"198.18.0.10"}),
		pod("frontend", "bad-ip", localNode, []string{"198.18.0.300"}),
		sideways,
		badSelector,
	}
	return objs, []string{"frontend/bad-ip", "frontend/sideways", "frontend/bad-selector"}
}

func TestInvalidObjectLoggedOnce(t *testing.T) {
	objs, names := invalidObjects()

	t.Run("run with resyncs", func(t *testing.T) {
		// Read once Run has returned: slog's handler serializes the writes of
		// the engine and the watcher, not a reader.
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		client := fake.NewClientset(objs...)
		eng, err := enforcer.New(enforcer.Config{NodeName: localNode, Dataplane: nft.NewFake(nft.DefaultTable), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		var reconciles, rejections atomic.Int32
		w := New(client, eng, Options{ResyncPeriod: 10 * time.Millisecond, Logger: log, Hooks: Hooks{
			Flushed: func(res enforcer.FlushResult, err error) {
				if err == nil && res.Full {
					reconciles.Add(1)
				}
			},
			ObjectError: func(Kind, string, error) { rejections.Add(1) },
		}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		stop := sync.OnceFunc(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		defer stop()
		eventually(t, "five full reconciles", func() bool { return reconciles.Load() >= 5 })

		// A new version of an invalid policy, still invalid: one more line.
		np, err := client.NetworkingV1().NetworkPolicies("frontend").Get(ctx, "bad-selector", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		np.Spec.Ingress[0].Ports[0].Port.IntVal = 81
		if _, err := client.NetworkingV1().NetworkPolicies("frontend").Update(ctx, np, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the new version applied", func() bool { return rejections.Load() >= int32(len(names))+1 })
		seen := reconciles.Load()
		eventually(t, "five more full reconciles", func() bool { return reconciles.Load() >= seen+5 })
		stop()

		for name, want := range map[string]int{"frontend/bad-ip": 1, "frontend/sideways": 1, "frontend/bad-selector": 2} {
			if n := linesWith(&logs, name); n != want {
				t.Errorf("%s logged %d times over %d versions, the initial sync and %d resyncs, want %d",
					name, n, want, reconciles.Load()-1, want)
			}
		}
	})

	t.Run("sync", func(t *testing.T) {
		var logs bytes.Buffer // read once Sync has returned
		log := slog.New(slog.NewTextHandler(&logs, nil))
		eng, err := enforcer.New(enforcer.Config{NodeName: localNode, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := Sync(context.Background(), fake.NewClientset(objs...), eng, Options{Logger: log}); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		for _, name := range names {
			if n := linesWith(&logs, name); n != 1 {
				t.Errorf("%s logged %d times by a sync, want once", name, n)
			}
		}
	})
}
