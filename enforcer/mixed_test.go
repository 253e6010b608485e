package enforcer_test

// IP plan: see helpers_test.go and cnp_gen_test.go (generated pods and the
// networks of generated ClusterNetworkPolicies).

import (
	"cmp"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
)

var mixedWorlds = flag.Int("mixedworlds", 0, "worlds TestMixedWorldsAgreeWithEvaluator generates (0: its default)")

// TestMixedWorldsAgreeWithEvaluator generates worlds of namespaces, pods on
// three nodes (with IP reuse), NetworkPolicies and ClusterNetworkPolicies of
// both tiers (genMixedOp), applies them incrementally and holds, at each
// flush, the programmed state against a fresh build of the same world, and
// twice per world the traced verdict of every flow of the grid (gridFlows)
// and of every pod's named ports against Decide. -mixedworlds N generates
// N worlds (seeds 0 to N-1).
func TestMixedWorldsAgreeWithEvaluator(t *testing.T) {
	worlds := 10
	if testing.Short() {
		worlds = 3
	}
	if *mixedWorlds > 0 {
		worlds = *mixedWorlds
	}
	const steps = 60
	a := agreement{decidedBy: map[string]int{}}
	mixed := 0
	grid := gridFlows(len(gridServices), 0)
	for seed := range worlds {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			r := rngChoices{rand.New(rand.NewPCG(uint64(seed), 13))}
			c := newCluster(t, genNodes...)
			w := newWorld()
			driveWorld(t, c, w, r, steps, genMixedOp, func() {
				if len(w.cnps) > 0 && len(w.policies) > 0 {
					mixed++
				}
				for _, f := range append(grid, namedPortFlows(w)...) {
					a.check(t, c, w, f)
				}
			})
			checkIdle(t, c)
		})
	}
	t.Logf("%d worlds, %d states checked with both CNPs and NetworkPolicies, %d flows agree with Decide (%d dropped for claimants, fail closed)",
		worlds, mixed, a.flows, a.closed)
	t.Logf("directions decided by: %v", a.decidedBy)
}

// driveWorld applies steps changes drawn by gen to the world and to the
// cluster's engines; at random steps and the last it flushes and holds the
// programmed state against a fresh build (checkConverged), and at the
// middle and last steps it flushes and calls probe.
func driveWorld(t *testing.T, c *cluster, w *world, r choices, steps int, gen func(choices, *world) op, probe func()) {
	t.Helper()
	for step := range steps {
		for _, call := range w.apply(gen(r, w)) {
			_ = c.each(func(e *enforcer.Engine) error { call(e); return nil })
		}
		if r.intn(4) == 0 || step == steps-1 {
			c.flush()
			checkConverged(t, c, w, step)
		}
		if step == steps/2 || step == steps-1 {
			c.flush()
			probe()
		}
	}
}

// agreement counts the flows check held against Decide.
type agreement struct {
	flows int // traced and decided
	// closed are flows the program drops where Decide allows, tolerated
	// only as tiers.go documents: a direction whose address several pods
	// claim while CNPs exist (claimants selected by different CNP lists are
	// dropped, fail closed).
	closed int
	// decidedBy counts the directions of the flows by what decided them
	// (see decidedBy), to show what the generated worlds exercise.
	decidedBy map[string]int
}

// decidedBy names what decided a direction: the tier ("admin",
// "networkpolicy", "baseline"; "default" when Decide names none: nothing
// decided, or no CNP in the model at all), "pass" when a Pass
// rule ended a tier first, "invalid" when the deciding rule failed to parse,
// and the verdict.
func decidedBy(dd enforcer.DirectionDecision) string {
	if dd.Unknown {
		return "unknown deny" // first-packet isolation
	}
	k := cmp.Or(dd.Tier, "default")
	if len(dd.Passes) > 0 {
		k += " pass"
	}
	if strings.Contains(dd.Rule, "(invalid") {
		k += " invalid"
	}
	if dd.Allowed {
		return k + " allow"
	}
	return k + " deny"
}

// check holds Decide against the traces of every node for f
// (checkAgreement), with the tolerance above when the world has CNPs.
func (a *agreement) check(t testing.TB, c *cluster, w *world, f enforcer.Flow) {
	t.Helper()
	a.flows++
	d := c.engines[c.nodes[0]].Decide(f)
	for _, dd := range []enforcer.DirectionDecision{d.Egress, d.Ingress} {
		a.decidedBy[decidedBy(dd)]++
	}
	if len(w.cnps) > 0 && d.Allowed && (len(d.Egress.Claimants) > 1 || len(d.Ingress.Claimants) > 1) {
		traced := true
		for _, n := range c.nodes {
			ok, _ := trace(c.fakes[n], f)
			traced = traced && ok
		}
		if !traced {
			a.closed++
			return
		}
	}
	checkAgreement(t, c, f)
}
