package integration

// ClusterNetworkPolicy's experimental channel with packets: the experimental CRD
// installed, daemon/deploy/rbac-node-peers.yaml applied as shipped, and the daemons run
// with --cluster-network-policy=experimental over the two-node topology of
// helpers_test.go (pods serve TCP 80 "http", TCP 81 "alt", UDP 53 "dns").
//
//   - nodes peers (conformance/tests/admin-network-policy-experimental-egress-rules.go,
//     CNPAdminTierEgressNodePeers, of sigs.k8s.io/network-policy-api v0.3.0): a host
//     server in the last node's namespace serves TCP 8080 and 9003 on the node's
//     addresses (status.addresses InternalIP, 198.18.0.0/15 and 2001:db8::/32); an
//     Admin CNP accepts x's egress to the node on 8080 and denies the rest to every
//     node; a second one denies egress to nodes labelled role=infra-<suffix>, and
//     follows the label as it is put on the node and taken off;
//   - named ports (...-experimental-ingress-rules.go, CNPAdminTierIngressNamedPort, and
//     ...-experimental-egress-rules.go, CNPAdminTierEgressNamedPort): an ingress Accept
//     of dns from x then a Deny from x; an egress Accept to y's http then a Deny to y.

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

func TestIntegrationCNPExperimental(t *testing.T) {
	c := controlPlane(t)
	ctx := testCtx(t)
	removeCNPCRDAtCleanup(t, c)
	must(t, c.InstallClusterNetworkPolicyCRD(ctx, cluster.ExperimentalChannel))
	grantNodePeers(t, ctx, c)
	tp := started(t, cluster.Options{DaemonArgs: []string{"--cluster-network-policy", "experimental"}})
	env := tp.env
	admin := clientsFor(t, c.Config)
	cnps := admin.cnp.PolicyV1beta1().ClusterNetworkPolicies()
	create := func(p *policyv1beta1.ClusterNetworkPolicy) {
		t.Helper()
		_, err := cnps.Create(ctx, p, metav1.CreateOptions{})
		must(t, err)
	}
	accept, deny := policyv1beta1.ClusterNetworkPolicyRuleActionAccept, policyv1beta1.ClusterNetworkPolicyRuleActionDeny

	t.Run("nodes peers", func(t *testing.T) {
		server := env.Nodes[len(env.Nodes)-1]
		stop, err := server.StartHostServer(cluster.Port{Port: 8080}, cluster.Port{Port: 9003})
		must(t, err)
		t.Cleanup(stop)
		addrs := []netip.Addr{server.IPv4, server.IPv6}
		for _, a := range addrs {
			for _, port := range []uint16{8080, 9003} {
				waitNodeProbe(t, env, tp.a, a, port, true)
			}
		}
		hostname := map[string]string{"kubernetes.io/hostname": server.Name}
		create(cnpOn(env.Name("x-to-nodes"), policyv1beta1.AdminTier, 75, tp.x, nil, []policyv1beta1.ClusterNetworkPolicyEgressRule{
			{Name: "allow-8080-to-server", Action: accept,
				To:        []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{MatchLabels: hostname}}},
				Protocols: []policyv1beta1.ClusterNetworkPolicyProtocol{{TCP: &policyv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &policyv1beta1.Port{Number: 8080}}}}},
			{Name: "deny-nodes", Action: deny, To: []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{}}}},
		}))
		for _, a := range addrs {
			waitNodeProbe(t, env, tp.a, a, 8080, true)
			waitNodeProbe(t, env, tp.a, a, 9003, false)
			waitNodeProbe(t, env, tp.c, a, 9003, true) // y is no subject
		}
		must(t, cnps.Delete(ctx, env.Name("x-to-nodes"), metav1.DeleteOptions{}))

		// A Deny to nodes labelled role=infra-<suffix>: none at first, then the
		// server's node when the label is put on it, none again when it goes.
		infra := "infra-" + suffix(env)
		create(cnpOn(env.Name("deny-infra"), policyv1beta1.BaselineTier, 1, tp.y, nil, []policyv1beta1.ClusterNetworkPolicyEgressRule{{Action: deny,
			To: []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{MatchLabels: map[string]string{"role": infra}}}}}}))
		waitNodeProbe(t, env, tp.a, server.IPv4, 9003, true)
		waitNodeProbe(t, env, tp.c, server.IPv4, 9003, true)
		labelNode(t, ctx, c, server.Name, infra)
		for _, a := range addrs {
			waitNodeProbe(t, env, tp.c, a, 9003, false)
			waitNodeProbe(t, env, tp.a, a, 9003, true)
		}
		labelNode(t, ctx, c, server.Name, "")
		for _, a := range addrs {
			waitNodeProbe(t, env, tp.c, a, 9003, true)
		}
		must(t, cnps.Delete(ctx, env.Name("deny-infra"), metav1.DeleteOptions{}))
	})

	t.Run("named ports", func(t *testing.T) {
		fromX := []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: namespaceNamed(tp.x)}}
		create(cnpOn(env.Name("y-dns-from-x"), policyv1beta1.AdminTier, 4, tp.y, []policyv1beta1.ClusterNetworkPolicyIngressRule{
			{Name: "allow-dns-from-x", Action: accept, From: fromX, Protocols: []policyv1beta1.ClusterNetworkPolicyProtocol{{DestinationNamedPort: "dns"}}},
			{Name: "deny-from-x", Action: deny, From: fromX},
		}, nil))
		xToYDenied := cluster.NewReachability(tp.all, true)
		for _, from := range []*cluster.Pod{tp.a, tp.b} {
			for _, to := range []*cluster.Pod{tp.c, tp.d} {
				xToYDenied.Expect(from, to, false)
			}
		}
		tp.expect(t, cluster.NewReachability(tp.all, true), udp53v4, udp53v6)
		tp.expect(t, xToYDenied, tcp80v4, tcp80v6)
		must(t, cnps.Delete(ctx, env.Name("y-dns-from-x"), metav1.DeleteOptions{}))

		toY := []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Namespaces: namespaceNamed(tp.y)}}
		create(cnpOn(env.Name("x-http-to-y"), policyv1beta1.AdminTier, 6, tp.x, nil, []policyv1beta1.ClusterNetworkPolicyEgressRule{
			{Name: "allow-http-to-y", Action: accept, To: toY, Protocols: []policyv1beta1.ClusterNetworkPolicyProtocol{{DestinationNamedPort: "http"}}},
			{Name: "deny-to-y", Action: deny, To: toY},
		}))
		tp.expect(t, cluster.NewReachability(tp.all, true), tcp80v4, tcp80v6)
		tp.expect(t, xToYDenied, tcp81v4, udp53v4, udp53v6)
		must(t, cnps.Delete(ctx, env.Name("x-http-to-y"), metav1.DeleteOptions{}))
	})
	for _, n := range env.Nodes {
		if err := n.DaemonExited(); err != nil {
			t.Errorf("a daemon restarted or ended: %v", err)
		}
	}
}

// namespaceNamed selects the namespace named ns.
func namespaceNamed(ns string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
}

// cnpOn is a ClusterNetworkPolicy of tier and priority whose subject is the
// namespace ns, with the given rules.
func cnpOn(name string, tier policyv1beta1.Tier, prio int32, ns string, in []policyv1beta1.ClusterNetworkPolicyIngressRule, out []policyv1beta1.ClusterNetworkPolicyEgressRule) *policyv1beta1.ClusterNetworkPolicy {
	return &policyv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{Tier: tier, Priority: prio,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{Namespaces: namespaceNamed(ns)}, Ingress: in, Egress: out}}
}

// grantNodePeers applies daemon/deploy/rbac-node-peers.yaml as shipped (removed
// when the test ends: the control plane is shared) and waits until the
// daemons' service account may watch nodes.
func grantNodePeers(t *testing.T, ctx context.Context, c *cluster.ControlPlane) {
	t.Helper()
	must(t, c.ApplyDaemonRBAC())
	applied, err := c.ApplyDaemonNodePeersRBAC(ctx)
	admin := clientsFor(t, c.Config)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		rbac := admin.kube.RbacV1()
		for _, o := range applied {
			var err error
			switch o.GetKind() {
			case "ClusterRoleBinding":
				err = rbac.ClusterRoleBindings().Delete(cctx, o.GetName(), metav1.DeleteOptions{})
			case "ClusterRole":
				err = rbac.ClusterRoles().Delete(cctx, o.GetName(), metav1.DeleteOptions{})
			}
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	must(t, err)
	waitAllowed(t, ctx, admin.kube, cluster.DaemonUser, "watch", "", "nodes", "")
}

// labelNode sets (value "": removes) the node's label role.
func labelNode(t *testing.T, ctx context.Context, c *cluster.ControlPlane, name, value string) {
	t.Helper()
	nodes := c.Client.CoreV1().Nodes()
	n, err := nodes.Get(ctx, name, metav1.GetOptions{})
	must(t, err)
	if value == "" {
		delete(n.Labels, "role")
	} else {
		n.Labels["role"] = value
	}
	_, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
	must(t, err)
}

// waitNodeProbe waits until from's TCP probes of addr:port reach the host
// server (want) or do not, within converge.
func waitNodeProbe(t *testing.T, env *cluster.Env, from *cluster.Pod, addr netip.Addr, port uint16, want bool) {
	t.Helper()
	ctx := testCtx(t)
	deadline := time.Now().Add(converge)
	for {
		r, err := env.ProbeAddr(ctx, from, addr, port, corev1.ProtocolTCP)
		must(t, err)
		if r.Reachable == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s -> %s:%d/TCP: reachable %v (%s, %s), want %v after %s", from, addr, port, r.Reachable, r.Peer, r.Err, want, converge)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
