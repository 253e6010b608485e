package integration

// The RBAC split of daemon/deploy/network-policy-roles.yaml against the real API server
// with the ClusterNetworkPolicy CRD of network-policy-api installed (standard channel):
// carol (cluster-network-admin, ClusterRoleBinding) writes ClusterNetworkPolicies and
// nothing else; alice (namespace-network-editor, RoleBinding in team-a) writes the
// NetworkPolicies of team-a and nothing else; the daemon's identity (rbac.yaml) reads
// and watches ClusterNetworkPolicies and writes none. People are impersonated by the
// admin (rest.Config.Impersonate); the daemon uses its own token. Also: the CRD's
// schema and CEL rules refuse invalid objects, so later code may rely on them.
// TestIntegrationCNPRBAC is API only; TestIntegrationCNPRBACPackets shows the split
// with packets: alice's NetworkPolicy cannot lift carol's Admin-tier Deny, and does
// override carol's Baseline-tier Deny (team-a/server on node 0, team-b/client on node 1).

import (
	"context"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// clients are the typed clients of one identity.
type clients struct {
	kube kubernetes.Interface
	cnp  npaclient.Interface
}

// clientsFor builds the clients of cfg. Custom resources are served in JSON only, so
// the admin's protobuf default is replaced.
func clientsFor(t *testing.T, cfg *rest.Config) clients {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = "application/json"
	kube, err := kubernetes.NewForConfig(cfg)
	must(t, err)
	cnp, err := npaclient.NewForConfig(cfg)
	must(t, err)
	return clients{kube: kube, cnp: cnp}
}

// impersonating returns the clients of user, impersonated by the admin.
func impersonating(t *testing.T, c *cluster.ControlPlane, user string) clients {
	t.Helper()
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	return clientsFor(t, cfg)
}

type cnpTweak func(*policyv1beta1.ClusterNetworkPolicy)

// adminCNP is a valid Admin-tier policy: priority 10, subject the namespace ns, one
// ingress rule that denies every namespace.
func adminCNP(name, ns string, tweaks ...cnpTweak) *policyv1beta1.ClusterNetworkPolicy {
	p := &policyv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{
			Tier:     policyv1beta1.AdminTier,
			Priority: 10,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{
				Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			},
			Ingress: []policyv1beta1.ClusterNetworkPolicyIngressRule{{
				Name:   "deny-all",
				Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From:   []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}},
			}},
		},
	}
	for _, tw := range tweaks {
		tw(p)
	}
	return p
}

func TestIntegrationCNPRBAC(t *testing.T) {
	c := controlPlane(t)
	ctx := testCtx(t)
	env := cluster.StartForTest(t, c, cluster.Options{})
	admin := clientsFor(t, c.Config)

	installCNPCRD(t, ctx, c)

	teamA, teamB := grantRoleSplit(t, ctx, c, env)

	carol, alice, daemon := impersonating(t, c, "carol"), impersonating(t, c, "alice"), clientsFor(t, c.DaemonConfig)

	// The daemon watches from before carol's create, so the event proves the watch.
	cnpWatch, err := daemon.cnp.PolicyV1beta1().ClusterNetworkPolicies().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("%s cannot watch clusternetworkpolicies: %v", cluster.DaemonUser, err)
	}
	defer cnpWatch.Stop()

	// A policy of the admin in team-b, for alice to try to change.
	_, err = admin.kube.NetworkingV1().NetworkPolicies(teamB).Create(ctx, policy(teamB, "admin-owned"), metav1.CreateOptions{})
	must(t, err)

	name := env.Name("deny-to-team-a")
	var stored *policyv1beta1.ClusterNetworkPolicy // carol's policy as last written
	createCNP := func(cl clients) error {
		p, err := cl.cnp.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, adminCNP(name, teamA), metav1.CreateOptions{})
		if err == nil {
			stored = p
		}
		return err
	}
	updateCNP := func(cl clients) error {
		p := stored.DeepCopy()
		p.Spec.Priority++
		p, err := cl.cnp.PolicyV1beta1().ClusterNetworkPolicies().Update(ctx, p, metav1.UpdateOptions{})
		if err == nil {
			stored = p
		}
		return err
	}
	deleteCNP := func(cl clients) error {
		return cl.cnp.PolicyV1beta1().ClusterNetworkPolicies().Delete(ctx, name, metav1.DeleteOptions{})
	}
	getCNP := func(cl clients) error {
		_, err := cl.cnp.PolicyV1beta1().ClusterNetworkPolicies().Get(ctx, name, metav1.GetOptions{})
		return err
	}
	listCNP := func(cl clients) error {
		_, err := cl.cnp.PolicyV1beta1().ClusterNetworkPolicies().List(ctx, metav1.ListOptions{})
		return err
	}
	createNP := func(ns string) func(clients) error {
		return func(cl clients) error {
			_, err := cl.kube.NetworkingV1().NetworkPolicies(ns).Create(ctx, policy(ns, "alice", selecting(app("a"))), metav1.CreateOptions{})
			return err
		}
	}
	updateNP := func(ns, name string) func(clients) error {
		return func(cl clients) error {
			np, err := admin.kube.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: app("b")}
			_, err = cl.kube.NetworkingV1().NetworkPolicies(ns).Update(ctx, np, metav1.UpdateOptions{})
			return err
		}
	}
	deleteNP := func(ns, name string) func(clients) error {
		return func(cl clients) error {
			return cl.kube.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{})
		}
	}

	// In order: each step starts from the state the previous ones left.
	for _, step := range []struct {
		who     string
		as      clients
		what    string
		do      func(clients) error
		allowed bool
	}{
		{"daemon", daemon, "create a ClusterNetworkPolicy", createCNP, false},
		{"alice", alice, "create a ClusterNetworkPolicy", createCNP, false},
		{"carol", carol, "create a ClusterNetworkPolicy", createCNP, true},
		{"daemon", daemon, "get it", getCNP, true},
		{"daemon", daemon, "list ClusterNetworkPolicies", listCNP, true},
		{"daemon", daemon, "update it", updateCNP, false},
		{"daemon", daemon, "delete it", deleteCNP, false},
		{"alice", alice, "get it", getCNP, false},
		{"alice", alice, "list ClusterNetworkPolicies", listCNP, false},
		{"alice", alice, "update it", updateCNP, false},
		{"alice", alice, "delete it", deleteCNP, false},
		{"carol", carol, "create a NetworkPolicy in team-a", createNP(teamA), false},
		{"carol", carol, "update the ClusterNetworkPolicy", updateCNP, true},
		{"carol", carol, "delete it", deleteCNP, true},
		{"alice", alice, "create a NetworkPolicy in team-a", createNP(teamA), true},
		{"alice", alice, "update it", updateNP(teamA, "alice"), true},
		{"alice", alice, "delete it", deleteNP(teamA, "alice"), true},
		{"alice", alice, "create a NetworkPolicy in team-b", createNP(teamB), false},
		{"alice", alice, "update the admin's NetworkPolicy in team-b", updateNP(teamB, "admin-owned"), false},
		{"alice", alice, "delete the admin's NetworkPolicy in team-b", deleteNP(teamB, "admin-owned"), false},
		{"daemon", daemon, "create a NetworkPolicy in team-a", createNP(teamA), false},
	} {
		err := step.do(step.as)
		switch {
		case step.allowed && err != nil:
			t.Errorf("%s may not %s: %v", step.who, step.what, err)
		case !step.allowed && !apierrors.IsForbidden(err):
			t.Errorf("%s may %s: got %v, want Forbidden", step.who, step.what, err)
		}
	}

	// carol's create, update and delete, as the daemon's watch saw them.
	wantEvents := []watch.EventType{watch.Added, watch.Modified, watch.Deleted}
	for _, want := range wantEvents {
		select {
		case ev, ok := <-cnpWatch.ResultChan():
			if !ok {
				t.Fatalf("the daemon's watch ended before the %s event", want)
			}
			p, isCNP := ev.Object.(*policyv1beta1.ClusterNetworkPolicy)
			if ev.Type != want || !isCNP || p.Name != name {
				t.Fatalf("the daemon's watch: got %s %T, want %s of %s", ev.Type, ev.Object, want, name)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the daemon's watch: no %s event of %s", want, name)
		}
	}

	// The CRD's schema and CEL rules, as the API server applies them (dry run: nothing
	// is stored). The first row is valid, so the others fail for their own reason.
	for _, tc := range []struct {
		name  string
		tweak cnpTweak
		valid bool
	}{
		{"valid", func(*policyv1beta1.ClusterNetworkPolicy) {}, true},
		{"priority 1000", func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Priority = 1000 }, true},
		{"priority 1001", func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Priority = 1001 }, false},
		{"priority -1", func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Priority = -1 }, false},
		{"unknown tier", func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Tier = "Developer" }, false},
		{"two subject kinds", func(p *policyv1beta1.ClusterNetworkPolicy) {
			p.Spec.Subject.Pods = &policyv1beta1.NamespacedPod{}
		}, false},
		{"no subject", func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Subject.Namespaces = nil }, false},
		{"unknown action", func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Ingress[0].Action = "Allow" }, false},
		{"rule without peers", func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Ingress[0].From = nil }, false},
		{"empty port range (CEL)", func(p *policyv1beta1.ClusterNetworkPolicy) {
			p.Spec.Ingress[0].Protocols = []policyv1beta1.ClusterNetworkPolicyProtocol{{TCP: &policyv1beta1.ClusterNetworkPolicyProtocolTCP{
				DestinationPort: &policyv1beta1.Port{Range: &policyv1beta1.PortRange{Start: 80, End: 80}},
			}}}
		}, false},
		{"CIDR with host bits (CEL)", func(p *policyv1beta1.ClusterNetworkPolicy) {
			p.Spec.Egress = []policyv1beta1.ClusterNetworkPolicyEgressRule{{
				Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
				To:     []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []policyv1beta1.CIDR{"198.18.0.1/24"}}},
			}}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := adminCNP(env.Name("validation"), teamA, tc.tweak)
			_, err := carol.cnp.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			switch {
			case tc.valid && err != nil:
				t.Errorf("refused: %v", err)
			case !tc.valid && !apierrors.IsInvalid(err):
				t.Errorf("got %v, want Invalid", err)
			case err != nil:
				t.Logf("refused as it should be: %v", err)
			}
		})
	}
}

func TestIntegrationCNPRBACPackets(t *testing.T) {
	c := controlPlane(t)
	ctx := testCtx(t)
	installCNPCRD(t, ctx, c)
	env := cluster.StartForTest(t, c, cluster.Options{Nodes: 2})
	teamA, teamB := grantRoleSplit(t, ctx, c, env)
	server, err := env.AddPod(ctx, cluster.PodSpec{Namespace: teamA, Name: "server", Node: env.Nodes[0], Labels: app("server"), Ports: agentPorts})
	must(t, err)
	client, err := env.AddPod(ctx, cluster.PodSpec{Namespace: teamB, Name: "client", Node: env.Nodes[1], Labels: app("client"), Ports: agentPorts})
	must(t, err)
	startDaemons(t, env)
	carol, alice := impersonating(t, c, "carol"), impersonating(t, c, "alice")
	pods := []*cluster.Pod{server, client}
	open := cluster.NewReachability(pods, true)
	clientBlocked := cluster.NewReachability(pods, true)
	clientBlocked.Expect(client, server, false)
	expect := func(step string, want *cluster.Reachability) {
		t.Helper()
		for _, f := range []cluster.Flow{tcp80v4, tcp80v6, udp53v4} {
			if err := env.WaitMatrix(ctx, want, f, converge); err != nil {
				t.Fatalf("%s: %v", step, err)
			}
		}
	}
	expect("no policy", open)

	cnps := carol.cnp.PolicyV1beta1().ClusterNetworkPolicies()
	adminDeny := denyNamespaceCNP(env.Name("admin-deny-team-b"), policyv1beta1.AdminTier, teamA, teamB)
	_, err = cnps.Create(ctx, adminDeny, metav1.CreateOptions{})
	must(t, err)
	expect("carol's Admin-tier Deny", clientBlocked)

	// alice allows everything into her namespace: the Admin tier comes first.
	allowAll := policy(teamA, "allow-all", selecting(nil), ingress(from(nil)))
	_, err = alice.kube.NetworkingV1().NetworkPolicies(teamA).Create(ctx, allowAll, metav1.CreateOptions{})
	must(t, err)
	// Once each kernel holds what the cluster compiles to (alice's policy included),
	// a wrong allow would show in the packets.
	for _, n := range env.Nodes {
		must(t, n.WaitConverged(ctx, converge))
	}
	expect("alice's allow-all under carol's Admin-tier Deny", clientBlocked)

	// The same Deny in the Baseline tier is a default that alice's policy overrides.
	must(t, cnps.Delete(ctx, adminDeny.Name, metav1.DeleteOptions{}))
	baselineDeny := denyNamespaceCNP(env.Name("baseline-deny-team-b"), policyv1beta1.BaselineTier, teamA, teamB)
	_, err = cnps.Create(ctx, baselineDeny, metav1.CreateOptions{})
	must(t, err)
	expect("alice's allow-all over carol's Baseline-tier Deny", open)

	// Without alice's policy the Baseline Deny holds by itself.
	must(t, alice.kube.NetworkingV1().NetworkPolicies(teamA).Delete(ctx, allowAll.Name, metav1.DeleteOptions{}))
	expect("carol's Baseline-tier Deny alone", clientBlocked)
	must(t, cnps.Delete(ctx, baselineDeny.Name, metav1.DeleteOptions{}))
	expect("no policy again", open)
}

// installCNPCRD installs the standard channel of the ClusterNetworkPolicy CRD for the
// test's duration.
func installCNPCRD(t *testing.T, ctx context.Context, c *cluster.ControlPlane) {
	t.Helper()
	removeCNPCRDAtCleanup(t, c)
	start := time.Now()
	must(t, c.InstallClusterNetworkPolicyCRD(ctx, cluster.StandardChannel))
	t.Logf("CRD established and served in %s", time.Since(start).Round(time.Millisecond))
}

// removeCNPCRDAtCleanup removes the ClusterNetworkPolicy CRD (and so every
// ClusterNetworkPolicy) when the test ends: the control plane is shared.
func removeCNPCRDAtCleanup(t *testing.T, c *cluster.ControlPlane) {
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.RemoveClusterNetworkPolicyCRD(cctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// grantRoleSplit applies daemon/deploy/network-policy-roles.yaml, creates the
// namespaces team-a and team-b (with the env's suffix), binds carol as
// cluster-network-admin (ClusterRoleBinding) and alice as namespace-network-editor
// of team-a (RoleBinding), and waits until the authorizer sees both. Bindings and
// roles are removed when the test ends.
func grantRoleSplit(t *testing.T, ctx context.Context, c *cluster.ControlPlane, env *cluster.Env) (teamA, teamB string) {
	t.Helper()
	admin := clientsFor(t, c.Config)
	roles, err := cluster.DeployManifest("network-policy-roles.yaml")
	must(t, err)
	applied, err := c.ApplyManifests(ctx, roles)
	must(t, err)
	teamA, teamB = env.Name("team-a"), env.Name("team-b")
	for _, ns := range []string{teamA, teamB} {
		must(t, env.CreateNamespace(ctx, ns, nil))
	}
	carolBinding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: env.Name("carol-cluster-network-admin")},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-network-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "carol"}},
	}
	_, err = admin.kube.RbacV1().ClusterRoleBindings().Create(ctx, carolBinding, metav1.CreateOptions{})
	must(t, err)
	aliceBinding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: teamA, Name: "alice-namespace-network-editor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "namespace-network-editor"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "alice"}},
	}
	_, err = admin.kube.RbacV1().RoleBindings(teamA).Create(ctx, aliceBinding, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		// Without a namespace controller, a deleted namespace's role bindings would stay.
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		rbac := admin.kube.RbacV1()
		for _, err := range []error{
			rbac.RoleBindings(teamA).Delete(cctx, aliceBinding.Name, metav1.DeleteOptions{}),
			rbac.ClusterRoleBindings().Delete(cctx, carolBinding.Name, metav1.DeleteOptions{}),
		} {
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("cleanup: %v", err)
			}
		}
		for _, r := range applied {
			if err := rbac.ClusterRoles().Delete(cctx, r.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	// The authorizer sees new bindings through a cache.
	waitAllowed(t, ctx, admin.kube, "carol", "create", "policy.networking.k8s.io", "clusternetworkpolicies", "")
	waitAllowed(t, ctx, admin.kube, "alice", "create", "networking.k8s.io", "networkpolicies", teamA)

	return teamA, teamB
}

// waitAllowed waits until the authorizer lets user do verb on group/resource in
// namespace ns ("" for cluster-scoped), asked by the admin with a SubjectAccessReview.
func waitAllowed(t *testing.T, ctx context.Context, admin kubernetes.Interface, user, verb, group, resource, ns string) {
	t.Helper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               user,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Namespace: ns},
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		must(t, err)
		if got.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s may still not %s %s/%s in %q: %s", user, verb, group, resource, ns, got.Status.Reason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
