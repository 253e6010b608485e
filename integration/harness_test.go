package integration

// The harness on its own, without any daemon: every pod reaches every other pod over
// every protocol and family, on one node and across nodes, routed and bridged. If this
// fails, policy tests cannot be trusted.

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

var allFlows = []cluster.Flow{
	{Port: 80, Protocol: corev1.ProtocolTCP, Family: 4},
	{Port: 80, Protocol: corev1.ProtocolTCP, Family: 6},
	{Port: 53, Protocol: corev1.ProtocolUDP, Family: 4},
	{Port: 53, Protocol: corev1.ProtocolUDP, Family: 6},
	{Port: 9000, Protocol: corev1.ProtocolSCTP, Family: 4},
	{Port: 9000, Protocol: corev1.ProtocolSCTP, Family: 6},
}

var agentPorts = []cluster.Port{
	{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
	{Name: "alt", Port: 81, Protocol: corev1.ProtocolTCP},
	{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
	{Name: "sig", Port: 9000, Protocol: corev1.ProtocolSCTP},
}

func TestIntegrationHarness(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bridged bool
	}{
		{"routed", false},
		{"bridged", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			env := cluster.StartForTest(t, controlPlane(t), cluster.Options{Nodes: 2, Bridged: tc.bridged})
			ns := env.Name("h")
			must(t, env.CreateNamespace(ctx, ns, nil))
			var pods []*cluster.Pod
			for i, name := range []string{"a", "b", "c"} {
				p, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ns, Name: name, Node: env.Nodes[i%2], Labels: map[string]string{"pod": name}, Ports: agentPorts})
				must(t, err)
				pods = append(pods, p)
			}
			for _, f := range allFlows {
				must(t, env.WaitMatrix(ctx, cluster.NewReachability(pods, true), f, 5*time.Second))
			}
			// A port nobody serves is not reachable: the probe really needs the server.
			ok, err := env.Probe(ctx, pods[0], pods[1], cluster.Flow{Port: 9001, Protocol: corev1.ProtocolSCTP})
			must(t, err)
			if ok {
				t.Errorf("SCTP probe to a port without a server succeeded")
			}
		})
	}
}
