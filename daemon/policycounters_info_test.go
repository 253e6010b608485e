package daemon

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftwarden/nftwarden/enforcer"
)

func TestCounterTerms(t *testing.T) {
	tests := []struct {
		name string
		info enforcer.CounterInfo
		want []counterTerm
	}{
		{
			name: "a NetworkPolicy's chain entered: allowed, plus",
			info: enforcer.CounterInfo{Name: "c1", Kind: enforcer.KindNetworkPolicy, Namespace: "shop", Policy: "web", Direction: enforcer.Ingress, Role: enforcer.CounterEntered},
			want: []counterTerm{{Series: np("shop", "web", "ingress", counterAllowed), Sign: 1}},
		},
		{
			name: "left not allowed: allowed, minus",
			info: enforcer.CounterInfo{Name: "c1", Kind: enforcer.KindNetworkPolicy, Namespace: "shop", Policy: "web", Direction: enforcer.Egress, Role: enforcer.CounterNotAllowed},
			want: []counterTerm{{Series: np("shop", "web", "egress", counterAllowed), Sign: -1}},
		},
		{
			name: "a pod's default deny: denied, for each policy isolating it",
			info: enforcer.CounterInfo{Name: "c1", Kind: enforcer.KindNetworkPolicy, Namespace: "shop", Direction: enforcer.Ingress, Role: enforcer.CounterDefaultDeny,
				Pod: "shop/web-1", Policies: []string{"shop/a", "shop/b"}},
			want: []counterTerm{{Series: np("shop", "a", "ingress", counterDenied), Sign: 1}, {Series: np("shop", "b", "ingress", counterDenied), Sign: 1}},
		},
		{
			name: "a ClusterNetworkPolicy Accept rule",
			info: enforcer.CounterInfo{Name: "c1", Kind: enforcer.KindClusterNetworkPolicy, Policy: "admin-x", Direction: enforcer.Egress, Role: enforcer.CounterRule, Rule: 0, Action: "Accept"},
			want: []counterTerm{{Series: policySeries{Kind: "ClusterNetworkPolicy", Policy: "admin-x", Direction: "egress", Verdict: counterAllowed}, Sign: 1}},
		},
		{
			name: "a Deny rule",
			info: enforcer.CounterInfo{Name: "c1", Kind: enforcer.KindClusterNetworkPolicy, Policy: "admin-x", Direction: enforcer.Ingress, Role: enforcer.CounterRule, Rule: 1, Action: "Deny"},
			want: []counterTerm{{Series: policySeries{Kind: "ClusterNetworkPolicy", Policy: "admin-x", Direction: "ingress", Verdict: counterDenied}, Sign: 1}},
		},
		{
			name: "a Pass rule",
			info: enforcer.CounterInfo{Name: "c1", Kind: enforcer.KindClusterNetworkPolicy, Policy: "admin-x", Direction: enforcer.Ingress, Role: enforcer.CounterRule, Rule: 2, Action: "Pass"},
			want: []counterTerm{{Series: policySeries{Kind: "ClusterNetworkPolicy", Policy: "admin-x", Direction: "ingress", Verdict: counterPassed}, Sign: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := counterTerms([]enforcer.CounterInfo{tt.info})
			if diff := cmp.Diff(map[string][]counterTerm{"c1": tt.want}, got); diff != "" {
				t.Errorf("counterTerms (-want +got):\n%s", diff)
			}
		})
	}
}
