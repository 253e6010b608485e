package conformance

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

// TestPortedCNPsMatchUpstreamManifests reads the manifest each ported
// ClusterNetworkPolicy case names in its first step from the network-policy-api
// module (the version integration/go.mod selects), maps upstream's namespace
// names to the model's (houses.go), and requires the policies the case creates
// to be exactly the manifest's: the cases are transcribed by hand, this keeps
// the transcription honest. Manifests are templates of upstream's
// suite.HostNetworkPorts (experimental-egress-selector-rules.yaml), executed
// with HostNetworkPorts as upstream's applyTemplate does.
func TestPortedCNPsMatchUpstreamManifests(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/network-policy-api").Output()
	if err != nil {
		t.Fatalf("locate sigs.k8s.io/network-policy-api: %v", err)
	}
	base := filepath.Join(strings.TrimSpace(string(out)), "conformance", "base")
	for _, c := range append(UpstreamCNPCases(), UpstreamCNPExperimentalCases()...) {
		t.Run(c.Name, func(t *testing.T) {
			// A suffix, as in packet runs: a bare "y" would read as true in YAML.
			m, err := NewModel("conf", c.Pods)
			if err != nil {
				t.Fatal(err)
			}
			first := c.Steps(NewEnv(m, func(PodRef) netip.Addr { return netip.MustParseAddr("198.18.0.1") }))[0]
			raw, err := os.ReadFile(filepath.Join(base, first.Name))
			if err != nil {
				t.Fatalf("first step must name its manifest: %v", err)
			}
			tmpl, err := template.New(first.Name).Parse(string(raw))
			if err != nil {
				t.Fatalf("%s: %v", first.Name, err)
			}
			var executed strings.Builder
			if err := tmpl.Execute(&executed, struct{ HostNetworkPorts []int32 }{HostNetworkPorts[:]}); err != nil {
				t.Fatalf("%s: %v", first.Name, err)
			}
			text := executed.String()
			for _, h := range hogwarts {
				text = strings.ReplaceAll(text, "network-policy-conformance-"+h.name, m.Real(h.ns))
			}
			cnps := map[string]*v1beta1.ClusterNetworkPolicy{}
			nps := map[string]*networkingv1.NetworkPolicy{}
			for _, doc := range strings.Split(text, "\n---") {
				var kind struct{ Kind string }
				if err := yaml.Unmarshal([]byte(doc), &kind); err != nil {
					t.Fatalf("%s: %v", first.Name, err)
				}
				switch kind.Kind {
				case "ClusterNetworkPolicy":
					var p v1beta1.ClusterNetworkPolicy
					if err := yaml.UnmarshalStrict([]byte(doc), &p); err != nil {
						t.Fatalf("%s: %v", first.Name, err)
					}
					cnps[p.Name] = &p
				case "NetworkPolicy":
					var p networkingv1.NetworkPolicy
					if err := yaml.UnmarshalStrict([]byte(doc), &p); err != nil {
						t.Fatalf("%s: %v", first.Name, err)
					}
					nps[p.Namespace+"/"+p.Name] = &p
				default:
					t.Fatalf("%s: unexpected kind %q", first.Name, kind.Kind)
				}
			}
			created := 0
			for _, a := range first.Actions {
				switch a.Kind {
				case CreateClusterPolicy:
					created++
					want, ok := cnps[a.ClusterPolicy.Name]
					if !ok {
						t.Errorf("the case creates cluster policy %s, the manifest has none of that name", a.ClusterPolicy.Name)
					} else if !equality.Semantic.DeepEqual(a.ClusterPolicy.Spec, want.Spec) {
						t.Errorf("cluster policy %s differs from the manifest:\n case:     %+v\n manifest: %+v", a.ClusterPolicy.Name, a.ClusterPolicy.Spec, want.Spec)
					}
				case CreatePolicy:
					created++
					want, ok := nps[a.Policy.Namespace+"/"+a.Policy.Name]
					if !ok {
						t.Errorf("the case creates policy %s/%s, the manifest has none of that name", a.Policy.Namespace, a.Policy.Name)
					} else if !equality.Semantic.DeepEqual(a.Policy.Spec, want.Spec) {
						t.Errorf("policy %s/%s differs from the manifest:\n case:     %+v\n manifest: %+v", a.Policy.Namespace, a.Policy.Name, a.Policy.Spec, want.Spec)
					}
				}
			}
			if created != len(cnps)+len(nps) {
				t.Errorf("the case creates %d policies, the manifest has %d", created, len(cnps)+len(nps))
			}
		})
	}
}
