package conformance

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// The reachability helper is the oracle of the ported cases, so it is checked
// against hand-written tables here (x/a, x/b, y/a).
func TestReachabilityHelpers(t *testing.T) {
	m, err := NewModel("s1", []string{"y/a", "x/b", "x/a"})
	if err != nil {
		t.Fatal(err)
	}
	xa, xb, ya := m.Pod("x", "a"), m.Pod("x", "b"), m.Pod("y", "a")
	if got := m.Pods; len(got) != 3 || got[0] != xa || got[1] != xb || got[2] != ya {
		t.Fatalf("pods not in upstream order: %v", got)
	}
	tests := []struct {
		name  string
		build func(r *Reachability)
		want  map[[2]PodRef]bool // flows expected denied; all others allowed
	}{
		{"default all allowed", func(r *Reachability) {}, nil},
		{"ExpectPeer into namespace", func(r *Reachability) { r.ExpectPeer(Peer{}, Peer{Namespace: m.X}, false) },
			map[[2]PodRef]bool{{xb, xa}: true, {ya, xa}: true, {xa, xb}: true, {ya, xb}: true}},
		{"ExpectAllEgress then Expect", func(r *Reachability) {
			r.ExpectAllEgress(xa, false)
			r.Expect(xa, ya, true)
		}, map[[2]PodRef]bool{{xa, xb}: true}},
		{"ExpectAllIngress", func(r *Reachability) { r.ExpectAllIngress(ya, false) },
			map[[2]PodRef]bool{{xa, ya}: true, {xb, ya}: true}},
		{"ExpectPeer pod in namespace", func(r *Reachability) { r.ExpectPeer(Peer{Pod: "a"}, Peer{Namespace: m.X, Pod: "b"}, false) },
			map[[2]PodRef]bool{{xa, xb}: true, {ya, xb}: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReachability(m.Pods, true)
			tt.build(r)
			for _, from := range m.Pods {
				for _, to := range m.Pods {
					if from == to {
						continue
					}
					got, _ := r.Expected.Get(from, to)
					if want := !tt.want[[2]PodRef{from, to}]; got != want {
						t.Errorf("%s -> %s: expected %v, want %v", from, to, got, want)
					}
					r.Observe(from, to, got)
				}
			}
			if w := r.Wrong(); w != 0 {
				t.Errorf("Wrong() = %d after observing the expectation", w)
			}
		})
	}

	r := NewReachability(m.Pods, true)
	r.Observe(xa, xb, false)
	if w := r.Wrong(); w != 6 { // one wrong, five unobserved
		t.Errorf("Wrong() = %d, want 6", w)
	}
	if d := r.Diff(); !strings.Contains(d, "comparison") || !strings.Contains(d, "?") {
		t.Errorf("diff lacks comparison or unknown marks:\n%s", d)
	}
}

func TestGeneratorIsReproducible(t *testing.T) {
	m, err := NewModel("", nil)
	if err != nil {
		t.Fatal(err)
	}
	env := NewEnv(m, func(p PodRef) netip.Addr { return modelAddrs(m, IPv4)[p][0] })
	for k := range 20 {
		a := fmtSteps(GeneratedCase(7, k).Steps(env))
		b := fmtSteps(GeneratedCase(7, k).Steps(env))
		if a != b {
			t.Fatalf("case %d differs between two builds:\n%s\n---\n%s", k, a, b)
		}
	}
	if fmtSteps(GeneratedCase(7, 0).Steps(env)) == fmtSteps(GeneratedCase(8, 0).Steps(env)) {
		t.Error("seeds 7 and 8 give the same case 0")
	}
}

// fmtSteps renders steps with full policy specs.
func fmtSteps(steps []Step) string {
	var b strings.Builder
	for _, st := range steps {
		fmt.Fprintf(&b, "%s:", st.Name)
		for _, a := range st.Actions {
			fmt.Fprintf(&b, " %s", a)
			if a.Policy != nil {
				fmt.Fprintf(&b, " %s", a.Policy.Spec.String())
			}
		}
		fmt.Fprintf(&b, " %v\n", st.Probes)
	}
	return b.String()
}
