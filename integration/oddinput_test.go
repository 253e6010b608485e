package integration

// Objects the API server accepts but that are odd, enforced by the real daemon: it
// must neither crash nor open anything. (Objects no API server accepts, such as
// invalid CIDRs or selectors, reach the engine only through the library; enforcer's
// TestOddInput and its fuzz targets cover those.)
//
// Topology of helpers_test.go (x/a, y/c on node 0; x/b, y/d on node 1). x/a is
// selected by three policies:
//
//	many-ports:   admits app=b on 10,000 single TCP ports (1..10000)
//	many-excepts: admits 198.18.0.0/15 on TCP 80, except 1,000 /32 blocks elsewhere in
//	              the range, y/c's address, and two overlapping /26 and /27 blocks
//	              around it
//	no-such-name: admits y/d on a named port no container declares
//
// and two pods exist only in the API server: one without an address, and a finished
// one (phase Succeeded) that still reports x/b's address with other labels, which
// must not take x/b's place in any set. Expected: x/a admits x/b (many-ports) and y/d
// (many-excepts), denies y/c (excepted), and the daemons keep running.

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

func TestIntegrationOddObjects(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	env := tp.env

	var many []networkingv1.NetworkPolicyPort
	for p := 1; p <= 10000; p++ {
		many = append(many, port(corev1.ProtocolTCP, p))
	}
	must(t, env.ApplyPolicy(ctx, policy(tp.x, "many-ports", selecting(app("a")), ingress(from(peers(podPeer(app("b"))), many...)))))

	except := []string{
		hostPrefix(tp.c.IPv4),
		netip.PrefixFrom(tp.c.IPv4, 26).Masked().String(),
		netip.PrefixFrom(tp.c.IPv4, 27).Masked().String(),
	}
	for i := range 1000 {
		except = append(except, fmt.Sprintf("198.19.%d.%d/32", i/250, 1+i%250))
	}
	must(t, env.ApplyPolicy(ctx, policy(tp.x, "many-excepts", selecting(app("a")),
		ingress(from(peers(cidrPeer("198.18.0.0/15", except...)), port(corev1.ProtocolTCP, 80))))))
	must(t, env.ApplyPolicy(ctx, policy(tp.x, "no-such-name", selecting(app("a")),
		ingress(from(peers(nsPodPeer(tp.nsLabels(tp.y), app("d"))), namedPort(corev1.ProtocolTCP, "no-such-port"))))))

	noIP, err := env.AddAPIPod(ctx, cluster.PodSpec{Namespace: tp.y, Name: "no-ip", Node: env.Nodes[0], Labels: app("d")})
	must(t, err)
	obj, err := env.CP.Client.CoreV1().Pods(tp.y).Get(ctx, noIP.Name, metav1.GetOptions{})
	must(t, err)
	obj.Status.PodIP, obj.Status.PodIPs = "", nil
	_, err = env.CP.Client.CoreV1().Pods(tp.y).UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	must(t, err)
	finished, err := env.AddAPIPod(ctx, cluster.PodSpec{Namespace: tp.x, Name: "finished", Node: tp.b.Node,
		Labels: app("evil"), IPv4: tp.b.IPv4, IPv6: tp.b.IPv6})
	must(t, err)
	obj, err = env.CP.Client.CoreV1().Pods(tp.x).Get(ctx, finished.Name, metav1.GetOptions{})
	must(t, err)
	obj.Status.Phase = corev1.PodSucceeded
	_, err = env.CP.Client.CoreV1().Pods(tp.x).UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	must(t, err)

	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(tp.b, tp.a, true)
	want.Expect(tp.d, tp.a, true)
	tp.expect(t, want, tcp80v4)
	for _, n := range env.Nodes {
		if err := n.DaemonExited(); err != nil {
			t.Fatalf("daemon of %s: %v", n.Name, err)
		}
		must(t, n.WaitConverged(ctx, converge))
	}
}
