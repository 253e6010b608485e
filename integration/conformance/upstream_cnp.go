package conformance

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// The ClusterNetworkPolicy conformance tests of sigs.k8s.io/network-policy-api
// v0.3.0 (conformance/tests/*-standard-*.go, the standard channel), rewritten
// as data on the mapped topology of houses.go. Each case is one upstream
// ConformanceTest: its name is the test's ShortName, its first step applies
// the test's manifest (conformance/base/...), each further step is one of its
// t.Run subtests, in upstream's order and with upstream's mutations, which
// accumulate as they do upstream (a subtest that changes labels between its
// pokes becomes several steps of the same name). Probes are upstream's
// PokeServer calls, pod by pod, with upstream's expectations; nothing else of
// the matrix is probed.
//
// SCTP: the test kernel has no SCTP sockets, but the packet harness speaks
// SCTP's handshake over raw IP sockets (cmd/podagent, sctp.go), so the SCTP
// cases and pokes run with packets as well as at model level.
//
// The six experimental-channel tests (nodes peers, named ports) are ported in
// upstream_cnp_experimental.go.

var (
	admin    = v1beta1.AdminTier
	baseline = v1beta1.BaselineTier
	dirIn    = networkingv1.PolicyTypeIngress
	dirOut   = networkingv1.PolicyTypeEgress
)

// reorder swaps rules i and j of cnp in each direction given, and returns the
// update: upstream's rule swaps followed by PatchClusterNetworkPolicy.
func reorder(cnp *v1beta1.ClusterNetworkPolicy, i, j int, dirs ...networkingv1.PolicyType) Action {
	for _, d := range dirs {
		if d == dirIn {
			swap(cnp.Spec.Ingress, i, j)
		} else {
			swap(cnp.Spec.Egress, i, j)
		}
	}
	return UpdateCNP(cnp)
}

// setAction changes the action of rule i in direction dir and returns the
// update.
func setAction(cnp *v1beta1.ClusterNetworkPolicy, dir networkingv1.PolicyType, i int, action v1beta1.ClusterNetworkPolicyRuleAction) Action {
	if dir == dirIn {
		cnp.Spec.Ingress[i].Action = action
	} else {
		cnp.Spec.Egress[i].Action = action
	}
	return UpdateCNP(cnp)
}

// setPriority changes the priority of cnp and returns the update.
func setPriority(cnp *v1beta1.ClusterNetworkPolicy, priority int32) Action {
	cnp.Spec.Priority = priority
	return UpdateCNP(cnp)
}

// protocolManifest is one standard-{ingress,egress}-<protocol>-rules.yaml
// that both tiers have with the same rules (protocolRules, without Pass in
// the Baseline tier): the Admin tier's policy is named and prioritised per
// manifest, the Baseline tier's is "default" at priority 10. The named-port
// cases (upstream_cnp_experimental.go) start from four of them.
type protocolManifest struct {
	adminName     string
	adminPriority int32
	subject       string // house
	dir           networkingv1.PolicyType
	proto         corev1.Protocol
	a, b          string
	denyPort      int32
	c             string
	acceptPort    int32
}

var (
	egressTCPManifest  = protocolManifest{"egress-tcp", 6, "gryffindor", dirOut, tcp, "ravenclaw", "slytherin", 80, "hufflepuff", 8080}
	egressUDPManifest  = protocolManifest{"egress-udp", 7, "hufflepuff", dirOut, udp, "ravenclaw", "slytherin", 5353, "gryffindor", 53}
	ingressTCPManifest = protocolManifest{"ingress-tcp", 3, "gryffindor", dirIn, tcp, "ravenclaw", "slytherin", 80, "hufflepuff", 80}
	ingressUDPManifest = protocolManifest{"ingress-udp", 4, "hufflepuff", dirIn, udp, "ravenclaw", "slytherin", 5353, "gryffindor", 53}
)

// cnp is the manifest's policy of tier.
func (pm protocolManifest) cnp(h *houses, tier v1beta1.Tier) *v1beta1.ClusterNetworkPolicy {
	name, priority := pm.adminName, pm.adminPriority
	if tier == baseline {
		name, priority = "default", 10
	}
	return NewCNP(name, tier, priority, SubjectNamespaces(h.byName(pm.subject)),
		h.rules(pm.dir, protocolRules(tier, pm.dir, pm.proto, pm.a, pm.b, pm.denyPort, pm.c, pm.acceptPort)...))
}

// gressRules is standard-gress-rules-combined.yaml of either tier.
func gressRules(h *houses, tier v1beta1.Tier) *v1beta1.ClusterNetworkPolicy {
	slytherinPorts := cnpPorts(CNPPort(tcp, 80), CNPPort(udp, 53), CNPPort(sctp, 9003))
	if tier == admin {
		return NewCNP("gress-rules", admin, 15, SubjectNamespaces(h.byName("gryffindor")),
			h.rules(dirIn,
				nsRule{"allow-from-ravenclaw-everything", Accept, "ravenclaw", nil},
				nsRule{"deny-from-ravenclaw-everything", Deny, "ravenclaw", nil},
				nsRule{"pass-from-ravenclaw-everything", Pass, "ravenclaw", nil},
				nsRule{"deny-from-slytherin-at-port-80-53-9003", Deny, "slytherin", slytherinPorts},
				nsRule{"pass-from-slytherin-at-port-80-53-9003", Pass, "slytherin", slytherinPorts},
				nsRule{"allow-from-hufflepuff-at-port-80-5353-9003", Accept, "hufflepuff", cnpPorts(CNPPort(tcp, 80), CNPPort(udp, 5353), CNPPort(sctp, 9003))},
				nsRule{"deny-from-hufflepuff-everything-else", Deny, "hufflepuff", nil}),
			h.rules(dirOut,
				nsRule{"allow-to-ravenclaw-everything", Accept, "ravenclaw", nil},
				nsRule{"deny-to-ravenclaw-everything", Deny, "ravenclaw", nil},
				nsRule{"pass-to-ravenclaw-everything", Pass, "ravenclaw", nil},
				nsRule{"deny-to-slytherin-at-ports-80-53-9003", Deny, "slytherin", slytherinPorts},
				nsRule{"pass-to-slytherin-at-port-80-53-9003", Pass, "slytherin", slytherinPorts},
				nsRule{"allow-to-hufflepuff-at-ports-8080-5353-9003", Accept, "hufflepuff", cnpPorts(CNPPort(tcp, 8080), CNPPort(udp, 5353), CNPPort(sctp, 9003))},
				nsRule{"deny-to-hufflepuff-everything-else", Deny, "hufflepuff", nil}))
	}
	return NewCNP("default", baseline, 10, SubjectNamespaces(h.byName("gryffindor")),
		h.rules(dirIn,
			nsRule{"allow-from-ravenclaw-everything", Accept, "ravenclaw", nil},
			nsRule{"deny-from-ravenclaw-everything", Deny, "ravenclaw", nil},
			nsRule{"deny-from-slytherin-at-port-80-53-9003", Deny, "slytherin", slytherinPorts},
			nsRule{"allow-from-hufflepuff-at-port-80-5353-9003", Accept, "hufflepuff", cnpPorts(CNPPort(tcp, 80), CNPPort(udp, 5353), CNPPort(sctp, 9003))},
			nsRule{"deny-from-hufflepuff-everything-else", Deny, "hufflepuff", nil}),
		h.rules(dirOut,
			nsRule{"allow-to-ravenclaw-everything", Accept, "ravenclaw", nil},
			nsRule{"deny-to-ravenclaw-everything", Deny, "ravenclaw", nil},
			nsRule{"deny-to-slytherin-at-ports-80-53-9003", Deny, "slytherin", slytherinPorts},
			nsRule{"allow-to-hufflepuff-at-ports-8080-5353", Accept, "hufflepuff", cnpPorts(CNPPort(tcp, 8080), CNPPort(udp, 5353), CNPPort(sctp, 9003))},
			nsRule{"deny-to-hufflepuff-everything-else", Deny, "hufflepuff", nil}))
}

// inlineCIDRRules is standard-egress-inline-cidr-rules.yaml of either tier.
func inlineCIDRRules(name string, tier v1beta1.Tier, priority int32, subject v1beta1.ClusterNetworkPolicySubject) *v1beta1.ClusterNetworkPolicy {
	return NewCNP(name, tier, priority, subject, CNPEgress(
		CNPOut("allow-egress-to-slytherin", Accept, CNPPeers(PodsCNPPeer(byHouse("slytherin"), byHouse("slytherin")))),
		CNPOut("deny-egress-to-internet", Deny, CNPPeers(NetsCNPPeer(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")))),
	))
}

// allowSpecificPodIPs is the rule the inline-CIDR tests put first: the two
// servers' pod IPs, /32 or /128 after their family.
func allowSpecificPodIPs(h *houses, cnp *v1beta1.ClusterNetworkPolicy) Action {
	ips := NetsCNPPeer(HostPrefix(h.e.PodIP(h.pod("luna-lovegood-0"))), HostPrefix(h.e.PodIP(h.pod("cedric-diggory-0"))))
	cnp.Spec.Egress = append([]v1beta1.ClusterNetworkPolicyEgressRule{CNPOut("allow-egress-to-specific-podIPs", Accept, CNPPeers(ips))}, cnp.Spec.Egress...)
	return UpdateCNP(cnp)
}

// podSelectorRules is standard-pod-selector-rules.yaml of either tier.
func podSelectorRules(h *houses, tier v1beta1.Tier, priority, labelSelectedPriority int32) (rules, labelSelected *v1beta1.ClusterNetworkPolicy) {
	anyNamespace := &metav1.LabelSelector{}
	rules = NewCNP("pod-selector-rules", tier, priority, SubjectPods(anyNamespace, byHouse("gryffindor")),
		CNPEgress(
			CNPOut("allow-to-luna-lovegood-0-tcp-80", Accept, CNPPeers(PodsCNPPeer(byHouse("ravenclaw"), Sel(podNameLabel, "luna-lovegood-0"))), CNPPort(tcp, 80)),
			CNPOut("deny-to-ravenclaw-pods", Deny, CNPPeers(PodsCNPPeer(anyNamespace, byHouse("ravenclaw"))))),
		CNPIngress(
			CNPIn("allow-from-draco-malfoy-0", Accept, CNPPeers(PodsCNPPeer(byHouse("slytherin"), Sel(podNameLabel, "draco-malfoy-0")))),
			CNPIn("deny-from-slytherin-pods", Deny, CNPPeers(PodsCNPPeer(anyNamespace, byHouse("slytherin")))),
			CNPIn("deny-from-blocked-hufflepuff-pods", Deny, CNPPeers(PodsCNPPeer(byHouse("hufflepuff"), Sel(roleLabel, "blocked"))))))
	labelSelected = NewCNP("label-selected-subject-rules", tier, labelSelectedPriority, SubjectPods(byHouse("ravenclaw"), Sel(roleLabel, "restricted")),
		CNPEgress(CNPOut("deny-to-slytherin", Deny, CNPPeers(NsCNPPeer(h.byName("slytherin"))))))
	return rules, labelSelected
}

// portRangeRules is standard-port-range-rules-combined.yaml of either tier.
func portRangeRules(h *houses, tier v1beta1.Tier, priority int32) *v1beta1.ClusterNetworkPolicy {
	anyHouse := CNPPeers(NsCNPPeer(Expr(houseLabel, metav1.LabelSelectorOpExists)))
	return NewCNP("port-range-rules", tier, priority, SubjectNamespaces(h.byName("gryffindor")),
		h.rules(dirIn,
			nsRule{"allow-from-ravenclaw-tcp-port-range", Accept, "ravenclaw", cnpPorts(CNPPortRange(tcp, 80, 8080))},
			nsRule{"allow-from-hufflepuff-udp-port-range", Accept, "hufflepuff", cnpPorts(CNPPortRange(udp, 53, 5353))},
			nsRule{"allow-from-slytherin-sctp-port-range", Accept, "slytherin", cnpPorts(CNPPortRange(sctp, 9003, 9005))}),
		CNPIngress(CNPIn("deny-all-ingress", Deny, anyHouse)),
		h.rules(dirOut,
			nsRule{"allow-to-ravenclaw-tcp-port-range", Accept, "ravenclaw", cnpPorts(CNPPortRange(tcp, 80, 8080))},
			nsRule{"allow-to-hufflepuff-udp-port-range", Accept, "hufflepuff", cnpPorts(CNPPortRange(udp, 53, 5353))},
			nsRule{"allow-to-slytherin-sctp-port-range", Accept, "slytherin", cnpPorts(CNPPortRange(sctp, 9003, 9005))}),
		CNPEgress(CNPOut("deny-all-egress", Deny, anyHouse)))
}

// samePriorityRules is standard-same-priority.yaml of either tier: three
// policies of one priority, each denying one pair of houses at one port.
func samePriorityRules(h *houses, tier v1beta1.Tier, priority int32, prefix string) []Action {
	var out []Action
	for _, p := range []struct {
		subject, peer string
		port          int32
	}{{"gryffindor", "slytherin", 80}, {"gryffindor", "hufflepuff", 80}, {"hufflepuff", "slytherin", 8080}} {
		cnp := NewCNP(prefix+p.subject+"-"+p.peer, tier, priority, SubjectNamespaces(h.byName(p.subject)),
			h.rules(dirIn, nsRule{fmt.Sprintf("deny-from-%s-at-port-%d", p.peer, p.port), Deny, p.peer, cnpPorts(CNPPort(tcp, p.port))}),
			h.rules(dirOut, nsRule{fmt.Sprintf("deny-to-%s-at-port-%d", p.peer, p.port), Deny, p.peer, cnpPorts(CNPPort(tcp, p.port))}))
		out = append(out, CreateCNP(cnp))
	}
	return out
}

// UpstreamCNPCases returns the ported ClusterNetworkPolicy cases, Admin tier
// (and the NetworkPolicy integration test) first, then the Baseline tier
// (upstream_cnp_baseline.go).
func UpstreamCNPCases() []Case {
	return append(adminTierCNPCases(), baselineTierCNPCases()...)
}

// adminTierCNPCases are upstream's admin-network-policy-standard-*.go tests.
func adminTierCNPCases() []Case {
	return []Case{
		// CNPAdminTierEgressInlineCIDRPeers: conformance/tests/admin-network-policy-standard-egress-inline-cidr-rules.go, manifest conformance/base/admin_tier/standard-egress-inline-cidr-rules.yaml
		{Name: "CNPAdminTierEgressInlineCIDRPeers", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := inlineCIDRRules("inline-cidr-as-peers-example", admin, 85, SubjectPods(byHouse("gryffindor"), byHouse("gryffindor")))
				return append(steps(h.labelled("admin_tier/standard-egress-inline-cidr-rules.yaml", CreateCNP(cnp))), inlineCIDRSteps(h, cnp)...)
			}},

		// CNPAdminTierEgressSCTP: conformance/tests/admin-network-policy-standard-egress-sctp-rules.go, manifest conformance/base/admin_tier/standard-egress-sctp-rules.yaml
		{Name: "CNPAdminTierEgressSCTP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := NewCNP("egress-sctp", admin, 8, SubjectNamespaces(h.byName("ravenclaw")),
					h.rules(dirOut, protocolRules(admin, dirOut, sctp, "gryffindor", "slytherin", 9003, "hufflepuff", 9003)...))
				return append(append(steps(h.labelled("admin_tier/standard-egress-sctp-rules.yaml", CreateCNP(cnp))), egressSCTPSteps(h, cnp)...),
					Step{Name: "Should support an 'pass-egress' policy for SCTP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 2, dirOut)), Probes: h.pokes(
						poke{"luna-lovegood-0", sctp, "harry-potter-1", 9003, true},
						poke{"luna-lovegood-1", sctp, "harry-potter-1", 9005, true},
					)},
					Step{Name: "Should support a 'pass-egress' policy for SCTP protocol at the specified port", Actions: do(reorder(cnp, 3, 4, dirOut)), Probes: h.pokes(
						poke{"luna-lovegood-0", sctp, "draco-malfoy-0", 9003, true},
						poke{"luna-lovegood-1", sctp, "draco-malfoy-0", 9005, true},
					)},
				)
			}},

		// CNPAdminTierEgressTCP: conformance/tests/admin-network-policy-standard-egress-tcp-rules.go, manifest conformance/base/admin_tier/standard-egress-tcp-rules.yaml
		{Name: "CNPAdminTierEgressTCP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := egressTCPManifest.cnp(h, admin)
				return append(append(steps(h.labelled("admin_tier/standard-egress-tcp-rules.yaml", CreateCNP(cnp))), egressTCPSteps(h, cnp)...),
					Step{Name: "Should support an 'pass-egress' policy for TCP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 2, dirOut)), Probes: h.pokes(
						poke{"harry-potter-0", tcp, "luna-lovegood-0", 80, true},
						poke{"harry-potter-1", tcp, "luna-lovegood-0", 8080, true},
					)},
					Step{Name: "Should support a 'pass-egress' policy for TCP protocol at the specified port", Actions: do(reorder(cnp, 3, 4, dirOut)), Probes: h.pokes(
						poke{"harry-potter-0", tcp, "draco-malfoy-0", 80, true},
						poke{"harry-potter-1", tcp, "draco-malfoy-0", 8080, true},
					)},
				)
			}},

		// CNPAdminTierEgressUDP: conformance/tests/admin-network-policy-standard-egress-udp-rules.go, manifest conformance/base/admin_tier/standard-egress-udp-rules.yaml
		{Name: "CNPAdminTierEgressUDP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := egressUDPManifest.cnp(h, admin)
				return append(append(steps(h.labelled("admin_tier/standard-egress-udp-rules.yaml", CreateCNP(cnp))), egressUDPSteps(h, cnp)...),
					Step{Name: "Should support an 'pass-egress' policy for UDP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 2, dirOut)), Probes: h.pokes(
						poke{"cedric-diggory-0", udp, "luna-lovegood-1", 5353, true},
						poke{"cedric-diggory-1", udp, "luna-lovegood-1", 53, true},
					)},
					Step{Name: "Should support a 'pass-egress' policy for UDP protocol at the specified port", Actions: do(reorder(cnp, 3, 4, dirOut)), Probes: h.pokes(
						poke{"cedric-diggory-0", udp, "draco-malfoy-0", 5353, true},
						poke{"cedric-diggory-1", udp, "draco-malfoy-0", 53, true},
					)},
				)
			}},

		// CNPAdminTierGress: conformance/tests/admin-network-policy-standard-gress-rules.go, manifest conformance/base/admin_tier/standard-gress-rules-combined.yaml
		{Name: "CNPAdminTierGress", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := gressRules(h, admin)
				return steps(h.labelled("admin_tier/standard-gress-rules-combined.yaml", CreateCNP(cnp)),
					Step{Name: "Should support an 'allow-gress' policy across different protocols", Probes: h.pokes(
						poke{"harry-potter-0", tcp, "luna-lovegood-0", 80, true},
						poke{"harry-potter-1", udp, "luna-lovegood-0", 53, true},
						poke{"harry-potter-0", sctp, "luna-lovegood-0", 9003, true},
						poke{"luna-lovegood-0", tcp, "harry-potter-0", 80, true},
						poke{"luna-lovegood-1", udp, "harry-potter-0", 53, true},
						poke{"luna-lovegood-1", sctp, "harry-potter-0", 9003, true},
					)},
					Step{Name: "Should support an 'allow-gress' policy across different protocols at the specified ports", Probes: h.pokes(
						poke{"harry-potter-0", tcp, "cedric-diggory-1", 8080, true},
						poke{"harry-potter-1", tcp, "cedric-diggory-1", 80, false},
						poke{"harry-potter-0", udp, "cedric-diggory-1", 5353, true},
						poke{"harry-potter-1", udp, "cedric-diggory-1", 53, false},
						poke{"harry-potter-0", sctp, "cedric-diggory-1", 9003, true},
						poke{"harry-potter-1", sctp, "cedric-diggory-1", 9005, false},
						poke{"cedric-diggory-0", tcp, "harry-potter-1", 80, true},
						poke{"cedric-diggory-1", tcp, "harry-potter-1", 8080, false},
						poke{"cedric-diggory-0", udp, "harry-potter-1", 5353, true},
						poke{"cedric-diggory-1", udp, "harry-potter-1", 53, false},
						poke{"cedric-diggory-0", sctp, "harry-potter-1", 9003, true},
						poke{"cedric-diggory-1", sctp, "harry-potter-1", 9005, false},
					)},
					Step{Name: "Should support an 'deny-gress' policy across different protocols", Actions: do(reorder(cnp, 0, 1, dirOut, dirIn)), Probes: h.pokes(
						poke{"harry-potter-0", tcp, "luna-lovegood-1", 80, false},
						poke{"harry-potter-1", udp, "luna-lovegood-1", 53, false},
						poke{"harry-potter-0", sctp, "luna-lovegood-1", 9003, false},
						poke{"luna-lovegood-0", tcp, "harry-potter-1", 80, false},
						poke{"luna-lovegood-1", udp, "harry-potter-1", 53, false},
						poke{"luna-lovegood-1", sctp, "harry-potter-1", 9003, false},
					)},
					Step{Name: "Should support a 'deny-gress' policy across different protocols at the specified ports", Probes: h.pokes(
						poke{"harry-potter-0", tcp, "draco-malfoy-0", 80, false},
						poke{"harry-potter-1", tcp, "draco-malfoy-0", 8080, true},
						poke{"harry-potter-0", udp, "draco-malfoy-0", 53, false},
						poke{"harry-potter-1", udp, "draco-malfoy-0", 5353, true},
						poke{"harry-potter-0", sctp, "draco-malfoy-0", 9003, false},
						poke{"harry-potter-1", sctp, "draco-malfoy-0", 9005, true},
						poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, false},
						poke{"draco-malfoy-1", tcp, "harry-potter-0", 8080, true},
						poke{"draco-malfoy-0", udp, "harry-potter-0", 53, false},
						poke{"draco-malfoy-1", udp, "harry-potter-0", 5353, true},
						poke{"draco-malfoy-0", sctp, "harry-potter-0", 9003, false},
						poke{"draco-malfoy-1", sctp, "harry-potter-0", 9005, true},
					)},
					Step{Name: "Should support an 'pass-gress' policy across different protocols", Actions: do(reorder(cnp, 0, 2, dirOut, dirIn)), Probes: h.pokes(
						poke{"harry-potter-0", tcp, "luna-lovegood-0", 80, true},
						poke{"harry-potter-0", udp, "luna-lovegood-0", 5353, true},
						poke{"harry-potter-0", sctp, "luna-lovegood-0", 9003, true},
						poke{"luna-lovegood-0", tcp, "harry-potter-0", 80, true},
						poke{"luna-lovegood-1", udp, "harry-potter-0", 53, true},
						poke{"luna-lovegood-1", sctp, "harry-potter-0", 9003, true},
					)},
					Step{Name: "Should support a 'pass-gress' policy across different protocols at the specified ports", Actions: do(reorder(cnp, 3, 4, dirOut, dirIn)), Probes: h.pokes(
						poke{"harry-potter-0", tcp, "draco-malfoy-0", 80, true},
						poke{"harry-potter-1", tcp, "draco-malfoy-0", 8080, true},
						poke{"harry-potter-0", udp, "draco-malfoy-0", 53, true},
						poke{"harry-potter-1", udp, "draco-malfoy-0", 5353, true},
						poke{"harry-potter-0", sctp, "draco-malfoy-0", 9003, true},
						poke{"harry-potter-1", sctp, "draco-malfoy-0", 9005, true},
						poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, true},
						poke{"draco-malfoy-1", tcp, "harry-potter-0", 8080, true},
						poke{"draco-malfoy-0", udp, "harry-potter-0", 53, true},
						poke{"draco-malfoy-1", udp, "harry-potter-0", 5353, true},
						poke{"draco-malfoy-0", sctp, "harry-potter-0", 9003, true},
						poke{"draco-malfoy-1", sctp, "harry-potter-0", 9005, true},
					)},
				)
			}},

		// CNPAdminTierIngressSCTP: conformance/tests/admin-network-policy-standard-ingress-sctp-rules.go, manifest conformance/base/admin_tier/standard-ingress-sctp-rules.yaml
		{Name: "CNPAdminTierIngressSCTP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := NewCNP("ingress-sctp", admin, 5, SubjectNamespaces(h.byName("ravenclaw")),
					h.rules(dirIn, protocolRules(admin, dirIn, sctp, "gryffindor", "slytherin", 9003, "hufflepuff", 9003)...))
				return append(append(steps(h.labelled("admin_tier/standard-ingress-sctp-rules.yaml", CreateCNP(cnp))), ingressSCTPSteps(h, cnp)...),
					Step{Name: "Should support an 'pass-ingress' policy for SCTP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 2, dirIn)), Probes: h.pokes(
						poke{"harry-potter-0", sctp, "luna-lovegood-1", 9003, true},
						poke{"harry-potter-1", sctp, "luna-lovegood-1", 9005, true},
					)},
					Step{Name: "Should support a 'pass-ingress' policy for SCTP protocol at the specified port", Actions: do(reorder(cnp, 3, 4, dirIn)), Probes: h.pokes(
						poke{"draco-malfoy-0", sctp, "luna-lovegood-0", 9003, true},
						poke{"draco-malfoy-1", sctp, "luna-lovegood-0", 9005, true},
					)},
				)
			}},

		// CNPAdminTierIngressTCP: conformance/tests/admin-network-policy-standard-ingress-tcp-rules.go, manifest conformance/base/admin_tier/standard-ingress-tcp-rules.yaml
		{Name: "CNPAdminTierIngressTCP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := ingressTCPManifest.cnp(h, admin)
				return append(append(steps(h.labelled("admin_tier/standard-ingress-tcp-rules.yaml", CreateCNP(cnp))), ingressTCPSteps(h, cnp)...),
					Step{Name: "Should support an 'pass-ingress' policy for TCP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 2, dirIn)), Probes: h.pokes(
						poke{"luna-lovegood-0", tcp, "harry-potter-0", 80, true},
						poke{"luna-lovegood-1", tcp, "harry-potter-0", 8080, true},
					)},
					Step{Name: "Should support a 'pass-ingress' policy for TCP protocol at the specified port", Actions: do(reorder(cnp, 3, 4, dirIn)), Probes: h.pokes(
						poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, true},
						poke{"draco-malfoy-1", tcp, "harry-potter-0", 8080, true},
					)},
				)
			}},

		// CNPAdminTierIngressUDP: conformance/tests/admin-network-policy-standard-ingress-udp-rules.go, manifest conformance/base/admin_tier/standard-ingress-udp-rules.yaml
		{Name: "CNPAdminTierIngressUDP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := ingressUDPManifest.cnp(h, admin)
				return append(append(steps(h.labelled("admin_tier/standard-ingress-udp-rules.yaml", CreateCNP(cnp))), ingressUDPSteps(h, cnp)...),
					Step{Name: "Should support an 'pass-ingress' policy for UDP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 2, dirIn)), Probes: h.pokes(
						poke{"luna-lovegood-0", udp, "cedric-diggory-1", 5353, true},
						poke{"luna-lovegood-1", udp, "cedric-diggory-1", 53, true},
					)},
					Step{Name: "Should support a 'pass-ingress' policy for UDP protocol at the specified port", Actions: do(reorder(cnp, 3, 4, dirIn)), Probes: h.pokes(
						poke{"draco-malfoy-0", udp, "cedric-diggory-0", 5353, true},
						poke{"draco-malfoy-1", udp, "cedric-diggory-0", 53, true},
					)},
				)
			}},

		// CNPAdminTierIntegration: conformance/tests/admin-network-policy-standard-integration.go, manifest conformance/base/api_integration/standard-anp-np-banp.yaml
		{Name: "CNPAdminTierIntegration", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				gryffindor := SubjectNamespaces(byHouse("gryffindor"))
				slytherin := CNPPeers(NsCNPPeer(byHouse("slytherin")))
				adminCNP := NewCNP("pass-example", admin, 10, gryffindor,
					CNPIngress(CNPIn("deny-all-ingress-from-slytherin", Deny, slytherin)), CNPEgress(CNPOut("deny-all-egress-to-slytherin", Deny, slytherin)))
				np := NewPolicy("allow-gress-from-to-slytherin-to-gryffindor", all, PolicyTypes(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
				np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{In(Peers(NsPeer(byHouse("slytherin"))))}
				np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{Out(Peers(NsPeer(byHouse("slytherin"))))}
				baselineCNP := NewCNP("default", baseline, 10, gryffindor,
					CNPIngress(CNPIn("deny-all-ingress-from-slytherin", Deny, slytherin)), CNPEgress(CNPOut("deny-all-egress-to-slytherin", Deny, slytherin)))
				return steps(h.labelled("api_integration/standard-anp-np-banp.yaml", CreateCNP(adminCNP), Create(h.namespace("gryffindor"), np), CreateCNP(baselineCNP)),
					Step{Name: "Should Deny traffic from slytherin to gryffindor respecting admin CNP", Probes: h.pokes(
						poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, false},
						poke{"draco-malfoy-1", tcp, "harry-potter-0", 8080, false},
					)},
					Step{Name: "Should Deny traffic to slytherin from gryffindor respecting admin CNP", Probes: h.pokes(
						poke{"harry-potter-0", tcp, "draco-malfoy-0", 80, false},
						poke{"harry-potter-1", tcp, "draco-malfoy-0", 8080, false},
					)},
					Step{Name: "Should support a 'pass-ingress' policy for admin CNP and respect the match for network policy", Actions: do(setAction(adminCNP, dirIn, 0, Pass)), Probes: h.pokes(
						poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, true},
						poke{"draco-malfoy-1", tcp, "harry-potter-0", 8080, true},
					)},
					Step{Name: "Should support a 'pass-egress' policy for admin CNP and respect the match for network policy", Actions: do(setAction(adminCNP, dirOut, 0, Pass)), Probes: h.pokes(
						poke{"harry-potter-0", tcp, "draco-malfoy-0", 80, true},
						poke{"harry-potter-1", tcp, "draco-malfoy-0", 8080, true},
					)},
					Step{Name: "Should support a 'pass-ingress' policy for admin CNP and respect the match for baseline cluster network policy", Actions: do(Delete(h.namespace("gryffindor"), np.Name)), Probes: h.pokes(
						poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, false},
						poke{"draco-malfoy-1", tcp, "harry-potter-0", 8080, false},
					)},
					Step{Name: "Should support a 'pass-egress' policy for admin CNP and respect the match for baseline cluster network policy", Probes: h.pokes(
						poke{"harry-potter-0", tcp, "draco-malfoy-0", 80, false},
						poke{"harry-potter-1", tcp, "draco-malfoy-0", 8080, false},
					)},
				)
			}},

		// CNPAdminTierPodSelector: conformance/tests/admin-network-policy-standard-pod-selector-rules.go, manifest conformance/base/admin_tier/standard-pod-selector-rules.yaml
		{Name: "CNPAdminTierPodSelector", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				rules, labelSelected := podSelectorRules(h, admin, 20, 21)
				return append(steps(h.labelled("admin_tier/standard-pod-selector-rules.yaml", CreateCNP(rules), CreateCNP(labelSelected))), podSelectorSteps(h)...)
			}},

		// CNPAdminTierPortRange: conformance/tests/admin-network-policy-standard-port-range-rules.go, manifest conformance/base/admin_tier/standard-port-range-rules-combined.yaml
		{Name: "CNPAdminTierPortRange", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := portRangeRules(h, admin, 9)
				return append(steps(h.labelled("admin_tier/standard-port-range-rules-combined.yaml", CreateCNP(cnp))), portRangeSteps(h)...)
			}},

		// CNPAdminTierPriorityField: conformance/tests/admin-network-policy-standard-priority.go, manifest conformance/base/admin_tier/standard-priority-field.yaml
		{Name: "CNPAdminTierPriorityField", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				gryffindor := SubjectPods(byHouse("gryffindor"), byHouse("gryffindor"))
				slytherin := CNPPeers(PodsCNPPeer(byHouse("slytherin"), byHouse("slytherin")))
				deny := NewCNP("priority-50-example", admin, 50, gryffindor,
					CNPIngress(CNPIn("deny-all-ingress-from-slytherin", Deny, slytherin)), CNPEgress(CNPOut("deny-all-egress-to-slytherin", Deny, slytherin)))
				pass := NewCNP("old-priority-60-new-priority-40-example", admin, 60, gryffindor,
					CNPIngress(CNPIn("pass-all-ingress-from-slytherin", Pass, slytherin)), CNPEgress(CNPOut("pass-all-egress-to-slytherin", Pass, slytherin)))
				allow := NewCNP("default", baseline, 10, gryffindor,
					CNPIngress(CNPIn("allow-all-ingress-from-slytherin", Accept, slytherin)), CNPEgress(CNPOut("allow-all-egress-to-slytherin", Accept, slytherin)))
				return steps(h.labelled("admin_tier/standard-priority-field.yaml", CreateCNP(deny), CreateCNP(pass), CreateCNP(allow)),
					Step{Name: "Should Deny traffic from slytherin to gryffindor respecting admin CNP", Probes: h.pokes(
						poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, false},
						poke{"draco-malfoy-1", tcp, "harry-potter-0", 8080, false},
					)},
					Step{Name: "Should Deny traffic to slytherin from gryffindor respecting admin CNP", Probes: h.pokes(
						poke{"harry-potter-0", tcp, "draco-malfoy-0", 80, false},
						poke{"harry-potter-1", tcp, "draco-malfoy-0", 8080, false},
					)},
					Step{Name: "Should respect admin CNP priority field; thus passing both ingress and egress traffic over to baseline CNP", Actions: do(setPriority(pass, 40)), Probes: h.pokes(
						poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, true},
						poke{"draco-malfoy-1", tcp, "harry-potter-0", 8080, true},
						poke{"harry-potter-0", tcp, "draco-malfoy-0", 80, true},
						poke{"harry-potter-1", tcp, "draco-malfoy-0", 8080, true},
					)},
				)
			}},

		// CNPAdminTierSamePriority: conformance/tests/admin-network-policy-standard-same-priority.go, manifest conformance/base/admin_tier/standard-same-priority.yaml
		{Name: "CNPAdminTierSamePriority", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				policies := samePriorityRules(h, admin, 15, "same-priority-")
				return steps(h.labelled("admin_tier/standard-same-priority.yaml", policies...),
					Step{Name: "Should deny traffic in both directions for each same-priority policy", Probes: h.pokes(
						poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, false},
						poke{"harry-potter-0", tcp, "draco-malfoy-0", 80, false},
						poke{"cedric-diggory-0", tcp, "harry-potter-0", 80, false},
						poke{"harry-potter-1", tcp, "cedric-diggory-0", 80, false},
						poke{"draco-malfoy-1", tcp, "cedric-diggory-0", 8080, false},
						poke{"cedric-diggory-1", tcp, "draco-malfoy-0", 8080, false},
					)},
					Step{Name: "Should not apply one same-priority policy's rules to another policy's subject", Probes: h.pokes(
						poke{"draco-malfoy-0", tcp, "harry-potter-0", 8080, true},
						poke{"harry-potter-0", tcp, "draco-malfoy-0", 8080, true},
						poke{"draco-malfoy-1", tcp, "cedric-diggory-0", 80, true},
						poke{"cedric-diggory-0", tcp, "draco-malfoy-0", 80, true},
					)},
					Step{Name: "Should not affect traffic matching no same-priority policy", Probes: h.pokes(
						poke{"luna-lovegood-0", tcp, "harry-potter-0", 80, true},
						poke{"harry-potter-1", tcp, "luna-lovegood-0", 80, true},
					)},
				)
			}},
	}
}
