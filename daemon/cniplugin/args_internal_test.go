package cniplugin

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// TestNameFormsAgreeWithAPIMachinery: the plugin's own checks of namespace
// and pod names accept exactly what apimachinery's validation accepts.
func TestNameFormsAgreeWithAPIMachinery(t *testing.T) {
	names := []string{
		"", "a", "A", "-a", "a-", "a-b", "a.b", "a..b", ".a", "a.", "web-0", "kube-system",
		"x.y-z.0", "a_b", "a b", "ä", "0", "0-0", "a.-b", "a-.b",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 126) + "a", strings.Repeat("a", 254),
	}
	for _, s := range names {
		if got, want := checkName(s, dns1123Label, 63, "label") == nil, len(validation.IsDNS1123Label(s)) == 0; got != want {
			t.Errorf("label %q: plugin accepts %v, apimachinery %v", s, got, want)
		}
		if got, want := checkName(s, dns1123Subdomain, 253, "subdomain") == nil, len(validation.IsDNS1123Subdomain(s)) == 0; got != want {
			t.Errorf("subdomain %q: plugin accepts %v, apimachinery %v", s, got, want)
		}
	}
}

func FuzzNameForms(f *testing.F) {
	for _, s := range []string{"web-0", "a.b", "-", "A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := checkName(s, dns1123Label, 63, "label") == nil, len(validation.IsDNS1123Label(s)) == 0; got != want {
			t.Errorf("label %q: plugin accepts %v, apimachinery %v", s, got, want)
		}
		if got, want := checkName(s, dns1123Subdomain, 253, "subdomain") == nil, len(validation.IsDNS1123Subdomain(s)) == 0; got != want {
			t.Errorf("subdomain %q: plugin accepts %v, apimachinery %v", s, got, want)
		}
	})
}
