package integration

import (
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// converge bounds how long a change may take to show in the packets: the daemon watches
// the API server and applies each change as one nftables transaction.
const converge = 15 * time.Second

// topology is the cluster most tests use, spread over the env's nodes:
//
//	namespace x (labels ns=x)   pods x/a (app=a, node 0)   x/b (app=b, last node)
//	namespace y (labels ns=y)   pods y/c (app=c, node 0)   y/d (app=d, last node)
//
// Every pod serves agentPorts (TCP 80 "http", TCP 81 "alt", UDP 53 "dns", SCTP 9000 "sig").
type topology struct {
	env        *cluster.Env
	x, y       string // namespace names (with the env's suffix)
	a, b, c, d *cluster.Pod
	all        []*cluster.Pod
}

func newTopology(t *testing.T, env *cluster.Env) *topology {
	t.Helper()
	ctx := testCtx(t)
	tp := &topology{env: env, x: env.Name("x"), y: env.Name("y")}
	// The namespaces carry the env's suffix in their labels too, so that selectors
	// never match namespaces of another test on the shared control plane.
	must(t, env.CreateNamespace(ctx, tp.x, map[string]string{"ns": "x-" + suffix(env)}))
	must(t, env.CreateNamespace(ctx, tp.y, map[string]string{"ns": "y-" + suffix(env)}))
	last := env.Nodes[len(env.Nodes)-1]
	add := func(ns, name string, node *cluster.Node) *cluster.Pod {
		p, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ns, Name: name, Node: node, Labels: map[string]string{"app": name}, Ports: agentPorts})
		must(t, err)
		return p
	}
	tp.a = add(tp.x, "a", env.Nodes[0])
	tp.b = add(tp.x, "b", last)
	tp.c = add(tp.y, "c", env.Nodes[0])
	tp.d = add(tp.y, "d", last)
	tp.all = []*cluster.Pod{tp.a, tp.b, tp.c, tp.d}
	return tp
}

// suffix is the env's random id, as used in namespace names.
func suffix(env *cluster.Env) string {
	n := env.Name("")
	return n[1:]
}

func (tp *topology) nsLabels(ns string) map[string]string {
	if ns == tp.x {
		return map[string]string{"ns": "x-" + suffix(tp.env)}
	}
	return map[string]string{"ns": "y-" + suffix(tp.env)}
}

// expect checks the packets against want on every flow, waiting for convergence.
func (tp *topology) expect(t *testing.T, want *cluster.Reachability, flows ...cluster.Flow) {
	t.Helper()
	ctx := testCtx(t)
	for _, f := range flows {
		if err := tp.env.WaitMatrix(ctx, want, f, converge); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	tcp80v4 = cluster.Flow{Port: 80, Protocol: corev1.ProtocolTCP, Family: 4}
	tcp80v6 = cluster.Flow{Port: 80, Protocol: corev1.ProtocolTCP, Family: 6}
	tcp81v4 = cluster.Flow{Port: 81, Protocol: corev1.ProtocolTCP, Family: 4}
	udp53v4 = cluster.Flow{Port: 53, Protocol: corev1.ProtocolUDP, Family: 4}
	udp53v6 = cluster.Flow{Port: 53, Protocol: corev1.ProtocolUDP, Family: 6}
	sctpV4  = cluster.Flow{Port: 9000, Protocol: corev1.ProtocolSCTP, Family: 4}
	sctpV6  = cluster.Flow{Port: 9000, Protocol: corev1.ProtocolSCTP, Family: 6}
)

// Policy builders: a policy is a name plus tweaks, as in kube-proxy's tests.

type tweak func(*networkingv1.NetworkPolicy)

func policy(ns, name string, tweaks ...tweak) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, tw := range tweaks {
		tw(np)
	}
	return np
}

// selecting sets spec.podSelector to matchLabels (nil: every pod of the namespace).
func selecting(labels map[string]string) tweak {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: labels} }
}

func ingress(rules ...networkingv1.NetworkPolicyIngressRule) tweak {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		np.Spec.Ingress = append(np.Spec.Ingress, rules...)
	}
}

func egress(rules ...networkingv1.NetworkPolicyEgressRule) tweak {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		np.Spec.Egress = append(np.Spec.Egress, rules...)
	}
}

func from(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports}
}

func to(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports}
}

func peers(p ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return p }

func podPeer(labels map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: labels}}
}

func nsPeer(labels map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: labels}}
}

func nsPodPeer(nsLabels, podLabels map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: nsLabels},
		PodSelector:       &metav1.LabelSelector{MatchLabels: podLabels},
	}
}

func cidrPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func port(proto corev1.Protocol, p int) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(int32(p))
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

func namedPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

func app(name string) map[string]string { return map[string]string{"app": name} }

func hostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }
