package daemon

// IP plan: shop/web 198.18.0.10 (node-b), shop/api 198.18.1.20 (node-a, this
// node), isolated for ingress by shop/api-deny-all, which admits nothing.

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// denyAllWorld is an engine of node-a (audit: node-wide audit mode) over
// the IP plan's objects, with the named counters per policy.
func denyAllWorld(t *testing.T, audit bool, dp nft.Dataplane) *enforcer.Engine {
	t.Helper()
	eng, err := enforcer.New(enforcer.Config{NodeName: "node-a", Audit: audit, Counters: true, Dataplane: dp, Logger: slog.New(slog.DiscardHandler)})
	must(t, err)
	must(t, eng.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	must(t, eng.UpsertPod(testPod("shop", "web", "node-b", "198.18.0.10")))
	must(t, eng.UpsertPod(testPod("shop", "api", "node-a", "198.18.1.20")))
	must(t, eng.UpsertNetworkPolicy(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-deny-all"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}))
	return eng
}

// TestExplainTraceNodeAudit: on a node whose daemon runs with --audit the
// kernel accepts what policy would deny; explain --trace agrees with it when
// given --audit too, and reports the difference without.
func TestExplainTraceNodeAudit(t *testing.T) {
	ctx := context.Background()
	kernel := nft.NewFake("nftwarden")
	_, err := denyAllWorld(t, true, kernel).Reconcile(ctx)
	must(t, err)
	q, err := explainQueryFrom("shop/web", "shop/api", "80")
	must(t, err)
	for _, tc := range []struct {
		audit bool
		want  []string
	}{
		{audit: true, want: []string{"verdict:  ALLOWED", "audit:    ingress would be DENIED (shop/api is isolated for ingress by shop/api-deny-all",
			"kernel:   ACCEPT", "goto audit-in-np", "[counter ", "model:    ACCEPT"}},
		{audit: false, want: []string{"verdict:  DENIED", "kernel:   ACCEPT", "model:    DROP",
			"!!! DISAGREEMENT: the kernel's table ACCEPTS this flow, the model compiled for node node-a DROPS it."}},
	} {
		model := denyAllWorld(t, tc.audit, nil)
		tables, err := readTraceTables(ctx, kernel, "node-a", "nftwarden", model.Desired())
		must(t, err)
		var out bytes.Buffer
		must(t, explain(model, q, tables, outputText, &out))
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("--audit=%v: output lacks %q:\n%s", tc.audit, w, out.String())
			}
		}
		if tc.audit && strings.Contains(out.String(), "DISAGREEMENT") {
			t.Errorf("--audit: kernel and model disagree:\n%s", out.String())
		}
	}
}

// TestExplainTraceMissingTable: without the table the kernel accepts
// everything, and explain says why.
func TestExplainTraceMissingTable(t *testing.T) {
	ctx := context.Background()
	model := denyAllWorld(t, false, nil)
	tables, err := readTraceTables(ctx, nft.NewFake("nftwarden"), "node-a", "nftwarden", model.Desired())
	must(t, err)
	if !tables.KernelMissing {
		t.Fatal("a Fake never applied to reads as a table")
	}
	q, err := explainQueryFrom("shop/web", "shop/api", "80")
	must(t, err)
	var out bytes.Buffer
	must(t, explain(model, q, tables, outputText, &out))
	for _, w := range []string{"kernel:   ACCEPT (the table does not exist on this node: nothing is enforced)", "model:    DROP", "!!! DISAGREEMENT"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}
