package podwatch

// ClusterNetworkPolicies follow their API: watched while discovery serves
// them, removed from the engine when it stops, waited for before Ready only
// when they exist. Namespaces and pods of fixture_test.go: frontend/web
// 198.18.0.10 (local), backend/api 198.18.1.20 (remote).

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/nftwarden/nftwarden/enforcer"
)

// lockedBuffer is a log sink that tests may read while the watcher writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// cnpHarness is a harness whose watcher also watches ClusterNetworkPolicies
// of a fake network-policy-api clientset; discovery answers served.
type cnpHarness struct {
	*harness
	cnps       *cnpfake.Clientset
	served     atomic.Bool
	cnpWatches atomic.Int32
	logs       lockedBuffer
	mu         sync.Mutex
	apiHooks   []bool
}

func startCNPHarness(t *testing.T, served bool, cnps []runtime.Object, objs ...runtime.Object) *cnpHarness {
	t.Helper()
	c := &cnpHarness{cnps: cnpfake.NewSimpleClientset(cnps...)}
	c.served.Store(served)
	c.cnps.PrependWatchReactor("*", func(k8stesting.Action) (bool, watch.Interface, error) {
		c.cnpWatches.Add(1)
		return false, nil, nil
	})
	c.harness = startHarness(t, Options{
		ClusterNetworkPolicies: ClusterNetworkPolicyOptions{Client: c.cnps, DiscoveryPeriod: 20 * time.Millisecond},
		Hooks: Hooks{ClusterNetworkPolicyAPI: func(served bool) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.apiHooks = append(c.apiHooks, served)
		}},
	}, objs...)
	c.w.log = slog.New(slog.NewTextHandler(&c.logs, nil))
	c.w.cnp.served = func(context.Context) (bool, error) { return c.served.Load(), nil }
	return c
}

func (c *cnpHarness) hooks() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.apiHooks)
}

func (c *cnpHarness) has(name string) func() bool {
	return func() bool { return c.rec.object("ClusterNetworkPolicy/"+name) != nil }
}

func TestClusterNetworkPoliciesFollowTheAPI(t *testing.T) {
	ctx := context.Background()
	c := startCNPHarness(t, false, []runtime.Object{denyFromCNP("deny-a", "backend", "frontend")}, namespace("backend"))
	c.run(t)
	c.waitReady(t)

	// Not served: ready without them, said once however often discovery is asked.
	time.Sleep(200 * time.Millisecond)
	if c.has("deny-a")() {
		t.Fatal("a ClusterNetworkPolicy reached the engine while its API is not served")
	}
	if n := c.logs.count("ClusterNetworkPolicy API is not served"); n != 1 {
		t.Errorf("logged %d times that the API is not served, want 1", n)
	}

	// The CRD appears: the policies are listed and watched, without a restart.
	c.served.Store(true)
	eventually(t, "deny-a upserted", c.has("deny-a"))
	eventually(t, "the CNP watch", func() bool { return c.cnpWatches.Load() >= 1 })
	_, err := c.cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, denyFromCNP("deny-b", "frontend", "backend"), metav1.CreateOptions{})
	must(t, err)
	eventually(t, "deny-b upserted", c.has("deny-b"))
	must(t, c.cnps.PolicyV1beta1().ClusterNetworkPolicies().Delete(ctx, "deny-a", metav1.DeleteOptions{}))
	eventually(t, "deny-a deleted", func() bool { return !c.has("deny-a")() })

	// The CRD goes: what the engine had is deleted, and it waits for the API again.
	c.served.Store(false)
	eventually(t, "deny-b deleted", func() bool { return !c.has("deny-b")() })
	c.served.Store(true)
	eventually(t, "deny-b upserted again", c.has("deny-b"))

	if got, want := c.hooks(), []bool{false, true, false, true}; !slices.Equal(got, want) {
		t.Errorf("ClusterNetworkPolicyAPI hook calls = %v, want %v", got, want)
	}
	for line, want := range map[string]int{"ClusterNetworkPolicy API appeared": 2, "ClusterNetworkPolicy API is gone": 1, "ClusterNetworkPolicy API is not served": 1} {
		if n := c.logs.count(line); n != want {
			t.Errorf("%q logged %d times, want %d", line, n, want)
		}
	}
	calls, _, _ := c.rec.snapshot()
	if n := slices.Index(calls, "delete ClusterNetworkPolicy/deny-b"); n < 0 {
		t.Errorf("no delete of deny-b when the API went: %q", calls)
	}
}

// TestReadyWaitsForClusterNetworkPolicies holds the ClusterNetworkPolicy list
// back while the API is served: nothing is programmed and the watcher is not
// ready until it is listed, and the first reconcile holds it (no window in
// which NetworkPolicies are enforced but an Admin Deny is not).
func TestReadyWaitsForClusterNetworkPolicies(t *testing.T) {
	release := make(chan struct{})
	c := startCNPHarness(t, true, []runtime.Object{denyFromCNP("deny-a", "backend", "frontend")}, namespace("backend"))
	c.cnps.PrependReactor("list", "clusternetworkpolicies", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-release
		return false, nil, nil
	})
	c.run(t)
	time.Sleep(300 * time.Millisecond)
	if calls, _, _ := c.rec.snapshot(); len(calls) != 0 || c.w.Ready() {
		t.Fatalf("ready %v, engine calls %q before the ClusterNetworkPolicies were listed", c.w.Ready(), calls)
	}
	close(release)
	c.waitReady(t)
	calls, _, _ := c.rec.snapshot()
	want := []string{"upsert Namespace/backend", "upsert ClusterNetworkPolicy/deny-a", "reconcile"}
	if !slices.Equal(calls, want) {
		t.Errorf("calls = %q, want %q", calls, want)
	}
}

// TestReadyWaitsForDiscovery: until discovery answers, the watcher cannot tell
// whether ClusterNetworkPolicies exist, so it is not ready.
func TestReadyWaitsForDiscovery(t *testing.T) {
	c := startCNPHarness(t, false, nil, namespace("backend"))
	var answer atomic.Bool
	c.w.cnp.served = func(context.Context) (bool, error) {
		if !answer.Load() {
			return false, errors.New("test: discovery unreachable")
		}
		return false, nil
	}
	c.run(t)
	time.Sleep(300 * time.Millisecond)
	if c.w.Ready() {
		t.Fatal("ready before discovery answered")
	}
	answer.Store(true)
	c.waitReady(t)
	if got := c.hooks(); !slices.Equal(got, []bool{false}) {
		t.Errorf("ClusterNetworkPolicyAPI hook calls = %v, want [false]", got)
	}
}

// TestDiscoverClusterNetworkPolicyAPI asks a fake discovery what it serves.
func TestDiscoverClusterNetworkPolicyAPI(t *testing.T) {
	gv := func(resources ...string) *metav1.APIResourceList {
		l := &metav1.APIResourceList{GroupVersion: ClusterNetworkPolicyGroupVersion}
		for _, r := range resources {
			l.APIResources = append(l.APIResources, metav1.APIResource{Name: r})
		}
		return l
	}
	for _, tc := range []struct {
		name      string
		resources []*metav1.APIResourceList
		fail      bool
		want      bool
		wantErr   bool
	}{
		{name: "no CRD", want: false},
		{name: "served", resources: []*metav1.APIResourceList{gv("clusternetworkpolicies", "clusternetworkpolicies/status")}, want: true},
		{name: "other resources of the group only", resources: []*metav1.APIResourceList{gv("somethingelse")}, want: false},
		{name: "only v1alpha2", resources: []*metav1.APIResourceList{{GroupVersion: "policy.networking.k8s.io/v1alpha2", APIResources: []metav1.APIResource{{Name: "clusternetworkpolicies"}}}}, want: false},
		{name: "discovery fails", fail: true, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := cnpfake.NewSimpleClientset()
			client.Resources = tc.resources
			if tc.fail {
				client.PrependReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, errors.New("test: connection refused")
				})
			}
			c := newCNPWatch(&Watcher{}, ClusterNetworkPolicyOptions{Client: client})
			got, err := c.served(context.Background())
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("served = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestSyncClusterNetworkPolicies: the one-shot Sync lists ClusterNetworkPolicies
// when they are served (explain then names the admin rule), and works without.
func TestSyncClusterNetworkPolicies(t *testing.T) {
	objs := []runtime.Object{
		namespace("frontend"), namespace("backend"),
		pod("frontend", "web", localNode, []string{"198.18.0.10"}),
		pod("backend", "api", remoteNode, []string{"198.18.1.20"}),
	}
	for _, tc := range []struct {
		name        string
		served      bool
		wantAllowed bool
		wantRule    string
	}{
		{name: "served", served: true, wantRule: "admin policy deny-a rule 0 (deny-frontend)"},
		{name: "not served", served: false, wantAllowed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(objs...)
			open := openWatches(client)
			cnps := cnpfake.NewSimpleClientset(denyFromCNP("deny-a", "backend", "frontend"))
			if tc.served {
				cnps.Resources = []*metav1.APIResourceList{{GroupVersion: ClusterNetworkPolicyGroupVersion, APIResources: []metav1.APIResource{{Name: "clusternetworkpolicies"}}}}
			}
			eng, err := enforcer.New(enforcer.Config{NodeName: localNode, Logger: testLogger(t)})
			must(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			opts := Options{Logger: testLogger(t), ClusterNetworkPolicies: ClusterNetworkPolicyOptions{Client: cnps}}
			must(t, Sync(ctx, client, eng, opts))
			d := eng.Decide(enforcer.Flow{Src: mustAddr("198.18.0.10"), Dst: mustAddr("198.18.1.20"), Protocol: "TCP", Port: 80})
			if d.Allowed != tc.wantAllowed || d.Ingress.Rule != tc.wantRule {
				t.Errorf("decision allowed %v by %q (%s), want allowed %v by %q", d.Allowed, d.Ingress.Rule, d.Reason, tc.wantAllowed, tc.wantRule)
			}
			if n := open.Load(); n != 0 {
				t.Errorf("%d watches still open after Sync returned", n)
			}
		})
	}
}

func TestTransformClusterNetworkPolicy(t *testing.T) {
	full := denyFromCNP("deny-a", "backend", "frontend")
	full.ResourceVersion = "7"
	full.Annotations = map[string]string{"note": "x"}
	full.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	full.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}}
	got, err := Transform(full)
	must(t, err)
	small, ok := got.(*v1beta1.ClusterNetworkPolicy)
	if !ok {
		t.Fatalf("Transform returned %T", got)
	}
	if small.Annotations != nil || small.ManagedFields != nil || small.Status.Conditions != nil || small.Name != "deny-a" || small.Spec.Priority != 10 {
		t.Errorf("transformed policy keeps what the engine does not read, or lost what it does: %+v", small)
	}
	bumped := small.DeepCopy()
	bumped.ResourceVersion = "8"
	if !sameForEngine(small, bumped) {
		t.Error("an update that only bumps resourceVersion is not the same for the engine")
	}
	changed := small.DeepCopy()
	changed.Spec.Priority = 11
	if sameForEngine(small, changed) {
		t.Error("a priority change is the same for the engine")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
