package enforcer_test

// IP plan: the generated cluster of bench_test.go; its Node objects take
// 198.18.250.<node> and 2001:db8:fa::<node>.

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// benchNode is Node i of the generated cluster, labelled role=<role>.
func benchNode(i int, role string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%03d", i), Labels: map[string]string{"role": role}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("198.18.250.%d", i)},
			{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("2001:db8:fa::%x", i)}}}}
}

// BenchmarkTiersNodeChange measures a Node change plus its Flush on node-000
// of the generated cluster with the 1,000 cluster-wide policies of
// BenchmarkTiersDelta, its 50 Nodes, and, with the experimental channel,
// two more cluster-wide policies: an Admin Deny of egress to the nodes
// labelled role=infra and a Baseline Accept of TCP 10250 to every node
// (their groups' class maps hold the node addresses):
//   - relabel: a node moves in and out of role=infra (its addresses enter
//     and leave the Deny's class);
//   - address: a node's IPv4 address changes back and forth;
//   - unrelated: a node's label no nodes peer reads changes (no group is
//     touched... but every group with a nodes peer is rebuilt when a peer
//     selects the node before or after).
func BenchmarkTiersNodeChange(b *testing.B) {
	g := newGenCluster(tierBenchPods)
	g.experimental = true
	e, dp := buildTiers(b, g, tierBenchCNPs, nil)
	all := metav1.LabelSelector{}
	for i, n := range []*v1beta1.ClusterNetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "deny-infra"}, Spec: v1beta1.ClusterNetworkPolicySpec{Tier: v1beta1.AdminTier, Priority: 3,
			Subject: v1beta1.ClusterNetworkPolicySubject{Namespaces: &all},
			Egress: []v1beta1.ClusterNetworkPolicyEgressRule{{Action: v1beta1.ClusterNetworkPolicyRuleActionDeny,
				To: []v1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "infra"}}}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "kubelet"}, Spec: v1beta1.ClusterNetworkPolicySpec{Tier: v1beta1.BaselineTier, Priority: 3,
			Subject: v1beta1.ClusterNetworkPolicySubject{Namespaces: &all},
			Egress: []v1beta1.ClusterNetworkPolicyEgressRule{{Action: v1beta1.ClusterNetworkPolicyRuleActionAccept,
				To:        []v1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &all}},
				Protocols: []v1beta1.ClusterNetworkPolicyProtocol{{TCP: &v1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &v1beta1.Port{Number: 10250}}}}}}}},
	} {
		if err := e.UpsertClusterNetworkPolicy(n); err != nil {
			b.Fatal(i, err)
		}
	}
	for i := range 50 {
		if err := e.UpsertNode(benchNode(i, []string{"worker", "infra"}[i%2])); err != nil {
			b.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		change func(i int)
	}{
		{"relabel", func(i int) {
			if err := e.UpsertNode(benchNode(10, []string{"infra", "worker"}[i%2])); err != nil {
				b.Fatal(err)
			}
		}},
		{"address", func(i int) {
			n := benchNode(11, "infra")
			n.Status.Addresses[0].Address = fmt.Sprintf("198.18.251.%d", i%2)
			if err := e.UpsertNode(n); err != nil {
				b.Fatal(err)
			}
		}},
		{"unrelated", func(i int) {
			n := benchNode(12, "worker")
			n.Labels["zone"] = fmt.Sprint(i % 2)
			if err := e.UpsertNode(n); err != nil {
				b.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) { measureDelta(b, e, dp, tc.change) })
	}
}
