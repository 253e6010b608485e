package integration

// The daemon with the permissions of its own manifests: every Env runs its daemons as
// the service account of daemon/deploy/rbac.yaml (a static token for
// system:serviceaccount:nftwarden:nftwarden), with that file applied as written. This
// test checks that this is so, that the role lets the daemon read what it watches and
// nothing else, and that the daemon never met a "forbidden" while enforcing.

import (
	"os"
	"regexp"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

func TestIntegrationRBAC(t *testing.T) {
	c := controlPlane(t)
	ctx := testCtx(t)
	tp := started(t, cluster.Options{})
	if got := tp.env.DaemonKubeconfig(); got != c.DaemonKubeconfig {
		t.Fatalf("daemons use %s, want the daemon identity's %s", got, c.DaemonKubeconfig)
	}
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-b", selecting(app("a")), ingress(from(peers(podPeer(app("b"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(tp.b, tp.a, true)
	tp.expect(t, want, tcp80v4, tcp80v6)
	for _, n := range tp.env.Nodes {
		must(t, n.WaitConverged(ctx, converge))
	}

	// What the daemon's identity may do, asked as that identity.
	daemonClient, err := kubernetes.NewForConfig(c.DaemonConfig)
	must(t, err)
	for _, tc := range []struct {
		verb, group, resource string
		allowed               bool
	}{
		{"list", "", "pods", true},
		{"watch", "", "pods", true},
		{"list", "", "namespaces", true},
		{"watch", "", "namespaces", true},
		{"list", "networking.k8s.io", "networkpolicies", true},
		{"watch", "networking.k8s.io", "networkpolicies", true},
		{"list", "policy.networking.k8s.io", "clusternetworkpolicies", true},
		{"watch", "policy.networking.k8s.io", "clusternetworkpolicies", true},
		// Read-only: no writes anywhere, no secrets.
		{"create", "", "pods", false},
		{"update", "", "pods", false},
		{"patch", "", "pods/status", false},
		{"delete", "", "namespaces", false},
		{"update", "networking.k8s.io", "networkpolicies", false},
		{"create", "policy.networking.k8s.io", "clusternetworkpolicies", false},
		{"list", "", "secrets", false},
		{"get", "", "configmaps", false},
	} {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: tc.verb, Group: tc.group, Resource: tc.resource},
		}}
		got, err := daemonClient.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		must(t, err)
		if got.Status.Allowed != tc.allowed {
			t.Errorf("%s may %s %s/%s: %v, want %v (%s)", cluster.DaemonUser, tc.verb, tc.group, tc.resource,
				got.Status.Allowed, tc.allowed, got.Status.Reason)
		}
	}

	// A request the role does not cover shows in the daemon's log (client-go logs
	// failed lists and watches), even when enforcement looks right.
	forbidden := regexp.MustCompile(`(?i)forbidden`)
	for _, n := range tp.env.Nodes {
		log, err := os.ReadFile(n.DaemonLog())
		must(t, err)
		if loc := forbidden.FindIndex(log); loc != nil {
			t.Errorf("daemon of %s was refused a request: %s", n.Name, lineAt(log, loc[0]))
		}
	}
}

// lineAt returns the line of b that holds offset i.
func lineAt(b []byte, i int) string {
	start, end := i, i
	for start > 0 && b[start-1] != '\n' {
		start--
	}
	for end < len(b) && b[end] != '\n' {
		end++
	}
	return string(b[start:end])
}
