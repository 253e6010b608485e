package podwatch

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// These tests run the real engine over nft.Fake: objects created in the fake
// API server must show up as dispatch-map and peer-set elements.
//
//	backend/api  local  (node-a)  198.18.0.20, 2001:db8:a::20   selected by allow-web
//	backend/web  remote (node-b)  198.18.1.10                   peer of allow-web

// holders lists "set" names whose elements start with addr as first key
// component; vmaps and plain sets are told apart by the prefix "vmap:".
func holders(s *nft.State, addr string) []string {
	var out []string
	for _, name := range s.SetNames() {
		set := s.Sets[name]
		for id := range set.Elements.IDs() {
			if id == addr || strings.HasPrefix(id, addr+" ") || strings.HasPrefix(id, addr+"-") {
				if set.VerdictMap {
					out = append(out, "vmap:"+name)
				} else {
					out = append(out, name)
				}
				break
			}
		}
	}
	return out
}

func hasVmap(held []string, name string) bool {
	for _, h := range held {
		if h == "vmap:"+name {
			return true
		}
	}
	return false
}

func hasPlainSet(held []string) bool {
	for _, h := range held {
		if !strings.HasPrefix(h, "vmap:") {
			return true
		}
	}
	return false
}

type engineHarness struct {
	client  *fake.Clientset
	dp      *nft.Fake
	eng     *enforcer.Engine
	w       *Watcher
	watches chan struct{}
}

func startEngine(t *testing.T, client *fake.Clientset, dp *nft.Fake) *engineHarness {
	t.Helper()
	eng, err := enforcer.New(enforcer.Config{NodeName: localNode, Dataplane: dp, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("enforcer.New: %v", err)
	}
	h := &engineHarness{client: client, dp: dp, eng: eng, watches: make(chan struct{}, 100)}
	client.PrependWatchReactor("*", func(k8stesting.Action) (bool, watch.Interface, error) {
		h.watches <- struct{}{}
		return false, nil, nil
	})
	h.w = New(client, eng, Options{Logger: testLogger(t), MinFlushInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, "ready", h.w.Ready)
	for range 3 {
		select {
		case <-h.watches:
		case <-time.After(10 * time.Second):
			t.Fatal("informers did not start watching")
		}
	}
	return h
}

func (h *engineHarness) state(t *testing.T) *nft.State {
	t.Helper()
	s, err := h.dp.Read(context.Background())
	if err != nil {
		t.Fatalf("read fake dataplane: %v", err)
	}
	return s
}

func (h *engineHarness) decide(src, dst string) enforcer.Decision {
	return h.eng.Decide(enforcer.Flow{
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		Protocol: corev1.ProtocolTCP, Port: 8080,
	})
}

func TestEngineGetsClusterState(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(
		namespace("backend"),
		pod("backend", "api", localNode, []string{"198.18.0.20", "2001:db8:a::20"}),
		pod("backend", "web", remoteNode, []string{"198.18.1.10"}),
		ingressPolicy("backend", "allow-web", "api", "web", 8080),
	)
	h := startEngine(t, client, nft.NewFake(nft.DefaultTable))

	s := h.state(t)
	if got := holders(s, "198.18.0.20"); !hasVmap(got, "ingress-v4") {
		t.Errorf("local isolated pod 198.18.0.20 is in %q, want the ingress-v4 dispatch map", got)
	}
	if got := holders(s, "2001:db8:a::20"); !hasVmap(got, "ingress-v6") {
		t.Errorf("local isolated pod 2001:db8:a::20 is in %q, want the ingress-v6 dispatch map", got)
	}
	if got := holders(s, "198.18.1.10"); !hasPlainSet(got) {
		t.Errorf("peer 198.18.1.10 is in %q, want a peer set", got)
	}
	if d := h.decide("198.18.1.10", "198.18.0.20"); !d.Allowed {
		t.Errorf("web -> api denied: %s", d.Reason)
	}

	// The peer goes away: its address leaves the sets, and the flow is denied.
	if err := client.CoreV1().Pods("backend").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "peer removed from sets", func() bool { return len(holders(h.state(t), "198.18.1.10")) == 0 })
	if d := h.decide("198.18.1.10", "198.18.0.20"); d.Allowed {
		t.Errorf("flow from a deleted pod allowed: %s", d.Reason)
	}

	// The local pod stops matching the policy: it leaves the dispatch map.
	api, err := client.CoreV1().Pods("backend").Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	api.Labels = map[string]string{"app": "other"}
	if _, err := client.CoreV1().Pods("backend").Update(ctx, api, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "api leaves the ingress map", func() bool {
		return !hasVmap(holders(h.state(t), "198.18.0.20"), "ingress-v4")
	})
}

// TestRestartTakesOver stops a watcher and starts a new one (new engine, same
// table): its first full reconcile must find nothing to change, so the restart
// leaves no window without rules.
func TestRestartTakesOver(t *testing.T) {
	objs := []runtime.Object{
		namespace("backend"),
		pod("backend", "api", localNode, []string{"198.18.0.20", "2001:db8:a::20"}),
		pod("backend", "web", remoteNode, []string{"198.18.1.10"}),
		ingressPolicy("backend", "allow-web", "api", "web", 8080),
	}
	dp := nft.NewFake(nft.DefaultTable)
	first := fake.NewClientset(objs...)
	t.Run("first", func(t *testing.T) {
		startEngine(t, first, dp)
		if dp.Operations() == 0 {
			t.Fatal("first start programmed nothing")
		}
	}) // its cleanup stopped the watcher; the table stays
	before := dp.Dump()
	if before == "" {
		t.Fatal("table gone after the watcher stopped")
	}
	dp.ResetHistory()
	startEngine(t, fake.NewClientset(objs...), dp)
	if n := dp.Operations(); n != 0 {
		t.Errorf("restart sent %d operations, want 0; transactions:\n%s", n, dp.Transactions())
	}
	if after := dp.Dump(); after != before {
		t.Errorf("table changed across restart:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestTransformKeepsEngineView compiles the same cluster from the pods as the
// API server sends them and from their transformed copies: the desired tables
// and the decisions must be identical, named ports of sidecars included.
func TestTransformKeepsEngineView(t *testing.T) {
	build := func(transform bool) *enforcer.Engine {
		eng, err := enforcer.New(enforcer.Config{NodeName: "node-000", Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 400 {
			p := realisticPod(i)
			if i%7 == 0 {
				p.Spec.HostNetwork = true
			}
			if i%11 == 0 {
				p.Status.Phase = corev1.PodSucceeded
			}
			if transform {
				p = TransformPod(p)
			}
			if err := eng.UpsertPod(p); err != nil {
				t.Fatalf("upsert pod %d: %v", i, err)
			}
		}
		for i := range 50 {
			ns := namespace(fmt.Sprintf("team-%02d", i), nsLabel("team", fmt.Sprint(i%3)))
			np := ingressPolicy(ns.Name, "to-sidecar", "web", "web", 0)
			np.Spec.Ingress[0].Ports[0].Port = ptr(intstr.FromString("proxy-http"))
			np2 := ingressPolicy(ns.Name, "to-metrics", "web", "web", 0)
			np2.Spec.Ingress[0].Ports[0].Port = ptr(intstr.FromString("metrics-http"))
			if transform {
				ns, np, np2 = TransformNamespace(ns), TransformNetworkPolicy(np), TransformNetworkPolicy(np2)
			}
			if err := eng.UpsertNamespace(ns); err != nil {
				t.Fatal(err)
			}
			for _, p := range []*networkingv1.NetworkPolicy{np, np2} {
				if err := eng.UpsertNetworkPolicy(p); err != nil {
					t.Fatal(err)
				}
			}
		}
		return eng
	}
	raw, transformed := build(false), build(true)
	want, got := nft.Render("t", raw.Desired()), nft.Render("t", transformed.Desired())
	if want != got {
		t.Errorf("desired tables differ:\nfrom raw pods:\n%s\nfrom transformed pods:\n%s", want, got)
	}
	if raw.Stats() != transformed.Stats() {
		t.Errorf("stats differ: raw %+v, transformed %+v", raw.Stats(), transformed.Stats())
	}
	for _, port := range []uint16{15001, 9090, 8080} {
		f := enforcer.Flow{Src: netip.MustParseAddr(benchIP(50)), Dst: netip.MustParseAddr(benchIP(100)), Protocol: corev1.ProtocolTCP, Port: port}
		if a, b := raw.Decide(f), transformed.Decide(f); a.Allowed != b.Allowed || a.Reason != b.Reason {
			t.Errorf("port %d: raw %+v, transformed %+v", port, a, b)
		}
	}
	if !strings.Contains(want, "15001") {
		t.Errorf("the sidecar's named port does not appear in the table:\n%s", want)
	}
}

func ptr[T any](v T) *T { return &v }

// TestAuditAnnotationReachesEngine: the transform keeps a policy's
// enforcement annotation, so the engine audits what the annotated policy
// would deny (allowed, Audit set); removing the annotation enforces at once.
func TestAuditAnnotationReachesEngine(t *testing.T) {
	ctx := context.Background()
	deny := ingressPolicy("backend", "allow-lb", "api", "lb", 8080)
	deny.Annotations = map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit, "other": "x"}
	client := fake.NewClientset(
		namespace("backend"),
		pod("backend", "api", localNode, []string{"198.18.0.20"}),
		pod("backend", "web", remoteNode, []string{"198.18.1.10"}),
		deny,
	)
	h := startEngine(t, client, nft.NewFake(nft.DefaultTable))
	if d := h.decide("198.18.1.10", "198.18.0.20"); !d.Allowed || d.Ingress.Audit == nil || d.Ingress.Audit.Allowed {
		t.Fatalf("web -> api with the policy in audit mode: allowed %v, audit %+v; want allowed with a would-deny audit (%s)", d.Allowed, d.Ingress.Audit, d.Reason)
	}
	deny.Annotations = nil
	if _, err := client.NetworkingV1().NetworkPolicies("backend").Update(ctx, deny, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the policy enforced", func() bool { return !h.decide("198.18.1.10", "198.18.0.20").Allowed })
}
