package podwatch

// Sync, the one-shot feed of explain and dump --desired, over client-go's fake
// clientset and the real engine (model only). IP plan of fixture_test.go:
//
//	backend/api  local  (node-a)  198.18.0.20, 2001:db8:a::20   selected by allow-web
//	backend/web  remote (node-b)  198.18.1.10                   peer of allow-web

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// syncCluster is the cluster of the Sync tests.
func syncCluster() []runtime.Object {
	return []runtime.Object{
		namespace("backend"),
		pod("backend", "api", localNode, []string{"198.18.0.20", "2001:db8:a::20"}),
		pod("backend", "web", remoteNode, []string{"198.18.1.10"}),
		ingressPolicy("backend", "allow-web", "api", "web", 8080),
	}
}

// openWatches serves the informers' watches from the fake's tracker and counts
// those not stopped yet.
func openWatches(client *fake.Clientset) *atomic.Int32 {
	var open atomic.Int32
	client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		open.Add(1)
		return true, &countedWatch{Interface: w, open: &open}, nil
	})
	return &open
}

type countedWatch struct {
	watch.Interface
	open    *atomic.Int32
	stopped atomic.Bool
}

func (w *countedWatch) Stop() {
	if w.stopped.CompareAndSwap(false, true) {
		w.open.Add(-1)
	}
	w.Interface.Stop()
}

func TestSyncFeedsEngineAndStops(t *testing.T) {
	client := fake.NewClientset(syncCluster()...)
	open := openWatches(client)
	eng, err := enforcer.New(enforcer.Config{NodeName: localNode, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Sync(ctx, client, eng, Options{Logger: testLogger(t)}); err != nil {
		t.Fatalf("Sync: %v", err)
	}

	// Everything listed is in the engine when Sync returns: the same model as
	// an engine given the objects directly.
	want, err := enforcer.New(enforcer.Config{NodeName: localNode, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	upsertAll(t, want, syncCluster())
	if got, want := nft.Render("t", eng.Desired()), nft.Render("t", want.Desired()); got != want {
		t.Errorf("desired table after Sync:\n%s\nwant (objects upserted directly):\n%s", got, want)
	}
	if got, want := eng.Stats(), want.Stats(); got != want {
		t.Errorf("stats after Sync = %+v, want %+v", got, want)
	}
	if ips, ok := eng.PodIPs("backend", "web"); !ok || len(ips) != 1 {
		t.Errorf("PodIPs(backend/web) = %v, %v; want its address", ips, ok)
	}
	// The informers are stopped: no watch stays open.
	if n := open.Load(); n != 0 {
		t.Errorf("%d watches still open after Sync returned", n)
	}
}

// upsertAll gives eng the objects as the API server holds them.
func upsertAll(t *testing.T, eng *enforcer.Engine, objs []runtime.Object) {
	t.Helper()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Namespace:
			err = eng.UpsertNamespace(o)
		case *corev1.Pod:
			err = eng.UpsertPod(o)
		case *networkingv1.NetworkPolicy:
			err = eng.UpsertNetworkPolicy(o)
		default:
			t.Fatalf("unexpected %T", o)
		}
		if err != nil {
			t.Fatalf("upsert: %v", err)
		}
	}
}

func TestSyncListErrors(t *testing.T) {
	podsGR := schema.GroupResource{Resource: "pods"}
	for _, tc := range []struct {
		name string
		// listErr is what the API server answers every list of pods.
		listErr error
		// is tells the error Sync must return.
		is      func(error) bool
		timeout time.Duration
	}{
		{
			name:    "forbidden ends the sync at once",
			listErr: apierrors.NewForbidden(podsGR, "", errors.New("no RBAC rule")),
			is:      apierrors.IsForbidden,
			timeout: time.Minute, // a retry until the deadline would fail the test's check
		},
		{
			name:    "a transient error is retried until the deadline and reported",
			listErr: apierrors.NewInternalError(errors.New("etcd is slow")),
			is:      apierrors.IsInternalError,
			timeout: 2 * time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(syncCluster()...)
			client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, tc.listErr
			})
			eng, err := enforcer.New(enforcer.Config{NodeName: localNode, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err = Sync(ctx, client, eng, Options{Logger: testLogger(t)})
			if err == nil || !tc.is(err) {
				t.Fatalf("Sync = %v, want the list error %v", err, tc.listErr)
			}
			if !strings.Contains(err.Error(), string(KindPod)) {
				t.Errorf("Sync error %q does not name the kind it could not list", err)
			}
			if ctx.Err() != nil && apierrors.IsForbidden(tc.listErr) {
				t.Errorf("Sync waited for the deadline on a refusal: %v", err)
			}
		})
	}
}
