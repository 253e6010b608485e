package integration

// The harness on its own, without any daemon: every pod reaches every other pod over
// every protocol and family, on one node and across nodes, routed and bridged. If this
// fails, policy tests cannot be trusted.

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// Long-lived sessions, chosen addresses and API-only pods, still without a daemon: a
// TCP and a UDP session across nodes keep exchanging; a pod re-created with a deleted
// pod's address answers under its new name; a session to a pod that is gone breaks.
func TestIntegrationHarnessSessions(t *testing.T) {
	ctx := testCtx(t)
	env := cluster.StartForTest(t, controlPlane(t), cluster.Options{Nodes: 2})
	ns := env.Name("s")
	must(t, env.CreateNamespace(ctx, ns, nil))
	client, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ns, Name: "client", Node: env.Nodes[0], Ports: agentPorts})
	must(t, err)
	server, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ns, Name: "server", Node: env.Nodes[1], Ports: agentPorts})
	must(t, err)

	var sessions []*cluster.Session
	for _, f := range []cluster.Flow{tcp80v4, udp53v6} {
		s, err := env.OpenSession(ctx, client, server, f)
		must(t, err)
		defer s.Close()
		sessions = append(sessions, s)
	}
	time.Sleep(time.Second)
	for _, s := range sessions {
		if broken, _ := s.Broken(); broken || s.Exchanges() < 5 {
			t.Errorf("after 1 s: %s, want at least 5 exchanges and not broken", s)
		}
	}

	// The server goes and another pod takes its address: the sessions break (the
	// new pod knows neither the TCP connection nor, for UDP, answers as the old one).
	v4, v6 := server.IPv4, server.IPv6
	must(t, env.DeletePod(ctx, server))
	heir, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ns, Name: "heir", Node: env.Nodes[1], Ports: agentPorts, IPv4: v4, IPv6: v6})
	must(t, err)
	if heir.IPv4 != v4 || heir.IPv6 != v6 {
		t.Fatalf("heir has %s %s, want %s %s", heir.IPv4, heir.IPv6, v4, v6)
	}
	for _, f := range []cluster.Flow{tcp80v4, udp53v6} {
		ok, err := env.Probe(ctx, client, heir, f)
		must(t, err)
		if !ok {
			t.Errorf("%s: the pod with the reused address does not answer", f)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range sessions {
		for broken, _ := s.Broken(); !broken && time.Now().Before(deadline); broken, _ = s.Broken() {
			time.Sleep(50 * time.Millisecond)
		}
		if broken, _ := s.Broken(); !broken {
			t.Errorf("%s: still alive after its server was replaced", s)
		} else {
			t.Logf("%s", s)
		}
	}
	// A real pod's address must be routed to its node.
	other, _ := env.Nodes[0].PodAddrs(200)
	if _, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ns, Name: "misplaced", Node: env.Nodes[1], IPv4: other, IPv6: v6}); err == nil {
		t.Error("a pod with another node's address was created")
	}

	// An API-only pod: Running with the chosen addresses, nothing else.
	u4, u6 := cluster.UnroutedAddrs(7)
	p, err := env.AddAPIPod(ctx, cluster.PodSpec{Namespace: ns, Name: "ghost", Node: env.Nodes[1], IPv4: u4, IPv6: u6})
	must(t, err)
	obj, err := env.CP.Client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
	must(t, err)
	if obj.Status.Phase != corev1.PodRunning || len(obj.Status.PodIPs) != 2 || obj.Status.PodIPs[0].IP != u4.String() || obj.Status.PodIPs[1].IP != u6.String() {
		t.Errorf("API-only pod status %+v, want Running with %s and %s", obj.Status, u4, u6)
	}
	if !p.APIOnly() {
		t.Error("API-only pod has a network namespace")
	}
}
