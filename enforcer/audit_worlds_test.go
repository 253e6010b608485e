package enforcer_test

// IP plan: see helpers_test.go and cnp_gen_test.go (generated pods and the
// networks of generated ClusterNetworkPolicies).

import (
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
)

var auditWorlds = flag.Int("auditworlds", 0, "worlds TestAuditWorldsAgreeWithEvaluator generates per configuration (0: its default)")

// auditConfigs are the program shapes the audit worlds run under: the
// verdict log, counters and per-policy audit together, node-wide audit, and
// per-policy audit alone; first-packet isolation (on the first node: see
// cluster.config) with the deny log, and with node-wide audit.
var auditConfigs = []struct {
	name string
	cfg  enforcer.Config
}{
	{"log-counters", enforcer.Config{LogDenied: true, LogAllowed: true, LogGroup: 7, Counters: true}},
	{"node-audit", enforcer.Config{Audit: true, LogDenied: true, Counters: true}},
	{"plain", enforcer.Config{}},
	{"experimental", enforcer.Config{ClusterNetworkPolicyExperimental: true, LogDenied: true}},
	{"first-packet", enforcer.Config{PodCIDRs: genPodCIDRs, LogDenied: true, LogGroup: 7, Counters: true}},
	{"first-packet-audit", enforcer.Config{PodCIDRs: genPodCIDRs, Audit: true, LogDenied: true}},
}

// genAuditOp is genMixedOp with policies put in audit mode: half of the
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
	if c.intn(3) == 0 { // more ClusterNetworkPolicies than mixed worlds have
		o = op{kind: "cnp", cnp: genCNP(c, c.intn(genCNPs))}
	}
	audit := c.intn(2) == 0
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
// grid against Decide: the traced verdict is Decide's enforced one, and the
// log lines its audit view (checkLogs). -auditworlds N generates N worlds
// per configuration.
func TestAuditWorldsAgreeWithEvaluator(t *testing.T) {
	worlds := 4
	if testing.Short() {
		worlds = 2
	}
	if *auditWorlds > 0 {
		worlds = *auditWorlds
	}
	const steps = 60
	grid := gridFlows(len(gridServices), 0)
	for _, ac := range auditConfigs {
		a := agreement{decidedBy: map[string]int{}}
		findings := map[string]int{}
		for seed := range worlds {
			t.Run(fmt.Sprintf("%s/seed-%d", ac.name, seed), func(t *testing.T) {
				r := rngChoices{rand.New(rand.NewPCG(uint64(seed), 14))}
				c := newClusterWith(t, ac.cfg, genNodes...)
				w := newWorld()
				driveWorld(t, c, w, r, steps, genAuditOp, func() {
					for _, f := range append(grid, namedPortFlows(w)...) {
						a.check(t, c, w, f)
						d := c.engines[c.nodes[0]].Decide(f)
						for _, dd := range []enforcer.DirectionDecision{d.Egress, d.Ingress} {
							if dd.Audit != nil {
								findings[enforcer.DropSite(*dd.Audit)]++
							}
						}
						checkLogs(t, c, f, d)
					}
				})
				checkIdle(t, c)
			})
		}
		t.Logf("%s: %d flows agree with Decide (%d dropped for claimants, fail closed); audit findings by site %v; decided by %v",
			ac.name, a.flows, a.closed, findings, a.decidedBy)
	}
}

// checkLogs holds what the nodes' programs log for flow f (the log rules
// its first packet passes, traced on every node) against Decide: per
// direction, a first "nftw audit" line exactly when Decide's Audit is set,
// at its drop site, and with the deny log a "nftw deny" line exactly when
// the direction is denied, at its drop site. Every node traces the packet
// on its own, so the ingress lines are exact when egress allows; when it
// denies, the node of the source drops it before its ingress chain runs,
// and those lines must only be among the expected ones. Flows from or to
// an address several pods claim are left to agreement.check.
func checkLogs(t *testing.T, c *cluster, f enforcer.Flow, d enforcer.Decision) {
	t.Helper()
	if len(d.Egress.Claimants) > 1 || len(d.Ingress.Claimants) > 1 {
		return
	}
	if unknownElsewhere(d.Egress) || unknownElsewhere(d.Ingress) {
		// A pod of another node claims an address of the first node's
		// pod CIDRs: its own node logs what its policies say, the first
		// node logs it unknown. Left to agreement.check (the verdict).
		return
	}
	var logs, paths []string
	for _, n := range c.nodes {
		_, l, path := enforcer.TraceFlowLogs(c.fakes[n], f)
		logs = append(logs, l...)
		paths = append(paths, n+": "+path)
	}
	for _, side := range []struct {
		dir   string
		dd    enforcer.DirectionDecision
		exact bool
	}{{"eg", d.Egress, true}, {"in", d.Ingress, d.Egress.Allowed}} {
		var want, got []string
		if side.dd.Audit != nil {
			want = append(want, "nftw audit "+side.dir+" "+enforcer.DropSite(*side.dd.Audit))
		}
		if !side.dd.Allowed && c.cfg.LogDenied {
			want = append(want, "nftw deny "+side.dir+" "+enforcer.DropSite(side.dd))
		}
		firstAudit := true
		for _, l := range logs {
			switch {
			case strings.HasPrefix(l, "nftw audit "+side.dir+" ") && firstAudit:
				firstAudit = false
				got = append(got, l)
			case strings.HasPrefix(l, "nftw deny "+side.dir+" "):
				got = append(got, l)
			}
		}
		if side.exact && !slices.Equal(got, want) || !side.exact && !isSubsequence(got, want) {
			t.Fatalf("flow %v: %s logs %q, want %q (%s):\n%s", f, side.dir, got, want, d.Reason, strings.Join(paths, "\n"))
		}
	}
}

// unknownElsewhere reports whether a direction is unknown to first-packet
// isolation although a pod (of another node) claims its address.
func unknownElsewhere(dd enforcer.DirectionDecision) bool {
	if dd.Audit != nil {
		dd = *dd.Audit
	}
	return dd.Unknown && dd.Pod != ""
}

// isSubsequence reports whether every element of sub is in s, in order.
func isSubsequence(sub, s []string) bool {
	for _, x := range sub {
		i := slices.Index(s, x)
		if i < 0 {
			return false
		}
		s = s[i+1:]
	}
	return true
}

// FuzzAuditAgreesWithEvaluator is FuzzEngineAgreesWithEvaluator over worlds
// with policies in audit mode (genAuditOp), under the configuration of
// auditConfigs the first byte picks: the incremental result equals a fresh
// build, the traced verdicts equal Decide's and the log lines its audit
// view (checkLogs).
func FuzzAuditAgreesWithEvaluator(f *testing.F) {
	for i := range auditConfigs {
		f.Add(append([]byte{byte(i)}, []byte("audit worlds: every config, some policies audited and flipped")...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		ac := auditConfigs[int(data[0])%len(auditConfigs)]
		worldAgreesWithEvaluator(t, data[1:], ac.cfg, genAuditOp, func(c *cluster, f enforcer.Flow) {
			checkLogs(t, c, f, c.engines[c.nodes[0]].Decide(f))
		})
	})
}
