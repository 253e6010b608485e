package enforcer_test

import (
	"fmt"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// kernelChainDepth is NFT_JUMP_STACK_SIZE: when a table is loaded, the
// kernel refuses it (EMLINK) if a path of jumps and gotos (both count)
// from a base chain is this deep.
const kernelChainDepth = 16

// chainDepth is the length of the longest path of jumps and gotos (rule
// verdicts and verdict-map elements) from chain name; a loop fails the test.
func chainDepth(t *testing.T, s *nft.State, name string, memo map[string]int) int {
	if d, ok := memo[name]; ok {
		if d < 0 {
			t.Fatalf("chain %s is on a loop of jumps", name)
		}
		return d
	}
	memo[name] = -1
	depth := 0
	for _, r := range s.Chains[name].Rules {
		for _, x := range r.Exprs {
			switch x := x.(type) {
			case nft.Verdict:
				if x.Chain != "" {
					depth = max(depth, 1+chainDepth(t, s, x.Chain, memo))
				}
			case nft.VerdictMapLookup:
				for e := range s.Sets[x.Map].Elements.Values() {
					if e.Verdict != nil && e.Verdict.Chain != "" {
						depth = max(depth, 1+chainDepth(t, s, e.Verdict.Chain, memo))
					}
				}
			}
		}
	}
	memo[name] = depth
	return depth
}

// TestProgramDepthWithinKernelLimit: the ingress side hangs below every
// egress allow (PROGRAM.md, "Base chain"), so the longest path of jumps and
// gotos from the base chain, through the egress pod, tier class, policy,
// peer and audit chains and on through the ingress side, must stay well
// below the kernel's limit; a kernel test of a small world may not walk the
// longest path. The generated cluster with ClusterNetworkPolicies (both
// tiers, both directions), enforced, with the deny log and counters and a
// third of the policies audited, and in node-wide audit.
func TestProgramDepthWithinKernelLimit(t *testing.T) {
	for _, cfg := range []enforcer.Config{{}, {LogDenied: true, Counters: true}, {Audit: true}} {
		t.Run(fmt.Sprintf("log=%v,audit=%v", cfg.LogDenied, cfg.Audit), func(t *testing.T) {
			g := newGenCluster(2000)
			g.cfg = cfg
			for i, np := range g.policies {
				if cfg.LogDenied && i%3 == 0 {
					np.Annotations = map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}
				}
			}
			e, _ := g.build(t, nil)
			for i := range 100 {
				if err := e.UpsertClusterNetworkPolicy(benchCNP(i, int32(i))); err != nil {
					t.Fatal(err)
				}
			}
			s := e.Desired()
			memo := map[string]int{}
			for name, c := range s.Chains {
				if c.Base == nil {
					continue
				}
				// The egress side goes on to the ingress side: the
				// longest path passes both.
				if d := chainDepth(t, s, name, memo); d > kernelChainDepth/2 {
					t.Errorf("base chain %s: a path of %d jumps and gotos; the kernel refuses %d, want at most %d", name, d, kernelChainDepth, kernelChainDepth/2)
				} else {
					t.Logf("base chain %s: longest path %d jumps and gotos", name, d)
				}
			}
			if memo["ingress"] == 0 || memo["forward"] <= memo["ingress"] {
				t.Errorf("the base chain's depth %d does not include the ingress side's %d", memo["forward"], memo["ingress"])
			}
		})
	}
}
