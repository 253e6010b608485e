package enforcer

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAsSelectorCache: the cached conversion gives what the uncached one
// gives, selectors that differ never share an entry, and invalid selectors
// fail every time (they are not cached).
func TestAsSelectorCache(t *testing.T) {
	in := func(k string, vs ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: vs}
	}
	sels := []*metav1.LabelSelector{
		{},
		{MatchLabels: map[string]string{"app": "web"}},
		{MatchLabels: map[string]string{"app": "we", "b": ""}},
		{MatchLabels: map[string]string{"ap": "pweb"}},
		{MatchLabels: map[string]string{"app": "web", "role": "db"}},
		{MatchExpressions: []metav1.LabelSelectorRequirement{in("app", "web")}},
		{MatchExpressions: []metav1.LabelSelectorRequirement{in("app", "web", "db")}},
		{MatchExpressions: []metav1.LabelSelectorRequirement{in("app", "webdb")}},
		{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"web"}}}},
		{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}},
		{MatchLabels: map[string]string{"app": "web"}, MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "role", Operator: metav1.LabelSelectorOpDoesNotExist}}},
	}
	keys := map[string]int{}
	for round := range 2 { // the second round answers from the cache
		for i, ls := range sels {
			want, err := metav1.LabelSelectorAsSelector(ls)
			if err != nil {
				t.Fatal(err)
			}
			got, err := asSelector(ls)
			if err != nil || got.String() != want.String() {
				t.Fatalf("round %d, selector %d: asSelector = %v, %v; want %v", round, i, got, err, want)
			}
			k := string(appendSelectorKey(nil, ls))
			if j, ok := keys[k]; ok && j != i {
				t.Fatalf("selectors %d and %d share the key %q", j, i, k)
			}
			keys[k] = i
		}
	}
	bad := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "not valid!"}}
	for range 2 {
		if _, err := asSelector(bad); err == nil {
			t.Fatal("invalid selector accepted")
		}
	}
}
