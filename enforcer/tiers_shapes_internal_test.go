package enforcer

// IP plan: the conformance world of cnp_internal_test.go (one pod per house
// namespace on node-a, 198.18.0.1-5).

import (
	"flag"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

var updateShapes = flag.Bool("update-shapes", false, "rewrite the golden files of TestGoldenTierShapes")

// TestGoldenTierShapes renders the conformance world's program with
// ClusterNetworkPolicies under the deny log and counters: Deny rules go to
// the shared deny chains, an audited policy's Deny logs over the ports its
// earlier audited Accept leaves, every enforced rule counts, and a pod that
// only an audited NetworkPolicy isolates jumps to its audit chain before the
// Baseline tier.
func TestGoldenTierShapes(t *testing.T) {
	e := newCNPWorldWith(t, loggedTierConfig(nil))
	loadLoggedTierWorld(t, e)
	got := nft.Render(nft.DefaultTable, e.Desired())
	golden := filepath.Join("testdata", "tiers-logged.nft")
	if diff := cmp.Diff(nfttest.Golden(t, golden, got, *updateShapes), got); diff != "" {
		t.Errorf("differs from %s (-want +got):\n%s", golden, diff)
	}
}

// loggedTierConfig is the configuration of the tier shapes over dp.
func loggedTierConfig(dp nft.Dataplane) Config {
	return Config{NodeName: "node-a", Logger: slog.New(slog.DiscardHandler), Dataplane: dp, LogDenied: true, Counters: true, LogGroup: 100}
}

// loadLoggedTierWorld upserts the policies of TestGoldenTierShapes.
func loadLoggedTierWorld(t *testing.T, e *Engine) {
	t.Helper()
	for _, c := range []*v1beta1.ClusterNetworkPolicy{
		mkCNP("deny-sly", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpIn("web", deny, nsPeerOf("slytherin"), cnpTCP(80)), cnpIn("", pass, nsPeerOf("ravenclaw"))),
		auditedCNP(mkCNP("try", v1beta1.AdminTier, 2, nsSubject("gryffindor"),
			cnpIn("web", accept, nsPeerOf("hufflepuff"), cnpTCPRange(80, 90)), cnpIn("rest", deny, nsPeerOf("hufflepuff")))),
		mkCNP("default", v1beta1.BaselineTier, 1, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("ravenclaw"))),
	} {
		if err := e.UpsertClusterNetworkPolicy(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, np := range []*networkingv1.NetworkPolicy{auditedNP(npAllowingFrom("gryffindor", "slytherin"))} {
		if err := e.UpsertNetworkPolicy(np); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPrivilegedKernelAcceptsLoggedTiers programs the world of
// TestGoldenTierShapes, then every world of cnpCases one after the other,
// with the deny log and counters into a real kernel: each flush (deny
// chains, counter and limit objects added and deleted with the rules that
// name them) is accepted and reads back as desired.
func TestPrivilegedKernelAcceptsLoggedTiers(t *testing.T) {
	programWorlds(t, cnpCases(), func(k *nft.Kernel) *Engine {
		e := newCNPWorldWith(t, loggedTierConfig(k))
		loadLoggedTierWorld(t, e)
		return e
	})
}
