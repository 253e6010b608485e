package integration

// Upgrade and uninstall of the DaemonSet. No controller-manager runs here, so the test
// plays the DaemonSet controller and the garbage collector: the DaemonSet of
// daemon/deploy/daemonset.yaml (under a name of this test's own) is created in the API
// server, and each node's daemon runs as a Pod object it owns (POD_NAME and
// POD_NAMESPACE as the downward API gives them), with the shipped RBAC.
//
//  1. Rolling update of node 0's pod: the daemon is stopped (SIGTERM), its pod object
//     deleted, a new one created and its daemon started. Probes run the whole time
//     (topology of helpers_test.go: x/a on node 0 admits only x/b; y/c is denied):
//     no wrong verdict, and the table stays.
//  2. Uninstall: the DaemonSet is deleted (background propagation), then its pods and
//     their daemons (SIGTERM): every node's table is gone, and nothing is isolated
//     any more.

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

const daemonNamespace = "nftwarden"

func TestIntegrationUninstall(t *testing.T) {
	cp := controlPlane(t)
	ctx := testCtx(t)
	env := cluster.StartForTest(t, cp, cluster.Options{Nodes: 2})
	tp := newTopology(t, env)
	must(t, cp.ApplyDaemonRBAC())

	ds := shippedDaemonSet(t)
	ds.Name = env.Name("nftwarden")
	ds.Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": ds.Name}
	ds.Spec.Template.Labels = ds.Spec.Selector.MatchLabels
	ds, err := cp.Client.AppsV1().DaemonSets(daemonNamespace).Create(ctx, ds, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		bg := metav1.DeletePropagationBackground
		_ = cp.Client.AppsV1().DaemonSets(daemonNamespace).Delete(context.Background(), ds.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
	})
	runAsPod := func(n *cluster.Node, generation string) string {
		t.Helper()
		pod := daemonPod(ds, n, generation)
		_, err := cp.Client.CoreV1().Pods(daemonNamespace).Create(ctx, pod, metav1.CreateOptions{})
		must(t, err)
		t.Cleanup(func() { _ = deleteDaemonPod(context.Background(), cp, pod.Name) })
		n.SetDaemonEnv("POD_NAME="+pod.Name, "POD_NAMESPACE="+daemonNamespace)
		return pod.Name
	}
	pods := map[*cluster.Node]string{}
	for _, n := range env.Nodes {
		pods[n] = runAsPod(n, "1")
	}
	startDaemons(t, env)
	must(t, env.ApplyPolicy(ctx, policy(tp.x, "a-from-b", selecting(app("a")), ingress(from(peers(podPeer(app("b"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(tp.b, tp.a, true)
	tp.expect(t, want, tcp80v4)

	// 1. Rolling update of node 0.
	p := startProber(ctx, env, []probePair{
		{name: "allowed b -> a", from: tp.b, to: tp.a, flow: tcp80v4, allowed: true},
		{name: "denied c -> a", from: tp.c, to: tp.a, flow: tcp80v4, allowed: false},
	})
	node := tp.a.Node
	time.Sleep(time.Second)
	stopDaemonPod(ctx, t, cp, node, pods[node])
	time.Sleep(time.Second) // the rules must hold with no daemon at all
	pods[node] = runAsPod(node, "2")
	must(t, node.StartDaemon())
	must(t, node.WaitDaemonReady(converge))
	time.Sleep(time.Second)
	p.stop(t)
	if log := readFile(t, node.DaemonLog()); !strings.Contains(log, "still exists (restart or rolling update)") {
		t.Errorf("the stopped daemon did not keep its rules for a rolling update; log:\n%s", log)
	}
	if !hasTable(ctx, t, node) {
		t.Fatal("the table is gone after a rolling update")
	}

	// 2. Uninstall: the DaemonSet goes first, then the garbage collector deletes its
	// pods, whose containers get SIGTERM.
	bg := metav1.DeletePropagationBackground
	must(t, cp.Client.AppsV1().DaemonSets(daemonNamespace).Delete(ctx, ds.Name, metav1.DeleteOptions{PropagationPolicy: &bg}))
	for _, n := range env.Nodes {
		stopDaemonPod(ctx, t, cp, n, pods[n])
		if hasTable(ctx, t, n) {
			t.Errorf("node %s still has its table after the uninstall; daemon log:\n%s", n.Name, readFile(t, n.DaemonLog()))
		}
		if log := readFile(t, n.DaemonLog()); !strings.Contains(log, "uninstalled: table deleted") {
			t.Errorf("node %s: no uninstall in the daemon's log:\n%s", n.Name, log)
		}
	}
	tp.expect(t, cluster.NewReachability(tp.all, true), tcp80v4)
}

// daemonPod is the Pod the DaemonSet controller would create on n (the fields the
// daemon reads: its owner; the spec is only what the API server requires).
func daemonPod(ds *appsv1.DaemonSet, n *cluster.Node, generation string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: daemonNamespace,
			Name:      ds.Name + "-" + n.Name + "-" + generation,
			Labels:    ds.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID,
				Controller: new(true), BlockOwnerDeletion: new(true),
			}},
		},
		Spec: corev1.PodSpec{
			NodeName:                     n.Name,
			ServiceAccountName:           ds.Spec.Template.Spec.ServiceAccountName,
			AutomountServiceAccountToken: new(false),
			Containers:                   []corev1.Container{{Name: "nftwarden", Image: "nftwarden.invalid/nftwarden"}},
		},
	}
}

// stopDaemonPod deletes a daemon's pod the way the API server and the kubelet do:
// the object is marked for deletion (it stays, with a deletionTimestamp, while its
// containers stop), the daemon gets SIGTERM and ends, then the object is removed.
func stopDaemonPod(ctx context.Context, t *testing.T, cp *cluster.ControlPlane, n *cluster.Node, name string) {
	t.Helper()
	grace := int64(30)
	must(t, cp.Client.CoreV1().Pods(daemonNamespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &grace}))
	n.StopDaemon()
	must(t, deleteDaemonPod(ctx, cp, name))
}

func deleteDaemonPod(ctx context.Context, cp *cluster.ControlPlane, name string) error {
	err := cp.Client.CoreV1().Pods(daemonNamespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if err != nil && !strings.Contains(err.Error(), "not found") {
		return err
	}
	return nil
}

// hasTable reports whether the node's namespace holds the table inet nftwarden.
func hasTable(ctx context.Context, t *testing.T, n *cluster.Node) bool {
	t.Helper()
	out, err := n.Exec(ctx, "nft", "list", "tables")
	must(t, err)
	return strings.Contains(out, "table inet nftwarden\n")
}
