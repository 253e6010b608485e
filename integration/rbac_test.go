package integration

// The daemon with the permissions of its own manifests: daemon/deploy/rbac.yaml is
// applied as written, and the daemons authenticate as its service account (a static
// token for system:serviceaccount:nftwarden:nftwarden), not as an administrator.

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// readManifests decodes every document of a multi-document YAML file.
func readManifests(t *testing.T, path string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no RBAC manifests in this tree: %v", err)
	}
	r := utilyaml.NewYAMLReader(bufioReader(b))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode %s: %v", path, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func TestIntegrationRBAC(t *testing.T) {
	c := controlPlane(t)
	ctx := testCtx(t)

	// Without the manifests the daemon's identity may read nothing.
	daemonClient, err := kubernetes.NewForConfig(c.DaemonConfig)
	must(t, err)
	if _, err := daemonClient.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing pods as %s before RBAC: got %v, want Forbidden", cluster.DaemonUser, err)
	}

	for _, obj := range readManifests(t, "../daemon/deploy/rbac.yaml") {
		var err error
		switch o := obj.(type) {
		case *corev1.Namespace:
			_, err = c.Client.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = c.Client.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = c.Client.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = c.Client.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = c.Client.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = c.Client.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("rbac.yaml: unexpected object %T", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("apply %T from rbac.yaml: %v", obj, err)
		}
	}

	tp := started(t, cluster.Options{DaemonKubeconfig: c.DaemonKubeconfig})
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-b", selecting(app("a")), ingress(from(peers(podPeer(app("b"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(tp.b, tp.a, true)
	tp.expect(t, want, tcp80v4, tcp80v6)
}
