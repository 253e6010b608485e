package daemon

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
)

// zeroTrustPods is a small cluster for the recipe: two application
// namespaces, the cluster DNS and another kube-system pod.
var zeroTrustPods = []struct {
	ns, name, ip string
	labels       map[string]string
}{
	{"team-a", "web", "198.18.0.10", map[string]string{"app": "web"}},
	{"team-b", "api", "198.18.0.20", map[string]string{"app": "api"}},
	{"kube-system", "coredns", "198.18.0.53", map[string]string{"k8s-app": "kube-dns"}},
	{"kube-system", "metrics", "198.18.0.60", map[string]string{"app": "metrics"}},
}

// TestZeroTrustBaseline loads deploy/zero-trust-baseline.yaml (strictly
// decoded) into a model-only engine and checks what the README promises of it
// with the reference evaluator: pods outside kube-system reach nothing but
// the cluster DNS, nothing reaches them from pods, kube-system is untouched,
// and a namespace owner's NetworkPolicy opens what it allows (Baseline is
// below NetworkPolicy). The integration suite proves the same with packets.
func TestZeroTrustBaseline(t *testing.T) {
	objs := decodeManifests(t, "deploy/zero-trust-baseline.yaml")
	if len(objs) != 1 {
		t.Fatalf("want one ClusterNetworkPolicy, got %d objects", len(objs))
	}
	cnp, ok := objs[0].(*policyv1beta1.ClusterNetworkPolicy)
	if !ok {
		t.Fatalf("want a ClusterNetworkPolicy, got %T", objs[0])
	}
	if cnp.Spec.Tier != policyv1beta1.BaselineTier {
		t.Fatalf("tier %q: the recipe must be overridable by NetworkPolicy (Baseline)", cnp.Spec.Tier)
	}
	eng, err := enforcer.New(enforcer.Config{NodeName: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ip := map[string]netip.Addr{}
	for _, p := range zeroTrustPods {
		must(eng.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: p.ns, Labels: map[string]string{"kubernetes.io/metadata.name": p.ns}}}))
		must(eng.UpsertPod(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: p.labels},
			Spec:       corev1.PodSpec{NodeName: "node-a"},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: p.ip}}},
		}))
		ip[p.ns+"/"+p.name] = netip.MustParseAddr(p.ip)
	}
	must(eng.UpsertClusterNetworkPolicy(cnp))
	external := netip.MustParseAddr("198.19.7.1") // outside the cluster

	type flow struct {
		from, to string // "ns/pod", or "external"
		proto    corev1.Protocol
		port     uint16
		allowed  bool
	}
	addr := func(s string) netip.Addr {
		if s == "external" {
			return external
		}
		return ip[s]
	}
	check := func(t *testing.T, flows []flow) {
		t.Helper()
		for _, f := range flows {
			d := eng.Decide(enforcer.Flow{Src: addr(f.from), Dst: addr(f.to), Protocol: f.proto, Port: f.port})
			if d.Allowed != f.allowed {
				t.Errorf("%s -> %s %s/%d: allowed=%v, want %v (%s)", f.from, f.to, f.proto, f.port, d.Allowed, f.allowed, d.Reason)
			}
		}
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	check(t, []flow{
		{"team-a/web", "team-b/api", tcp, 80, false},            // egress and ingress closed
		{"team-a/web", "team-a/web", tcp, 80, false},            // even within a namespace
		{"team-a/web", "kube-system/coredns", udp, 53, true},    // DNS
		{"team-a/web", "kube-system/coredns", tcp, 53, true},    // DNS over TCP
		{"team-a/web", "kube-system/coredns", tcp, 8080, false}, // only DNS
		{"team-a/web", "kube-system/metrics", udp, 53, false},   // only the DNS pods
		{"team-a/web", "external", tcp, 443, false},             // egress to anywhere
		{"kube-system/metrics", "team-a/web", tcp, 80, false},   // ingress from any pod
		{"kube-system/metrics", "kube-system/coredns", udp, 53, true},
		{"kube-system/coredns", "kube-system/metrics", tcp, 9090, true}, // kube-system untouched
		{"kube-system/metrics", "external", tcp, 443, true},
	})

	// The owners of team-a and team-b open web -> api on 8080 with
	// NetworkPolicies: each side decides its own pods, above the Baseline.
	port := func(p int32) []networkingv1.NetworkPolicyPort {
		n := intstr.FromInt32(p)
		return []networkingv1.NetworkPolicyPort{{Port: &n}}
	}
	must(eng.UpsertNetworkPolicy(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "api-from-web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "team-a"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				}},
				Ports: port(8080),
			}},
		},
	}))
	check(t, []flow{{"team-a/web", "team-b/api", tcp, 8080, false}}) // web's egress is still closed
	must(eng.UpsertNetworkPolicy(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "web-to-api"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "team-b"}},
				}},
				Ports: port(8080),
			}},
		},
	}))
	check(t, []flow{
		{"team-a/web", "team-b/api", tcp, 8080, true},
		{"team-a/web", "team-b/api", tcp, 80, false},
		// The NetworkPolicy now decides web's egress: DNS must be opened
		// by it too, as the README's rollout says.
		{"team-a/web", "kube-system/coredns", udp, 53, false},
	})
}
