package enforcer

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftwarden/nftwarden/nft"
)

// IP plan: the pods of TestGroupMembersByNumber take 198.18.0.1-4 (the
// web side) and 198.18.0.10-11 (db and client, on node-a); 198.19.0.1 is
// no pod's.

func indexPod(id string) *podRecord {
	ns, _, _ := strings.Cut(id, "/")
	return &podRecord{ID: id, nsLen: uint32(len(ns))}
}

// checkPodIndex holds x against live, the records it should hold: each is
// found by ID and by its number, all yields them once each, no two share a
// number, and a free number holds no record.
func checkPodIndex(t *testing.T, x *podIndex, live map[string]*podRecord) {
	t.Helper()
	seen := map[podNum]string{}
	for id, p := range live {
		n, ok := x.num(id)
		if !ok || x.get(id) != p || x.rec(n) != p {
			t.Fatalf("%s: num %d %v, get %p, rec %p; want record %p", id, n, ok, x.get(id), x.rec(n), p)
		}
		if other, dup := seen[n]; dup {
			t.Fatalf("%s and %s share number %d", id, other, n)
		}
		seen[n] = id
	}
	all := map[podNum]*podRecord{}
	for n, p := range x.all() {
		all[n] = p
	}
	if len(all) != len(live) {
		t.Fatalf("all yields %d pods, want %d", len(all), len(live))
	}
	for _, n := range x.free {
		if x.rec(n) != nil {
			t.Fatalf("free number %d holds %s", n, x.rec(n).ID)
		}
	}
	if len(x.free)+len(live) != len(x.recs) {
		t.Fatalf("%d free + %d live numbers, table of %d", len(x.free), len(live), len(x.recs))
	}
}

// TestPodIndexNumbers: a pod keeps its number across updates, a deleted
// pod's number goes to the next new pod (the last freed first), and the
// table grows only when no number is free.
func TestPodIndexNumbers(t *testing.T) {
	var x podIndex
	live := map[string]*podRecord{}
	for i, step := range []struct {
		op   string // put or remove
		id   string
		want podNum
	}{
		{"put", "ns/a", 0},
		{"put", "ns/b", 1},
		{"put", "other/a", 2},
		{"put", "ns/a", 0}, // an update keeps the number
		{"remove", "ns/b", 1},
		{"put", "ns/c", 1}, // reused
		{"put", "ns/b", 3}, // back, but its number is c's
		{"remove", "ns/a", 0},
		{"remove", "other/a", 2},
		{"put", "x/y", 2}, // the last freed first
		{"put", "x/z", 0},
		{"put", "x/w", 4},
		{"put", "a/b/c", 5}, // a namespace with a slash: found by either split
		{"remove", "a/b/c", 5},
		{"put", "a/b/d", 5},
	} {
		var got podNum
		switch step.op {
		case "put":
			p := indexPod(step.id)
			got, live[step.id] = x.put(p), p
		case "remove":
			got = x.remove(live[step.id])
			delete(live, step.id)
			if x.get(step.id) != nil {
				t.Fatalf("step %d: %s still found after remove", i, step.id)
			}
		}
		if got != step.want {
			t.Fatalf("step %d: %s %s = number %d, want %d", i, step.op, step.id, got, step.want)
		}
		checkPodIndex(t, &x, live)
	}
}

// TestPodIndexManyPods: 10,000 pods are numbered 0 to 9,999; the pods that
// replace a third of them deleted take exactly the freed numbers, and each
// namespace yields its pods with their numbers.
func TestPodIndexManyPods(t *testing.T) {
	const n = 10000
	var x podIndex
	live := map[string]*podRecord{}
	id := func(i int) string { return fmt.Sprintf("ns-%d/pod-%d", i%10, i) }
	for i := range n {
		p := indexPod(id(i))
		if got := x.put(p); got != podNum(i) {
			t.Fatalf("pod %d numbered %d", i, got)
		}
		live[p.ID] = p
	}
	freed := map[podNum]bool{}
	for i := 0; i < n; i += 3 {
		freed[x.remove(live[id(i)])] = true
		delete(live, id(i))
	}
	checkPodIndex(t, &x, live)
	for i := n; i < n+len(freed); i++ {
		p := indexPod(id(i))
		got := x.put(p)
		if !freed[got] {
			t.Fatalf("new pod %d numbered %d, not a freed number", i, got)
		}
		delete(freed, got)
		live[p.ID] = p
	}
	if len(x.recs) != n {
		t.Errorf("table grew to %d for %d pods", len(x.recs), n)
	}
	checkPodIndex(t, &x, live)
	for ns := range 10 {
		name := fmt.Sprintf("ns-%d", ns)
		count := 0
		for k, p := range x.inNamespace(name) {
			if p.Namespace() != name || x.rec(k) != p || live[p.ID] != p {
				t.Fatalf("inNamespace(%s) yields %d %s", name, k, p.ID)
			}
			count++
		}
		if count == 0 {
			t.Fatalf("namespace %s has no pod", name)
		}
	}
}

func memberPod(name, ip, app string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "c",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{PodIP: ip, Phase: corev1.PodRunning},
	}
}

// webMembers returns the IDs of the members of the shop group of app=web
// (every number naming a live pod).
func webMembers(t *testing.T, e *Engine) []string {
	t.Helper()
	var ids []string
	for key, g := range e.c.groups.byKey {
		if !strings.Contains(key, "app=web") {
			continue
		}
		for n := range g.members {
			p := e.m.pods.rec(n)
			if p == nil {
				t.Fatalf("group %s holds number %d, which no pod has", key, n)
			}
			ids = append(ids, p.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// TestGroupMembersByNumber follows the members of a peer group (app=web,
// a peer of an ingress rule and of an egress rule with a named port)
// through deletions, relabels and re-adds where new pods take the numbers
// of deleted ones: a group must never count a new pod as the deleted pod
// whose number it took. After every step the members are compared, and
// every flow of the grid traced through the program is held against Decide.
func TestGroupMembersByNumber(t *testing.T) {
	fake := nft.NewFake(nft.DefaultTable)
	e, err := New(Config{NodeName: "node-a", Dataplane: fake, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	db, client := memberPod("db", "198.18.0.10", "db"), memberPod("client", "198.18.0.11", "client")
	db.Spec.NodeName, client.Spec.NodeName = "node-a", "node-a"
	must(e.UpsertPod(db))
	must(e.UpsertPod(client))
	tcp, port80, http := corev1.ProtocolTCP, intstr.FromInt32(80), intstr.FromString("http")
	web := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	must(e.UpsertNetworkPolicy(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "from-web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: web, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port80}}}},
		},
	}))
	must(e.UpsertNetworkPolicy(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "to-web-http"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: web, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &http}}}},
		},
	}))
	grid := []string{"198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.10", "198.18.0.11", "198.19.0.1"}
	upsert := func(p *corev1.Pod) func() { return func() { must(e.UpsertPod(p)) } }
	del := func(name string) func() { return func() { e.DeletePod("shop", name) } }
	finished := memberPod("a", "198.18.0.1", "web")
	finished.Status.Phase = corev1.PodSucceeded
	for _, step := range []struct {
		name string
		do   []func()
		want []string
	}{
		{"a joins", []func(){upsert(memberPod("a", "198.18.0.1", "web"))}, []string{"shop/a"}},
		{"b is no web pod", []func(){upsert(memberPod("b", "198.18.0.2", "other"))}, []string{"shop/a"}},
		{"a deleted", []func(){del("a")}, nil},
		{"c takes a's number, not web", []func(){upsert(memberPod("c", "198.18.0.3", "other"))}, nil},
		{"c relabelled web", []func(){upsert(memberPod("c", "198.18.0.3", "web"))}, []string{"shop/c"}},
		{"c relabelled back", []func(){upsert(memberPod("c", "198.18.0.3", "other"))}, nil},
		{"a back", []func(){upsert(memberPod("a", "198.18.0.1", "web"))}, []string{"shop/a"}},
		{"b deleted, d takes its number and address as web", []func(){del("b"), upsert(memberPod("d", "198.18.0.2", "web"))}, []string{"shop/a", "shop/d"}},
		{"c moves and joins", []func(){upsert(memberPod("c", "198.18.0.4", "web"))}, []string{"shop/a", "shop/c", "shop/d"}},
		{"c and d deleted, e and f take their numbers", []func(){del("c"), del("d"), upsert(memberPod("e", "198.18.0.3", "web")), upsert(memberPod("f", "198.18.0.4", "other"))}, []string{"shop/a", "shop/e"}},
		{"a finishes", []func(){upsert(finished)}, []string{"shop/e"}},
		{"a deleted, g takes its number and address", []func(){del("a"), upsert(memberPod("g", "198.18.0.1", "other"))}, []string{"shop/e"}},
		{"every pod deleted", []func(){del("e"), del("f"), del("g")}, nil},
		{"h and i take the numbers back", []func(){upsert(memberPod("h", "198.18.0.2", "web")), upsert(memberPod("i", "198.18.0.3", "other"))}, []string{"shop/h"}},
	} {
		for _, do := range step.do {
			do()
		}
		if got := webMembers(t, e); !slices.Equal(got, step.want) {
			t.Fatalf("%s: members %v, want %v", step.name, got, step.want)
		}
		if len(e.c.groups.byKey) == 0 {
			t.Fatalf("%s: no group", step.name)
		}
		checkTiersGridOf(t, e, fake, grid)
		if t.Failed() {
			t.Fatalf("after %s (groups %v)", step.name, slices.Collect(maps.Keys(e.c.groups.byKey)))
		}
	}
}
