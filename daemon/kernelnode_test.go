package daemon

// A node for the daemon's privileged tests: a network namespace with two pods
// routed through it, the kernel dataplane and conntrack of that namespace, and
// the real daemon over a fake API server. Topology (routed, both pods on
// node-a):
//
//	backend/api  198.18.1.10  app=api, isolated for ingress by backend/allow-web
//	backend/web  198.18.1.20  app=web, the peer allow-web admits

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// kernelNode is a node namespace with api and web wired to it, and the real
// daemon (with --revoke-established) enforcing backend/allow-web there
// through the kernel, over a fake API server.
type kernelNode struct {
	node     *nfttest.NetNS
	kernel   *nft.Kernel
	api, web *nfttest.Pod
	client   *fake.Clientset
	logs     *syncBuffer
	ctx      context.Context
}

// kernelNodeTable is the table the daemon of a kernelNode programs.
const kernelNodeTable = "nftw-daemon"

// startKernelNode wires the node, runs servers in api (serve, before the
// daemon starts), and starts the daemon with allow-web admitting web on
// ports; it stops the daemon when the test ends.
func startKernelNode(t *testing.T, serve func(api *nfttest.Pod), ports ...networkingv1.NetworkPolicyPort) *kernelNode {
	t.Helper()
	return startKernelNodeWith(t, nil, serve, ports...)
}

// startKernelNodeWith is startKernelNode with tweak changing the daemon
// before it starts (nil: none).
func startKernelNodeWith(t *testing.T, tweak func(*kernelNode, *daemon), serve func(api *nfttest.Pod), ports ...networkingv1.NetworkPolicyPort) *kernelNode {
	t.Helper()
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	node := nfttest.NewNetNS(t)
	n := &kernelNode{
		node: node,
		api:  &nfttest.Pod{Name: "api", V4: netip.MustParseAddr("198.18.1.10")},
		web:  &nfttest.Pod{Name: "web", V4: netip.MustParseAddr("198.18.1.20")},
		logs: &syncBuffer{},
	}
	nfttest.WirePods(t, node, false, n.api, n.web)
	serve(n.api)
	k, err := nft.NewKernel(nft.WithNetNS(node.FD), nft.WithTable(kernelNodeTable))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	n.kernel = k
	ct, err := nft.NewConntrack(nft.ConntrackNetNS(node.FD))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ct.Close() })
	n.client = fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "backend"}},
		testPod("backend", "api", "node-a", n.api.V4.String()),
		testPod("backend", "web", "node-a", n.web.V4.String()),
		allowWeb(ports...),
	)
	d := &daemon{
		cfg:       runConfig{NodeName: "node-a", Table: kernelNodeTable, ResyncPeriod: time.Minute, RevokeEstablished: true},
		log:       slog.New(slog.NewTextHandler(n.logs, nil)),
		client:    n.client,
		dataplane: k,
		flows:     ct,
		notifier:  notifierFromEnv(),
	}
	if tweak != nil {
		tweak(n, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	n.waitLog(t, "ready: the dataplane enforces", 10*time.Second)
	return n
}

// allowWeb is backend/allow-web: api admits web on ports.
func allowWeb(ports ...networkingv1.NetworkPolicyPort) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "backend", Name: "allow-web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: ports,
			}},
		},
	}
}

func portOf(proto corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(n)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

// admit edits allow-web to admit web on ports.
func (n *kernelNode) admit(t *testing.T, ports ...networkingv1.NetworkPolicyPort) {
	t.Helper()
	if _, err := n.client.NetworkingV1().NetworkPolicies("backend").Update(n.ctx, allowWeb(ports...), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the daemon has logged a line containing what.
func (n *kernelNode) waitLog(t *testing.T, what string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(n.logs.String(), what); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within %v:\n%s", what, within, n.logs)
		}
	}
}
