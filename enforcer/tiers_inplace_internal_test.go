package enforcer

import (
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
)

// classChains are the class chains of the desired state, by name, with
// their comments.
func classChains(e *Engine) map[string]string {
	out := map[string]string{}
	for name, ch := range e.Desired().Chains {
		if strings.HasPrefix(ch.Comment, "peer class: ") {
			out[name] = ch.Comment
		}
	}
	return out
}

// TestTiersPolicyRewritesClassChainsInPlace: a cluster-wide policy whose
// rule joins the class of every address it matches (the addresses of the
// class all move to the class plus that rule), added and then deleted,
// sends no class-map element: each class chain is rewritten in place under
// its name (moveChains), the policy's rule inserted or deleted alone. The traced verdicts follow Decide at every step.
func TestTiersPolicyRewritesClassChainsInPlace(t *testing.T) {
	fake := nft.NewFake(nft.DefaultTable)
	e := newCNPWorldOn(t, slog.New(slog.DiscardHandler), fake)
	all := v1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}}
	first := mkCNP("first", v1beta1.AdminTier, 1, all, cnpIn("", deny, nsPeerOf("slytherin"), cnpTCP(80)),
		cnpOut("", deny, nsPeerOf("ravenclaw"), cnpTCP(5353)))
	second := mkCNP("second", v1beta1.AdminTier, 2, all, cnpIn("", deny, nsPeerOf("slytherin"), cnpTCP(8080)),
		cnpOut("", deny, nsPeerOf("ravenclaw"), cnpTCP(8081)))
	if err := e.UpsertClusterNetworkPolicy(first); err != nil {
		t.Fatal(err)
	}
	checkTiersGrid(t, e, fake)
	before := classChains(e)
	if len(before) == 0 {
		t.Fatal("no class chain for the first policy")
	}
	for _, step := range []struct {
		name       string
		do         func() error
		withSecond bool
	}{
		{"second added", func() error { return e.UpsertClusterNetworkPolicy(second) }, true},
		{"second deleted", func() error { e.DeleteClusterNetworkPolicy(second.Name); return nil }, false},
	} {
		t.Run(step.name, func(t *testing.T) {
			fake.ResetHistory()
			if err := step.do(); err != nil {
				t.Fatal(err)
			}
			checkTiersGrid(t, e, fake) // flushes
			sent := fake.Transactions()
			if len(sent) != 1 {
				t.Fatalf("%d transactions, want one", len(sent))
			}
			if text := sent[0].String(); strings.Contains(text, " element ") {
				t.Errorf("the change sent elements:\n%s", text)
			}
			for _, op := range sent[0].Ops {
				if _, class := before[op.Name]; class && op.Kind == nft.OpReplaceRules {
					t.Errorf("class chain %s rewritten whole, not rule by rule:\n%s", op.Name, sent[0])
				}
			}
			now := classChains(e)
			if !slices.Equal(slices.Sorted(maps.Keys(now)), slices.Sorted(maps.Keys(before))) {
				t.Fatalf("class chains %v, want the same names as %v", now, before)
			}
			for name, c := range now {
				if strings.Contains(c, "policy second") != step.withSecond {
					t.Errorf("chain %s: %q, want the second policy's rule: %v", name, c, step.withSecond)
				}
			}
		})
	}
}
