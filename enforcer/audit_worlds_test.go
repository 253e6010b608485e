package enforcer_test

// IP plan: see helpers_test.go and cnp_gen_test.go (generated pods and the
// networks of generated ClusterNetworkPolicies).

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
)

// auditConfigs are the program shapes the audit worlds run under: the
// verdict log, counters and per-policy audit together, node-wide audit, and
// per-policy audit alone.
var auditConfigs = []struct {
	name string
	cfg  enforcer.Config
}{
	{"log-counters", enforcer.Config{LogDenied: true, LogAllowed: true, LogGroup: 7, Counters: true}},
	{"node-audit", enforcer.Config{Audit: true, LogDenied: true, Counters: true}},
	{"plain", enforcer.Config{}},
}

// genAuditOp is genMixedOp with policies put in audit mode: a third of the
// generated NetworkPolicies and ClusterNetworkPolicies carry the audit
// annotation, and one op in eight flips the annotation of a policy of the
// world (audit to enforced and back).
func genAuditOp(c choices, w *world) op {
	if c.intn(8) == 0 {
		if c.intn(2) == 0 && len(w.policies) > 0 {
			pol := w.policies[pick(c, slices.Sorted(maps.Keys(w.policies))...)].DeepCopy()
			pol.Annotations = flipAudit(pol.Annotations)
			return op{kind: "pol", pol: pol}
		}
		if len(w.cnps) > 0 {
			cnp := w.cnps[pick(c, slices.Sorted(maps.Keys(w.cnps))...)].DeepCopy()
			cnp.Annotations = flipAudit(cnp.Annotations)
			return op{kind: "cnp", cnp: cnp}
		}
	}
	o := genMixedOp(c, w)
	audit := c.intn(3) == 0
	switch {
	case o.pol != nil && audit:
		o.pol.Annotations = map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}
	case o.cnp != nil && audit:
		o.cnp.Annotations = map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}
	}
	return o
}

// flipAudit turns the audit annotation on or off.
func flipAudit(a map[string]string) map[string]string {
	if a[enforcer.EnforcementAnnotation] == enforcer.EnforcementAudit {
		return nil
	}
	return map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}
}

// TestAuditWorldsAgreeWithEvaluator generates mixed worlds with policies in
// audit mode (genAuditOp) under each of auditConfigs, applies them
// incrementally, holds the programmed state at every flush against a fresh
// build with the same configuration, and twice per world every flow of the
// grid against Decide: the traced verdict is Decide's enforced one.
func TestAuditWorldsAgreeWithEvaluator(t *testing.T) {
	worlds := 4
	if testing.Short() {
		worlds = 2
	}
	const steps = 60
	grid := gridFlows(len(gridServices), 0)
	for _, ac := range auditConfigs {
		a := agreement{decidedBy: map[string]int{}}
		audited := 0
		for seed := range worlds {
			t.Run(fmt.Sprintf("%s/seed-%d", ac.name, seed), func(t *testing.T) {
				r := rngChoices{rand.New(rand.NewPCG(uint64(seed), 14))}
				c := newClusterWith(t, ac.cfg, genNodes...)
				w := newWorld()
				for step := range steps {
					for _, call := range w.apply(genAuditOp(r, w)) {
						_ = c.each(func(e *enforcer.Engine) error { call(e); return nil })
					}
					if r.intn(4) == 0 || step == steps-1 {
						c.flush()
						checkConverged(t, c, w, step)
					}
					if step == steps/2 || step == steps-1 {
						c.flush()
						for _, f := range append(grid, namedPortFlows(w)...) {
							a.check(t, c, w, f)
							d := c.engines[c.nodes[0]].Decide(f)
							if d.Egress.Audit != nil || d.Ingress.Audit != nil {
								audited++
							}
						}
					}
				}
				checkIdle(t, c)
			})
		}
		t.Logf("%s: %d flows agree with Decide (%d dropped for claimants, fail closed), %d with an audit finding; decided by %v",
			ac.name, a.flows, a.closed, audited, a.decidedBy)
	}
}
