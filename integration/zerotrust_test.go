package integration

// The zero-trust recipe of README.md ("Zero trust for the whole cluster"),
// daemon/deploy/zero-trust-baseline.yaml applied as shipped, proven with packets on
// the topology of helpers_test.go plus two kube-system pods (the cluster DNS, labelled
// k8s-app=kube-dns, and another): application pods reach the DNS on port 53 and
// nothing else, receive nothing from pods, kube-system is untouched, and namespace
// owners open a flow with NetworkPolicies (Baseline is below NetworkPolicy).

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

func TestIntegrationZeroTrustBaseline(t *testing.T) {
	c := controlPlane(t)
	ctx := testCtx(t)
	installCNPCRD(t, ctx, c)
	removeCNPCRDAtCleanup(t, c) // takes the policy with it
	tp := started(t, cluster.Options{})
	env := tp.env
	// No controller-manager runs here to create kube-system's default ServiceAccount,
	// which pods need (the harness creates it in the namespaces it makes).
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "default"}}
	if _, err := c.Client.CoreV1().ServiceAccounts("kube-system").Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	addSystem := func(name string, labels map[string]string, node *cluster.Node) *cluster.Pod {
		p, err := env.AddPod(ctx, cluster.PodSpec{Namespace: "kube-system", Name: env.Name(name), Node: node, Labels: labels, Ports: agentPorts})
		must(t, err)
		return p
	}
	dns := addSystem("dns", map[string]string{"k8s-app": "kube-dns"}, env.Nodes[len(env.Nodes)-1])
	other := addSystem("metrics", map[string]string{"app": "metrics"}, env.Nodes[0])
	apps := tp.all
	all := append(append([]*cluster.Pod{}, apps...), dns, other)
	tp.expect(t, cluster.NewReachability(all, true), tcp80v4, udp53v4)

	path, err := cluster.DeployManifest("zero-trust-baseline.yaml")
	must(t, err)
	_, err = c.ApplyManifests(ctx, path)
	must(t, err)

	// Application pods: egress only to the DNS pods on 53, ingress from no pod.
	closed := func(dnsOpen bool) *cluster.Reachability {
		r := cluster.NewReachability(all, true)
		for _, p := range apps {
			r.ExpectEgress(p, false)
			r.ExpectIngress(p, false)
			r.Expect(p, dns, dnsOpen)
		}
		return r
	}
	tp.expect(t, closed(true), udp53v4, udp53v6)
	tp.expect(t, closed(false), tcp80v4, tcp80v6)

	// The owners of x and y open x/a -> y/c on TCP 80, each for their own pods.
	must(t, env.ApplyPolicy(ctx, policy(tp.y, "c-from-a", selecting(app("c")),
		ingress(from(peers(nsPodPeer(tp.nsLabels(tp.x), app("a"))), port(corev1.ProtocolTCP, 80))))))
	must(t, env.ApplyPolicy(ctx, policy(tp.x, "a-to-c", selecting(app("a")),
		egress(to(peers(nsPodPeer(tp.nsLabels(tp.y), app("c"))), port(corev1.ProtocolTCP, 80))))))
	opened := closed(false)
	opened.Expect(tp.a, tp.c, true)
	tp.expect(t, opened, tcp80v4, tcp80v6)
	// x/a's egress is now decided by its NetworkPolicy, which does not allow DNS:
	// the README tells owners to allow it themselves.
	dnsNow := closed(true)
	dnsNow.Expect(tp.a, dns, false)
	tp.expect(t, dnsNow, udp53v4)
}
