package daemon

// The daemon with and without the ClusterNetworkPolicy API, over fake API
// servers and nft.Fake. IP plan of run_test.go: backend/api 198.18.0.20 is
// local (node-a), backend/web 198.18.1.10 remote.

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/podwatch"
)

func TestRunClusterNetworkPolicyAPI(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	cnp := &v1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-web"},
		Spec: v1beta1.ClusterNetworkPolicySpec{
			Tier: v1beta1.AdminTier, Priority: 1,
			Subject: v1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
			Ingress: []v1beta1.ClusterNetworkPolicyIngressRule{{
				Action: v1beta1.ClusterNetworkPolicyRuleActionDeny,
				From:   []v1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}},
			}},
		},
	}
	// An egress Deny to every node: its address is in the table only with
	// the experimental channel (with auto the rule fails closed: it denies
	// every egress of the subject, and Nodes are not watched).
	toNodes := &v1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-nodes"},
		Spec: v1beta1.ClusterNetworkPolicySpec{
			Tier: v1beta1.AdminTier, Priority: 2,
			Subject: v1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
			Egress: []v1beta1.ClusterNetworkPolicyEgressRule{{
				Action: v1beta1.ClusterNetworkPolicyRuleActionDeny,
				To:     []v1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{}}},
			}},
		},
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.3.1"}}}}
	for _, tc := range []struct {
		name      string
		mode      string
		served    bool
		wantGauge string
		wantLog   string
		wantTiers bool
		wantNode  bool
	}{
		{name: "served", mode: cnpAuto, served: true, wantGauge: "1", wantLog: "ClusterNetworkPolicy API is served", wantTiers: true},
		{name: "experimental", mode: cnpExperimental, served: true, wantGauge: "1", wantLog: "ClusterNetworkPolicy API is served", wantTiers: true, wantNode: true},
		{name: "CRD not installed", mode: cnpAuto, wantGauge: "0", wantLog: "ClusterNetworkPolicy API is not served"},
		{name: "off", mode: cnpOff, served: true, wantGauge: "0", wantLog: "ClusterNetworkPolicy support is off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cnps := cnpfake.NewSimpleClientset(cnp, toNodes)
			if tc.served {
				cnps.Resources = []*metav1.APIResourceList{{GroupVersion: podwatch.ClusterNetworkPolicyGroupVersion,
					APIResources: []metav1.APIResource{{Name: "clusternetworkpolicies"}}}}
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			dp := nft.NewFake("nftwarden")
			d := &daemon{
				cfg: runConfig{NodeName: "node-a", Table: "nftwarden", ResyncPeriod: time.Minute,
					ClusterNetworkPolicy: tc.mode, CNPDiscoveryPeriod: time.Minute},
				log: slog.New(slog.NewTextHandler(&logs, nil)),
				client: fake.NewClientset(node, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "backend"}},
					testPod("backend", "api", "node-a", "198.18.0.20")),
				cnpClient: cnps,
				apiHost:   "fake",
				dataplane: dp,
				notifier:  notifierFromEnv(),
				listener:  ln,
			}
			runUntilCleanup(t, d)
			base := "http://" + ln.Addr().String()
			deadline := time.Now().Add(10 * time.Second)
			for code, _ := httpGet(t, base+"/readyz"); code != http.StatusOK; code, _ = httpGet(t, base+"/readyz") {
				if time.Now().After(deadline) {
					t.Fatalf("not ready; log:\n%s", logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			_, metrics := httpGet(t, base+"/metrics")
			if want := "nftwarden_cluster_network_policy_api_available " + tc.wantGauge + "\n"; !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %q", want)
			}
			if n := strings.Count(logs.String(), tc.wantLog); n != 1 {
				t.Errorf("%q logged %d times, want once; log:\n%s", tc.wantLog, n, logs.String())
			}
			// The Admin tier of the policy is in the table as it became ready.
			if got := strings.Contains(dp.Dump(), "deny-web"); got != tc.wantTiers {
				t.Errorf("table mentions the ClusterNetworkPolicy: %v, want %v:\n%s", got, tc.wantTiers, dp.Dump())
			}
			if got := strings.Contains(dp.Dump(), "198.18.3.1"); got != tc.wantNode {
				t.Errorf("table holds the node's address: %v, want %v:\n%s", got, tc.wantNode, dp.Dump())
			}
		})
	}
}
