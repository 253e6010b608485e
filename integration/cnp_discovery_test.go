package integration

// Daemons started without the ClusterNetworkPolicy CRD enforce NetworkPolicy only and
// say so once (log line, nftwarden_cluster_network_policy_api_available 0); when the
// CRD is installed they pick ClusterNetworkPolicies up without a restart (an Admin
// Deny between the topology's namespaces is enforced with packets, and lifted when
// deleted); when the CRD is removed, the policies it took along stop being enforced.
// Topology of helpers_test.go over two nodes; discovery is asked every 500 ms.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// The daemon's words for the ClusterNetworkPolicy API's states (podwatch's log lines).
const (
	cnpNotServedLog = "ClusterNetworkPolicy API is not served"
	cnpAppearedLog  = "ClusterNetworkPolicy API appeared"
	cnpGoneLog      = "ClusterNetworkPolicy API is gone"
	cnpAvailable    = "nftwarden_cluster_network_policy_api_available"
)

// cnpDiscoveryArgs make the daemons notice the CRD within half a second.
var cnpDiscoveryArgs = []string{"--cluster-network-policy-discovery-period", "500ms"}

func TestIntegrationCNPWithoutCRDThenInstalled(t *testing.T) {
	c := controlPlane(t)
	ctx := testCtx(t)
	// Another test may have left the CRD behind if it was killed; start without it.
	must(t, c.RemoveClusterNetworkPolicyCRD(ctx))
	removeCNPCRDAtCleanup(t, c)
	tp := started(t, cluster.Options{DaemonArgs: cnpDiscoveryArgs})
	env := tp.env
	for _, n := range env.Nodes {
		waitDaemonMetric(t, ctx, n, cnpAvailable+" 0")
	}
	// Several discovery periods later, still said once.
	time.Sleep(2 * time.Second)
	for _, n := range env.Nodes {
		if got := daemonLogCount(t, n, cnpNotServedLog); got != 1 {
			t.Errorf("daemon of %s logged %q %d times, want once", n.Name, cnpNotServedLog, got)
		}
	}

	start := time.Now()
	must(t, c.InstallClusterNetworkPolicyCRD(ctx, cluster.StandardChannel))
	for _, n := range env.Nodes {
		waitDaemonMetric(t, ctx, n, cnpAvailable+" 1")
	}
	t.Logf("both daemons watch ClusterNetworkPolicies %s after the install began", time.Since(start).Round(time.Millisecond))
	admin := clientsFor(t, c.Config)
	cnps := admin.cnp.PolicyV1beta1().ClusterNetworkPolicies()
	deny := denyNamespaceCNP(env.Name("deny-y-to-x"), policyv1beta1.AdminTier, tp.x, tp.y)
	_, err := cnps.Create(ctx, deny, metav1.CreateOptions{})
	must(t, err)
	yToXDenied := cluster.NewReachability(tp.all, true)
	for _, from := range []*cluster.Pod{tp.c, tp.d} {
		for _, to := range []*cluster.Pod{tp.a, tp.b} {
			yToXDenied.Expect(from, to, false)
		}
	}
	tp.expect(t, yToXDenied, tcp80v4, tcp80v6, udp53v4)

	must(t, cnps.Delete(ctx, deny.Name, metav1.DeleteOptions{}))
	tp.expect(t, cluster.NewReachability(tp.all, true), tcp80v4, tcp80v6)

	// Removing the CRD deletes the policies with it: the daemons stop enforcing them
	// and go back to waiting for the API.
	deny.ResourceVersion = ""
	_, err = cnps.Create(ctx, deny, metav1.CreateOptions{})
	must(t, err)
	tp.expect(t, yToXDenied, tcp80v4)
	must(t, c.RemoveClusterNetworkPolicyCRD(ctx))
	tp.expect(t, cluster.NewReachability(tp.all, true), tcp80v4, tcp80v6)
	for _, n := range env.Nodes {
		waitDaemonMetric(t, ctx, n, cnpAvailable+" 0")
		// One start: the CRD came and went without a restart.
		for line, want := range map[string]int{"msg=starting": 1, cnpNotServedLog: 1, cnpAppearedLog: 1, cnpGoneLog: 1} {
			if got := daemonLogCount(t, n, line); got != want {
				t.Errorf("daemon of %s logged %q %d times, want %d", n.Name, line, got, want)
			}
		}
		if err := n.DaemonExited(); err != nil {
			t.Errorf("a daemon restarted or ended: %v", err)
		}
	}
}

// denyNamespaceCNP is a ClusterNetworkPolicy of tier whose subject is the namespace
// subject and whose one ingress rule denies everything from the namespace peer.
func denyNamespaceCNP(name string, tier policyv1beta1.Tier, subject, peer string) *policyv1beta1.ClusterNetworkPolicy {
	byName := func(ns string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	}
	return &policyv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{
			Tier:     tier,
			Priority: 10,
			Subject:  policyv1beta1.ClusterNetworkPolicySubject{Namespaces: byName(subject)},
			Ingress: []policyv1beta1.ClusterNetworkPolicyIngressRule{{
				Name:   "deny-" + peer,
				Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From:   []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: byName(peer)}},
			}},
		},
	}
}

// waitDaemonMetric waits until the node's daemon exports the sample line (name and
// value, e.g. "nftwarden_ready 1").
func waitDaemonMetric(t *testing.T, ctx context.Context, n *cluster.Node, sample string) {
	t.Helper()
	deadline := time.Now().Add(converge)
	for {
		body, err := n.DaemonGet(ctx, "/metrics")
		if err == nil && strings.Contains(string(body), "\n"+sample+"\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon of %s: no %q in /metrics after %s (error %v); log:\n%s", n.Name, sample, converge, err, tailLog(n))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// daemonLogCount counts the lines of the node's daemon log that contain s.
func daemonLogCount(t *testing.T, n *cluster.Node, s string) int {
	t.Helper()
	b, err := os.ReadFile(n.DaemonLog())
	must(t, err)
	return strings.Count(string(b), s)
}

func tailLog(n *cluster.Node) string {
	b, err := os.ReadFile(n.DaemonLog())
	if err != nil {
		return fmt.Sprint(err)
	}
	lines := strings.Split(string(b), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}
