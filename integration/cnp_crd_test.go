package integration

// The harness installs either channel of the ClusterNetworkPolicy CRD from the
// network-policy-api module, replaces one with the other, and removes it: an egress
// peer of kind nodes (experimental) is accepted with the experimental channel and is
// an unknown field with the standard one. API only.

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

func TestIntegrationCNPCRDChannels(t *testing.T) {
	c := controlPlane(t)
	ctx := testCtx(t)
	removeCNPCRDAtCleanup(t, c)
	admin := clientsFor(t, c.Config)
	nodesPeer := adminCNP("nodes-peer", "team-a", func(p *policyv1beta1.ClusterNetworkPolicy) {
		p.Spec.Egress = []policyv1beta1.ClusterNetworkPolicyEgressRule{{
			Action: policyv1beta1.ClusterNetworkPolicyRuleActionAccept,
			To:     []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{}}},
		}}
	})
	for _, ch := range []cluster.CRDChannel{cluster.ExperimentalChannel, cluster.StandardChannel} {
		start := time.Now()
		must(t, c.InstallClusterNetworkPolicyCRD(ctx, ch))
		t.Logf("%s channel established and served in %s", ch, time.Since(start).Round(time.Millisecond))
		// After a switch the API server serves the new schema once its CRD
		// informer has seen it, shortly after the apply.
		wantAccepted := ch == cluster.ExperimentalChannel
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			_, err = admin.cnp.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, nodesPeer,
				metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict})
			if (err == nil) == wantAccepted {
				break
			}
		}
		if (err == nil) != wantAccepted {
			t.Errorf("%s channel: a nodes peer got %v, want accepted %v", ch, err, wantAccepted)
		}
		t.Logf("%s channel, nodes peer: %v (took %s)", ch, err, time.Since(start).Round(time.Millisecond))
	}
	must(t, c.RemoveClusterNetworkPolicyCRD(ctx))
	must(t, c.RemoveClusterNetworkPolicyCRD(ctx)) // a missing CRD is not an error
	if err := c.InstallClusterNetworkPolicyCRD(ctx, "beta"); err == nil {
		t.Error("an unknown channel was installed")
	}
}
