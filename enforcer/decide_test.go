package enforcer_test

// IP plan: see helpers_test.go and semantics_test.go (the base world).

import (
	"flag"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// checkGolden compares got with the golden file, which -update rewrites.
func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if diff := cmp.Diff(nfttest.Golden(t, golden, got, *update), got); diff != "" {
		t.Errorf("differs from %s (-want +got):\n%s", golden, diff)
	}
}

func TestDecideNamesPolicies(t *testing.T) {
	c := newCluster(t, "node-a")
	loadBase(t, c, append(basePolicies(),
		mkPolicy("prod", "web-2", selecting(sel("app", "web")), ingress(peers(podPeer(sel("app", "cli"))), tcp(80))))...)
	e := c.engines["node-a"]
	addr := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		flow enforcer.Flow
		want enforcer.Decision
	}{
		{
			name: "allowed by two policies, egress not isolated",
			flow: enforcer.Flow{Src: addr("198.18.2.10"), Dst: addr("198.18.1.10"), Protocol: TCP, Port: 80},
			want: enforcer.Decision{Allowed: true,
				Egress:  enforcer.DirectionDecision{Pod: "prod/cli", Allowed: true},
				Ingress: enforcer.DirectionDecision{Pod: "prod/web", Isolated: true, Allowed: true, Policies: []string{"prod/web", "prod/web-2"}},
				Reason:  "allowed: egress of prod/cli is not isolated; ingress of prod/web is allowed by prod/web, prod/web-2"},
		},
		{
			name: "denied names the isolating policies",
			flow: enforcer.Flow{Src: addr("198.18.1.11"), Dst: addr("198.18.1.10"), Protocol: TCP, Port: 22},
			want: enforcer.Decision{
				Egress:  enforcer.DirectionDecision{Pod: "prod/db", Allowed: true},
				Ingress: enforcer.DirectionDecision{Pod: "prod/web", Isolated: true, Policies: []string{"prod/web", "prod/web-2"}},
				Reason:  "denied: egress of prod/db is not isolated; ingress of prod/web is isolated by prod/web, prod/web-2 and no rule allows it"},
		},
		{
			name: "egress denied, external destination",
			flow: enforcer.Flow{Src: addr("198.18.1.10"), Dst: addr("198.19.0.5"), Protocol: UDP, Port: 53},
			want: enforcer.Decision{
				Egress:  enforcer.DirectionDecision{Pod: "prod/web", Isolated: true, Policies: []string{"prod/web"}},
				Ingress: enforcer.DirectionDecision{Allowed: true},
				Reason:  "denied: egress of prod/web is isolated by prod/web and no rule allows it"},
		},
		{
			name: "no pod at all",
			flow: enforcer.Flow{Src: addr("198.19.0.5"), Dst: addr("198.19.0.6"), Protocol: TCP, Port: 1},
			want: enforcer.Decision{Allowed: true, Egress: enforcer.DirectionDecision{Allowed: true}, Ingress: enforcer.DirectionDecision{Allowed: true},
				Reason: "allowed: neither address is a pod, so no policy applies"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, e.Decide(tc.flow)); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

// TestGoldenProgram renders the program of the base world with the base
// policies, so that a change in what the compiler emits shows up in review.
func TestGoldenProgram(t *testing.T) {
	c := newCluster(t, "node-a")
	loadBase(t, c, basePolicies()...)
	got := nft.Render(nft.DefaultTable, c.engines["node-a"].Desired())
	checkGolden(t, filepath.Join("testdata", "base-node-a.nft"), got)
	st := c.engines["node-a"].Stats()
	if st.Policies != 3 || st.LocalPods != 4 || st.Chains != len(c.engines["node-a"].Desired().Chains) {
		t.Errorf("stats %+v", st)
	}
}
