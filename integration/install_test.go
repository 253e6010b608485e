package integration

// Install on a cluster that admits critical pods like GKE does (the shared control
// plane runs with cluster.ControlPlaneOptions.LimitCriticalPods): a pod made from the
// DaemonSet's template as shipped (daemon/deploy/daemonset.yaml, priorityClassName
// system-node-critical, namespace nftwarden) is rejected until daemon/deploy/quota.yaml
// is applied, and admitted after. No pod runs: admission is what is tested.

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// shippedDaemonSet reads daemon/deploy/daemonset.yaml.
func shippedDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	path, err := cluster.DeployManifest("daemonset.yaml")
	must(t, err)
	objs, err := cluster.ReadManifests(path)
	must(t, err)
	if len(objs) != 1 || objs[0].GetKind() != "DaemonSet" {
		t.Fatalf("%s: want exactly one DaemonSet, got %d objects", path, len(objs))
	}
	ds := &appsv1.DaemonSet{}
	must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, ds))
	return ds
}

func TestIntegrationInstallQuota(t *testing.T) {
	c := controlPlane(t)
	ctx := testCtx(t)
	must(t, c.ApplyDaemonRBAC()) // the namespace and the service account

	ds := shippedDaemonSet(t)
	tmpl := ds.Spec.Template
	if got := tmpl.Spec.NodeSelector["kubernetes.io/os"]; got != "linux" {
		t.Errorf("nodeSelector kubernetes.io/os is %q, want linux (no Windows nodes)", got)
	}
	if tmpl.Spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", tmpl.Spec.PriorityClassName)
	}
	// The pod the DaemonSet controller would create (it adds an owner and node
	// affinity, which admission does not look at).
	pod := &corev1.Pod{
		ObjectMeta: *tmpl.ObjectMeta.DeepCopy(),
		Spec:       *tmpl.Spec.DeepCopy(),
	}
	pod.Namespace, pod.GenerateName = ds.Namespace, ds.Name+"-"
	pods := c.Client.CoreV1().Pods(ds.Namespace)

	// The quota plugin refuses with a plain error, which the API server reports as
	// status 500; the DaemonSet controller's FailedCreate events carry the message.
	_, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "insufficient quota to match these scopes") {
		t.Fatalf("without the quota: got %v, want a rejection for lack of a quota covering system-node-critical", err)
	}
	t.Logf("without quota.yaml: %v", err)

	quotaPath, err := cluster.DeployManifest("quota.yaml")
	must(t, err)
	applied, err := c.ApplyManifests(ctx, quotaPath)
	must(t, err)
	var quota *corev1.ResourceQuota
	for _, o := range applied {
		if o.GetKind() == "ResourceQuota" {
			quota = &corev1.ResourceQuota{}
			must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, quota))
		}
	}
	if quota == nil || quota.Namespace != ds.Namespace {
		t.Fatalf("%s holds no ResourceQuota in namespace %s", quotaPath, ds.Namespace)
	}
	quotas := c.Client.CoreV1().ResourceQuotas(quota.Namespace)
	t.Cleanup(func() {
		_ = quotas.Delete(ctx, quota.Name, metav1.DeleteOptions{})
	})
	// No controller-manager runs: write the status its quota controller would, so
	// that admission checks the pod against real usage (and counts it).
	quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{}}
	for name := range quota.Spec.Hard {
		quota.Status.Used[name] = resource.MustParse("0")
	}
	_, err = quotas.UpdateStatus(ctx, quota, metav1.UpdateOptions{})
	must(t, err)

	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("with quota.yaml applied: %v", err)
	}
	t.Cleanup(func() {
		_ = pods.Delete(ctx, created.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
	if created.Spec.Priority == nil || *created.Spec.Priority < 2_000_000_000 {
		t.Errorf("admitted pod has priority %v, want the system-node-critical value", created.Spec.Priority)
	}
	got, err := quotas.Get(ctx, quota.Name, metav1.GetOptions{})
	must(t, err)
	used := got.Status.Used[corev1.ResourcePods]
	if used.Value() != 1 {
		t.Errorf("quota %s counts %s pods, want the admitted one", quota.Name, used.String())
	}
	t.Logf("with quota.yaml: pod %s admitted (priority %d), quota %s used %s of %s",
		created.Name, *created.Spec.Priority, quota.Name, used.String(), quota.Spec.Hard.Pods().String())
}
