package enforcer_test

// IP plan: see helpers_test.go and semantics_test.go (the base world).

import (
	"net/netip"
	"path/filepath"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// TestGoldenProgramShapes renders the program of the base world under each
// shape of the log, audit and counters (PROGRAM.md, "Logging, audit and
// counters"), so that what they emit shows up in review; the golden files
// are also loaded into a kernel (TestPrivilegedKernelAcceptsShapes).
func TestGoldenProgramShapes(t *testing.T) {
	for _, tc := range shapeCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterWith(t, tc.cfg, "node-a")
			loadBase(t, c, tc.pols...)
			checkGolden(t, filepath.Join("testdata", tc.golden), nft.Render(nft.DefaultTable, c.engines["node-a"].Desired()))
		})
	}
}

// shapeCase is a configuration and the base world's policies, with the
// golden file of node-a's program.
type shapeCase struct {
	name, golden string
	cfg          enforcer.Config
	pols         []*networkingv1.NetworkPolicy
}

func shapeCases() []shapeCase {
	audited := basePolicies()
	// prod/db is isolated for ingress by policy db alone: in audit mode its
	// pod chain jumps to the policy's audit chain; prod/web keeps its
	// enforced policy.
	audited[2].Annotations = map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}
	return []shapeCase{
		{"deny log, flow log and counters", "logged-node-a.nft",
			enforcer.Config{LogDenied: true, LogAllowed: true, LogGroup: 100, Counters: true}, basePolicies()},
		{"a policy in audit mode", "audit-np-node-a.nft", enforcer.Config{LogGroup: 100}, audited},
		{"node-wide audit", "node-audit-node-a.nft", enforcer.Config{Audit: true, LogGroup: 100, LogRate: 50, LogBurst: 10}, basePolicies()},
		{"first-packet isolation", "first-packet-node-a.nft", enforcer.Config{PodCIDRs: nodeAPodCIDRs}, basePolicies()},
		{"first-packet isolation, deny log", "first-packet-logged-node-a.nft",
			enforcer.Config{PodCIDRs: nodeAPodCIDRs, LogDenied: true, LogGroup: 100}, basePolicies()},
	}
}

// nodeAPodCIDRs are node-a's pod CIDRs (the IP plan of helpers_test.go).
var nodeAPodCIDRs = []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("2001:db8:1::/64")}
