package integration

// NetworkPolicy enforced by the real daemon, one per node namespace, checked with real
// packets over the topology of helpers_test.go (x/a, x/b, y/c, y/d over two nodes:
// a and c on node 0, b and d on node 1, so half of every matrix crosses nodes).

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// started returns a two-node topology with its daemons running and checks that nothing
// is blocked before any policy exists.
func started(t *testing.T, opts cluster.Options) *topology {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 2
	}
	env := cluster.StartForTest(t, controlPlane(t), opts)
	tp := newTopology(t, env)
	startDaemons(t, env)
	tp.expect(t, cluster.NewReachability(tp.all, true), tcp80v4, tcp80v6)
	return tp
}

func TestIntegrationDefaultDenyIngress(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "deny", selecting(nil), ingress())))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.ExpectIngress(tp.b, false)
	tp.expect(t, want, tcp80v4, tcp80v6, udp53v4, sctpV4)

	// Deleting the policy lifts the isolation.
	must(t, tp.env.DeletePolicy(ctx, tp.x, "deny"))
	tp.expect(t, cluster.NewReachability(tp.all, true), tcp80v4, tcp80v6)
}

func TestIntegrationAllowByPodSelector(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "deny", selecting(nil), ingress())))
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-b", selecting(app("a")), ingress(from(peers(podPeer(app("b"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.ExpectIngress(tp.b, false)
	want.Expect(tp.b, tp.a, true)
	tp.expect(t, want, tcp80v4, tcp80v6)
}

func TestIntegrationAllowByNamespaceSelector(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-y", selecting(app("a")), ingress(from(peers(nsPeer(tp.nsLabels(tp.y))))))))
	want := cluster.NewReachability(tp.all, true)
	want.Expect(tp.b, tp.a, false)
	tp.expect(t, want, tcp80v4, tcp80v6)
}

func TestIntegrationAllowByNamespaceAndPodSelector(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-y-c", selecting(app("a")),
		ingress(from(peers(nsPodPeer(tp.nsLabels(tp.y), app("c"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(tp.c, tp.a, true)
	tp.expect(t, want, tcp80v4, tcp80v6)
}

func TestIntegrationEgress(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	// y/c may only talk to pods of namespace x on TCP 80.
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.y, "c-to-x", selecting(app("c")),
		egress(to(peers(nsPeer(tp.nsLabels(tp.x))), port(corev1.ProtocolTCP, 80))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectEgress(tp.c, false)
	want.Expect(tp.c, tp.a, true)
	want.Expect(tp.c, tp.b, true)
	tp.expect(t, want, tcp80v4, tcp80v6)
	blocked := cluster.NewReachability(tp.all, true)
	blocked.ExpectEgress(tp.c, false)
	tp.expect(t, blocked, tcp81v4, udp53v4)
}

func TestIntegrationIPBlock(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	// x/a accepts the whole test range except y/c's addresses.
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-cidr", selecting(app("a")), ingress(from(peers(
		cidrPeer("198.18.0.0/15", hostPrefix(tp.c.IPv4)),
		cidrPeer("2001:db8::/32", hostPrefix(tp.c.IPv6)),
	))))))
	want := cluster.NewReachability(tp.all, true)
	want.Expect(tp.c, tp.a, false)
	tp.expect(t, want, tcp80v4, tcp80v6)
}

func TestIntegrationLabelChange(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-role-client", selecting(app("a")),
		ingress(from(peers(nsPodPeer(nil, map[string]string{"role": "client"})))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	tp.expect(t, want, tcp80v4)

	// y/d becomes a client: it may now reach x/a.
	must(t, tp.env.SetPodLabels(ctx, tp.d, map[string]string{"app": "d", "role": "client"}))
	want.Expect(tp.d, tp.a, true)
	tp.expect(t, want, tcp80v4, tcp80v6)

	// x/a loses the label the policy selects it by: it is no longer isolated.
	must(t, tp.env.SetPodLabels(ctx, tp.a, map[string]string{"app": "a-old"}))
	tp.expect(t, cluster.NewReachability(tp.all, true), tcp80v4)

	// And back, while y/d stops being a client.
	must(t, tp.env.SetPodLabels(ctx, tp.d, app("d")))
	must(t, tp.env.SetPodLabels(ctx, tp.a, app("a")))
	want.Expect(tp.d, tp.a, false)
	tp.expect(t, want, tcp80v4)
}

func TestIntegrationNamespaceLabelChange(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	trusted := map[string]string{"trusted": "yes-" + suffix(tp.env)}
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-trusted", selecting(app("a")), ingress(from(peers(nsPeer(trusted)))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	tp.expect(t, want, tcp80v4)

	must(t, tp.env.SetNamespaceLabels(ctx, tp.y, trusted))
	want.Expect(tp.c, tp.a, true)
	want.Expect(tp.d, tp.a, true)
	tp.expect(t, want, tcp80v4, tcp80v6)
}

func TestIntegrationPolicyUpdate(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	np := policy(tp.x, "a-ports", selecting(app("a")), ingress(from(nil, port(corev1.ProtocolTCP, 80))))
	must(t, tp.env.ApplyPolicy(ctx, np))
	closed := cluster.NewReachability(tp.all, true)
	closed.ExpectIngress(tp.a, false)
	tp.expect(t, cluster.NewReachability(tp.all, true), tcp80v4)
	tp.expect(t, closed, tcp81v4)

	// The same policy now opens 81 by name and closes 80.
	np = policy(tp.x, "a-ports", selecting(app("a")), ingress(from(nil, namedPort(corev1.ProtocolTCP, "alt"))))
	must(t, tp.env.ApplyPolicy(ctx, np))
	tp.expect(t, cluster.NewReachability(tp.all, true), tcp81v4)
	tp.expect(t, closed, tcp80v4)
}

func TestIntegrationProtocols(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	// x/b accepts UDP 53 and SCTP 9000 from anywhere, and nothing else.
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "b-udp-sctp", selecting(app("b")),
		ingress(from(nil, port(corev1.ProtocolUDP, 53), port(corev1.ProtocolSCTP, 9000))))))
	open := cluster.NewReachability(tp.all, true)
	closed := cluster.NewReachability(tp.all, true)
	closed.ExpectIngress(tp.b, false)
	tp.expect(t, open, udp53v4, udp53v6, sctpV4, sctpV6)
	tp.expect(t, closed, tcp80v4, tcp80v6)
}

func TestIntegrationBridged(t *testing.T) {
	tp := started(t, cluster.Options{Bridged: true})
	ctx := testCtx(t)
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "deny", selecting(nil), ingress())))
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-c", selecting(app("a")), ingress(from(peers(nsPodPeer(nil, app("c"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.ExpectIngress(tp.b, false)
	// y/c and x/a share node 0 and its bridge: only br_netfilter puts this flow
	// through the forward hook.
	want.Expect(tp.c, tp.a, true)
	tp.expect(t, want, tcp80v4, tcp80v6, udp53v4)
}

func TestIntegrationPodChurn(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-client", selecting(app("a")),
		ingress(from(peers(nsPodPeer(nil, map[string]string{"role": "client"})))))))
	// A new client pod appears on node 1 and reaches x/a on node 0 once its IP is in the set.
	e, err := tp.env.AddPod(ctx, cluster.PodSpec{Namespace: tp.y, Name: "e", Node: tp.env.Nodes[1], Labels: map[string]string{"role": "client"}, Ports: agentPorts})
	must(t, err)
	pods := append(tp.all, e)
	want := cluster.NewReachability(pods, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(e, tp.a, true)
	tp.expect(t, want, tcp80v4, tcp80v6)

	// When it goes, its address leaves the set and the table is the one before.
	must(t, tp.env.DeletePod(ctx, e))
	want = cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	tp.expect(t, want, tcp80v4)
}

func TestIntegrationCrossNode(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	// x/a (node 0) may only send to x/b; x/b (node 1) may only receive from x/a. The
	// flow a -> b needs both daemons to allow it: a's egress on node 0, b's ingress on
	// node 1.
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-to-b", selecting(app("a")), egress(to(peers(podPeer(app("b"))))))))
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "b-from-a", selecting(app("b")), ingress(from(peers(podPeer(app("a"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectEgress(tp.a, false)
	want.ExpectIngress(tp.b, false)
	want.Expect(tp.a, tp.b, true)
	tp.expect(t, want, tcp80v4, tcp80v6)

	// Without b's allow, a's egress allow alone is not enough.
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "b-from-a", selecting(app("b")), ingress(from(peers(podPeer(app("nobody"))))))))
	want.Expect(tp.a, tp.b, false)
	tp.expect(t, want, tcp80v4)
}
