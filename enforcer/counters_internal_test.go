package enforcer

// IP plan: the conformance world of cnp_internal_test.go (one pod per house
// namespace on node-a, 198.18.0.1-5).

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
)

// TestCounterInfo: with Config.Counters every enforced NetworkPolicy chain,
// default deny and ClusterNetworkPolicy rule has a named counter of the
// desired state that a rule names, and CounterInfo says what each counts;
// audited policies have none, nor rules no class chain of the node holds,
// and the counters follow changes.
func TestCounterInfo(t *testing.T) {
	e := newCNPWorldWith(t, Config{NodeName: "node-a", Logger: slog.New(slog.DiscardHandler), Counters: true})
	for _, c := range []*v1beta1.ClusterNetworkPolicy{
		mkCNP("deny-sly", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpIn("web", deny, nsPeerOf("slytherin"), cnpTCP(80)), cnpIn("", pass, nsPeerOf("ravenclaw"))),
		auditedCNP(mkCNP("try", v1beta1.BaselineTier, 1, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("hufflepuff")))),
		// No pod of this node is its subject: no class chain, no counter.
		mkCNP("elsewhere", v1beta1.AdminTier, 1, nsSubject("durmstrang"), cnpIn("", deny, nsPeerOf("slytherin"))),
	} {
		if err := e.UpsertClusterNetworkPolicy(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, np := range []*networkingv1.NetworkPolicy{npAllowingFrom("gryffindor", "slytherin"), auditedNP(namedNP("audited", npAllowingFrom("hufflepuff", "")))} {
		if err := e.UpsertNetworkPolicy(np); err != nil {
			t.Fatal(err)
		}
	}
	want := []CounterInfo{
		{Name: "adm-in-deny-sly/0-deny", Kind: KindClusterNetworkPolicy, Policy: "deny-sly", Direction: Ingress, Role: CounterRule, Rule: 0, Action: "Deny"},
		{Name: "adm-in-deny-sly/1-pass", Kind: KindClusterNetworkPolicy, Policy: "deny-sly", Direction: Ingress, Role: CounterRule, Rule: 1, Action: "Pass"},
		{Name: "dd-in-gryffindor/harry-potter", Kind: KindNetworkPolicy, Namespace: "gryffindor", Direction: Ingress, Role: CounterDefaultDeny,
			Pod: harry, Policies: []string{"gryffindor/np"}},
		{Name: "dd-in-gryffindor/hermione", Kind: KindNetworkPolicy, Namespace: "gryffindor", Direction: Ingress, Role: CounterDefaultDeny,
			Pod: herm, Policies: []string{"gryffindor/np"}},
		{Name: "npe-in-gryffindor/np", Kind: KindNetworkPolicy, Namespace: "gryffindor", Policy: "np", Direction: Ingress, Role: CounterEntered},
		{Name: "npn-in-gryffindor/np", Kind: KindNetworkPolicy, Namespace: "gryffindor", Policy: "np", Direction: Ingress, Role: CounterNotAllowed},
	}
	if diff := cmp.Diff(want, e.CounterInfo()); diff != "" {
		t.Fatalf("CounterInfo (-want +got):\n%s", diff)
	}
	checkCountersNamed(t, e)

	// A second policy isolating the pods joins their default deny; the
	// audited one enforced gets its counters.
	if err := e.UpsertNetworkPolicy(namedNP("np2", npAllowingFrom("gryffindor", "ravenclaw"))); err != nil {
		t.Fatal(err)
	}
	if err := e.UpsertNetworkPolicy(namedNP("audited", npAllowingFrom("hufflepuff", ""))); err != nil {
		t.Fatal(err)
	}
	got := e.CounterInfo()
	names := make([]string, len(got))
	for i, ci := range got {
		names[i] = ci.Name
		if ci.Name == "dd-in-gryffindor/harry-potter" && !slices.Equal(ci.Policies, []string{"gryffindor/np", "gryffindor/np2"}) {
			t.Errorf("default deny of harry: policies %v", ci.Policies)
		}
	}
	for _, n := range []string{"npe-in-gryffindor/np2", "npn-in-hufflepuff/audited", "dd-in-hufflepuff/cedric-diggory"} {
		if !slices.Contains(names, n) {
			t.Errorf("no counter %s in %v", n, names)
		}
	}
	checkCountersNamed(t, e)

	// Deleting everything leaves no counter.
	for _, n := range []string{"np", "np2"} {
		e.DeleteNetworkPolicy("gryffindor", n)
	}
	e.DeleteNetworkPolicy("hufflepuff", "audited")
	e.DeleteClusterNetworkPolicy("deny-sly")
	e.DeleteClusterNetworkPolicy("try")
	e.DeleteClusterNetworkPolicy("elsewhere")
	if got := e.CounterInfo(); len(got) != 0 {
		t.Errorf("counters left: %+v", got)
	}
	checkCountersNamed(t, e)
}

// checkCountersNamed checks that the desired state's counter objects are
// exactly those of CounterInfo, and that rules name only those.
func checkCountersNamed(t *testing.T, e *Engine) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.c.settle()
	st := e.c.w.desired
	infos := e.c.counters.list()
	objs := map[string]bool{}
	for name, o := range st.Objects {
		if o.Counter != nil {
			objs[name] = true
		}
	}
	for _, ci := range infos {
		if !objs[ci.Name] {
			t.Errorf("counter %s has no object", ci.Name)
		}
		delete(objs, ci.Name)
	}
	if len(objs) > 0 {
		t.Errorf("counter objects without info: %v", objs)
	}
	for _, ch := range st.Chains {
		for _, r := range ch.Rules {
			for _, x := range r.Exprs {
				if ref, ok := x.(nft.CounterRef); ok && st.Objects[ref.Name] == nil {
					t.Errorf("chain %s names counter %s, which does not exist", ch.Name, ref.Name)
				}
				if ref, ok := x.(nft.LimitRef); ok && st.Objects[ref.Name] == nil {
					t.Errorf("chain %s names limit %s, which does not exist", ch.Name, ref.Name)
				}
			}
		}
	}
}
