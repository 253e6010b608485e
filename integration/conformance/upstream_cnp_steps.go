package conformance

import "sigs.k8s.io/network-policy-api/apis/v1beta1"

// The subtests that pairs of ported ClusterNetworkPolicy tests share (upstream
// writes them once per tier; the Admin tier goes on with Pass where Baseline
// stops), with upstream's expectations.

// podSelectorSteps are the subtests of both pod-selector tests
// (admin-network-policy-standard-pod-selector-rules.go,
// baseline-admin-network-policy-standard-pod-selector-rules.go): the same in
// both files.
func podSelectorSteps(h *houses) []Step {
	return steps(
		Step{Name: "Should support pod selectors in egress peers", Probes: h.pokes(
			poke{"harry-potter-0", tcp, "luna-lovegood-0", 8080, false},
			poke{"harry-potter-0", tcp, "luna-lovegood-0", 80, true},
			poke{"harry-potter-1", tcp, "luna-lovegood-1", 80, false},
		)},
		Step{Name: "Should support pod selectors in ingress peers", Probes: h.pokes(
			poke{"draco-malfoy-1", tcp, "harry-potter-1", 80, false},
			poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, true},
		)},
		Step{Name: "Should support pod selectors in ingress peers", Actions: do(h.setPodLabel("cedric-diggory-0", roleLabel, "blocked")), Probes: h.pokes(
			poke{"cedric-diggory-0", tcp, "harry-potter-0", 80, false},
			poke{"cedric-diggory-1", tcp, "harry-potter-0", 80, true},
		)},
		Step{Name: "Should support pod selectors in ingress peers", Actions: do(h.removePodLabel("cedric-diggory-0", roleLabel)), Probes: h.pokes(
			poke{"cedric-diggory-0", tcp, "harry-potter-0", 80, true},
		)},
		Step{Name: "Should support pod selectors in ingress peers", Actions: do(h.setPodLabel("cedric-diggory-1", roleLabel, "blocked")), Probes: h.pokes(
			poke{"cedric-diggory-1", tcp, "harry-potter-0", 80, false},
		)},
		// The previous subtest's t.Cleanup; this one's own cleanup
		// (luna-lovegood-0 and -1 lose conformance-role) is left to
		// the reset between cases.
		Step{Name: "Should support pod selectors in the subject", Actions: do(h.removePodLabel("cedric-diggory-0", roleLabel), h.removePodLabel("cedric-diggory-1", roleLabel)), Probes: h.pokes(
			poke{"draco-malfoy-0", tcp, "luna-lovegood-1", 80, true},
		)},
		Step{Name: "Should support pod selectors in the subject", Actions: do(h.setPodLabel("luna-lovegood-0", roleLabel, "restricted")), Probes: h.pokes(
			poke{"luna-lovegood-0", tcp, "draco-malfoy-0", 80, false},
			poke{"luna-lovegood-1", tcp, "draco-malfoy-0", 80, true},
		)},
		Step{Name: "Should support pod selectors in the subject", Actions: do(h.removePodLabel("luna-lovegood-0", roleLabel)), Probes: h.pokes(
			poke{"luna-lovegood-0", tcp, "draco-malfoy-0", 80, true},
		)},
		Step{Name: "Should support pod selectors in the subject", Actions: do(h.setPodLabel("luna-lovegood-1", roleLabel, "restricted")), Probes: h.pokes(
			poke{"luna-lovegood-1", tcp, "draco-malfoy-0", 80, false},
		)},
	)
}

// portRangeSteps are the subtests of both port-range tests
// (admin-network-policy-standard-port-range-rules.go,
// baseline-admin-network-policy-standard-port-range-rules.go): the same in
// both files.
func portRangeSteps(h *houses) []Step {
	return steps(
		Step{Name: "Should support egress port range rules across different protocols", Probes: h.pokes(
			poke{"harry-potter-0", tcp, "luna-lovegood-0", 80, true},
			poke{"harry-potter-0", tcp, "luna-lovegood-0", 8080, true},
			poke{"harry-potter-1", udp, "luna-lovegood-0", 53, false},
			poke{"harry-potter-0", udp, "cedric-diggory-0", 53, true},
			poke{"harry-potter-0", udp, "cedric-diggory-0", 5353, true},
			poke{"harry-potter-1", tcp, "cedric-diggory-0", 80, false},
			poke{"harry-potter-0", sctp, "draco-malfoy-0", 9003, true},
			poke{"harry-potter-0", sctp, "draco-malfoy-0", 9005, true},
			poke{"harry-potter-1", tcp, "draco-malfoy-0", 80, false},
		)},
		Step{Name: "Should support ingress port range rules across different protocols", Probes: h.pokes(
			poke{"luna-lovegood-0", tcp, "harry-potter-0", 80, true},
			poke{"luna-lovegood-0", tcp, "harry-potter-0", 8080, true},
			poke{"luna-lovegood-1", udp, "harry-potter-0", 53, false},
			poke{"cedric-diggory-0", udp, "harry-potter-0", 53, true},
			poke{"cedric-diggory-0", udp, "harry-potter-0", 5353, true},
			poke{"cedric-diggory-1", tcp, "harry-potter-0", 80, false},
			poke{"draco-malfoy-0", sctp, "harry-potter-0", 9003, true},
			poke{"draco-malfoy-0", sctp, "harry-potter-0", 9005, true},
			poke{"draco-malfoy-1", tcp, "harry-potter-0", 80, false},
		)},
	)
}

// inlineCIDRSteps are the subtests of both inline-CIDR tests
// (admin-network-policy-standard-egress-inline-cidr-rules.go,
// baseline-admin-network-policy-standard-egress-inline-cidr-rules.go): the
// same in both files.
func inlineCIDRSteps(h *houses, cnp *v1beta1.ClusterNetworkPolicy) []Step {
	return steps(
		Step{Name: "Should support a 'deny-egress' rule policy for egress-cidr-peer", Probes: h.pokes(
			poke{"harry-potter-1", tcp, "luna-lovegood-0", 80, false},
			poke{"harry-potter-1", udp, "luna-lovegood-0", 53, false},
			poke{"harry-potter-1", sctp, "luna-lovegood-0", 9003, false},
			poke{"harry-potter-1", tcp, "cedric-diggory-0", 80, false},
			poke{"harry-potter-1", udp, "cedric-diggory-0", 53, false},
			poke{"harry-potter-1", sctp, "cedric-diggory-0", 9003, false},
			poke{"harry-potter-1", tcp, "draco-malfoy-0", 80, true},
			poke{"harry-potter-1", udp, "draco-malfoy-0", 53, true},
			poke{"harry-potter-1", sctp, "draco-malfoy-0", 9003, true},
		)},
		Step{Name: "Should support a 'deny-egress' rule policy for egress-cidr-peer", Actions: do(h.setNamespaceLabels("slytherin", map[string]string{houseLabel: "denied-namespace-label"})), Probes: h.pokes(
			poke{"harry-potter-1", tcp, "draco-malfoy-0", 80, false},
			poke{"harry-potter-1", udp, "draco-malfoy-0", 53, false},
			poke{"harry-potter-1", sctp, "draco-malfoy-0", 9003, false},
		)},
		Step{Name: "Should support a 'deny-egress' rule policy for egress-cidr-peer", Actions: do(h.setNamespaceLabels("slytherin", map[string]string{houseLabel: "slytherin"})), Probes: h.pokes(
			poke{"harry-potter-1", tcp, "draco-malfoy-0", 80, true},
			poke{"harry-potter-1", udp, "draco-malfoy-0", 53, true},
			poke{"harry-potter-1", sctp, "draco-malfoy-0", 9003, true},
		)},
		Step{Name: "Should support an 'allow-egress' rule policy for egress-cidr-peer", Actions: do(allowSpecificPodIPs(h, cnp)), Probes: h.pokes(
			poke{"harry-potter-1", tcp, "luna-lovegood-0", 80, true},
			poke{"harry-potter-1", udp, "luna-lovegood-0", 53, true},
			poke{"harry-potter-1", sctp, "luna-lovegood-0", 9003, true},
			poke{"harry-potter-1", tcp, "cedric-diggory-0", 80, true},
			poke{"harry-potter-1", udp, "cedric-diggory-0", 53, true},
			poke{"harry-potter-1", sctp, "cedric-diggory-0", 9003, true},
			poke{"harry-potter-1", tcp, "luna-lovegood-1", 80, false},
			poke{"harry-potter-1", udp, "luna-lovegood-1", 53, false},
			poke{"harry-potter-1", sctp, "luna-lovegood-1", 9003, false},
			poke{"harry-potter-1", tcp, "cedric-diggory-1", 80, false},
			poke{"harry-potter-1", udp, "cedric-diggory-1", 53, false},
			poke{"harry-potter-1", sctp, "cedric-diggory-1", 9003, false},
		)},
	)
}

// egressSCTPSteps are the steps the Admin and Baseline SCTP egress tests share (allow, then
// deny, each in rule order and at the specified port); the Admin test goes on
// with Pass.
func egressSCTPSteps(h *houses, cnp *v1beta1.ClusterNetworkPolicy) []Step {
	return steps(
		Step{Name: "Should support an 'allow-egress' policy for SCTP protocol; ensure rule ordering is respected", Probes: h.pokes(
			poke{"luna-lovegood-0", sctp, "harry-potter-0", 9003, true},
			poke{"luna-lovegood-1", sctp, "harry-potter-0", 9005, true},
		)},
		Step{Name: "Should support an 'allow-egress' policy for SCTP protocol at the specified port", Probes: h.pokes(
			poke{"luna-lovegood-0", sctp, "cedric-diggory-1", 9003, true},
			poke{"luna-lovegood-1", sctp, "cedric-diggory-1", 9005, false},
		)},
		Step{Name: "Should support an 'deny-egress' policy for SCTP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 1, dirOut)), Probes: h.pokes(
			poke{"luna-lovegood-0", sctp, "harry-potter-1", 9003, false},
			poke{"luna-lovegood-1", sctp, "harry-potter-1", 9005, false},
		)},
		Step{Name: "Should support a 'deny-egress' policy for SCTP protocol at the specified port", Probes: h.pokes(
			poke{"luna-lovegood-0", sctp, "draco-malfoy-0", 9003, false},
			poke{"luna-lovegood-1", sctp, "draco-malfoy-0", 9005, true},
		)},
	)
}

// egressTCPSteps are the steps the Admin and Baseline TCP egress tests share (allow, then
// deny, each in rule order and at the specified port); the Admin test goes on
// with Pass.
func egressTCPSteps(h *houses, cnp *v1beta1.ClusterNetworkPolicy) []Step {
	return steps(
		Step{Name: "Should support an 'allow-egress' policy for TCP protocol; ensure rule ordering is respected", Probes: h.pokes(
			poke{"harry-potter-0", tcp, "luna-lovegood-0", 80, true},
			poke{"harry-potter-1", tcp, "luna-lovegood-0", 8080, true},
		)},
		Step{Name: "Should support an 'allow-egress' policy for TCP protocol at the specified port", Probes: h.pokes(
			poke{"harry-potter-0", tcp, "cedric-diggory-1", 8080, true},
			poke{"harry-potter-1", tcp, "cedric-diggory-1", 80, false},
		)},
		Step{Name: "Should not affect ingress traffic when only egress rules are specified", Probes: h.pokes(
			poke{"luna-lovegood-0", tcp, "harry-potter-0", 80, true},
			poke{"draco-malfoy-0", tcp, "harry-potter-1", 80, true},
		)},
		Step{Name: "Should support an 'deny-egress' policy for TCP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 1, dirOut)), Probes: h.pokes(
			poke{"harry-potter-0", tcp, "luna-lovegood-1", 80, false},
			poke{"harry-potter-1", tcp, "luna-lovegood-1", 8080, false},
		)},
		Step{Name: "Should support a 'deny-egress' policy for TCP protocol at the specified port", Probes: h.pokes(
			poke{"harry-potter-0", tcp, "draco-malfoy-0", 80, false},
			poke{"harry-potter-1", tcp, "draco-malfoy-0", 8080, true},
		)},
	)
}

// egressUDPSteps are the steps the Admin and Baseline UDP egress tests share (allow, then
// deny, each in rule order and at the specified port); the Admin test goes on
// with Pass.
func egressUDPSteps(h *houses, cnp *v1beta1.ClusterNetworkPolicy) []Step {
	return steps(
		Step{Name: "Should support an 'allow-egress' policy for UDP protocol; ensure rule ordering is respected", Probes: h.pokes(
			poke{"cedric-diggory-0", udp, "luna-lovegood-0", 53, true},
			poke{"cedric-diggory-1", udp, "luna-lovegood-0", 5353, true},
		)},
		Step{Name: "Should support an 'allow-egress' policy for UDP protocol at the specified port", Probes: h.pokes(
			poke{"cedric-diggory-0", udp, "harry-potter-1", 53, true},
			poke{"cedric-diggory-1", udp, "harry-potter-1", 5353, false},
		)},
		Step{Name: "Should support an 'deny-egress' policy for UDP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 1, dirOut)), Probes: h.pokes(
			poke{"cedric-diggory-0", udp, "luna-lovegood-1", 53, false},
			poke{"cedric-diggory-1", udp, "luna-lovegood-1", 5353, false},
		)},
		Step{Name: "Should support a 'deny-egress' policy for UDP protocol at the specified port", Probes: h.pokes(
			poke{"cedric-diggory-0", udp, "draco-malfoy-0", 5353, false},
			poke{"cedric-diggory-1", udp, "draco-malfoy-0", 53, true},
		)},
	)
}

// ingressSCTPSteps are the steps the Admin and Baseline SCTP ingress tests share (allow, then
// deny, each in rule order and at the specified port); the Admin test goes on
// with Pass.
func ingressSCTPSteps(h *houses, cnp *v1beta1.ClusterNetworkPolicy) []Step {
	return steps(
		Step{Name: "Should support an 'allow-ingress' policy for SCTP protocol; ensure rule ordering is respected", Probes: h.pokes(
			poke{"harry-potter-0", sctp, "luna-lovegood-0", 9003, true},
			poke{"harry-potter-1", sctp, "luna-lovegood-0", 9005, true},
		)},
		Step{Name: "Should support an 'allow-ingress' policy for SCTP protocol at the specified port", Probes: h.pokes(
			poke{"cedric-diggory-0", sctp, "luna-lovegood-1", 9003, true},
			poke{"cedric-diggory-1", sctp, "luna-lovegood-1", 9005, false},
		)},
		Step{Name: "Should support an 'deny-ingress' policy for SCTP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 1, dirIn)), Probes: h.pokes(
			poke{"harry-potter-0", sctp, "luna-lovegood-1", 9003, false},
			poke{"harry-potter-1", sctp, "luna-lovegood-1", 9005, false},
		)},
		Step{Name: "Should support a 'deny-ingress' policy for SCTP protocol at the specified port", Probes: h.pokes(
			poke{"draco-malfoy-0", sctp, "luna-lovegood-0", 9003, false},
			poke{"draco-malfoy-1", sctp, "luna-lovegood-0", 9005, true},
		)},
	)
}

// ingressTCPSteps are the steps the Admin and Baseline TCP ingress tests share (allow, then
// deny, each in rule order and at the specified port); the Admin test goes on
// with Pass.
func ingressTCPSteps(h *houses, cnp *v1beta1.ClusterNetworkPolicy) []Step {
	return steps(
		Step{Name: "Should support an 'allow-ingress' policy for TCP protocol; ensure rule ordering is respected", Probes: h.pokes(
			poke{"luna-lovegood-0", tcp, "harry-potter-0", 80, true},
			poke{"luna-lovegood-1", tcp, "harry-potter-0", 8080, true},
		)},
		Step{Name: "Should support an 'allow-ingress' policy for TCP protocol at the specified port", Probes: h.pokes(
			poke{"cedric-diggory-0", tcp, "harry-potter-1", 80, true},
			poke{"cedric-diggory-1", tcp, "harry-potter-1", 8080, false},
		)},
		Step{Name: "Should not affect egress traffic when only ingress rules are specified", Probes: h.pokes(
			poke{"harry-potter-0", tcp, "luna-lovegood-0", 80, true},
			poke{"harry-potter-1", tcp, "draco-malfoy-0", 80, true},
		)},
		Step{Name: "Should support an 'deny-ingress' policy for TCP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 1, dirIn)), Probes: h.pokes(
			poke{"luna-lovegood-0", tcp, "harry-potter-1", 80, false},
			poke{"luna-lovegood-1", tcp, "harry-potter-1", 8080, false},
		)},
		Step{Name: "Should support a 'deny-ingress' policy for TCP protocol at the specified port", Probes: h.pokes(
			poke{"draco-malfoy-0", tcp, "harry-potter-0", 80, false},
			poke{"draco-malfoy-1", tcp, "harry-potter-0", 8080, true},
		)},
	)
}

// ingressUDPSteps are the steps the Admin and Baseline UDP ingress tests share (allow, then
// deny, each in rule order and at the specified port); the Admin test goes on
// with Pass.
func ingressUDPSteps(h *houses, cnp *v1beta1.ClusterNetworkPolicy) []Step {
	return steps(
		Step{Name: "Should support an 'allow-ingress' policy for UDP protocol; ensure rule ordering is respected", Probes: h.pokes(
			poke{"luna-lovegood-0", udp, "cedric-diggory-0", 53, true},
			poke{"luna-lovegood-1", udp, "cedric-diggory-0", 5353, true},
		)},
		Step{Name: "Should support an 'allow-ingress' policy for UDP protocol at the specified port", Probes: h.pokes(
			poke{"harry-potter-0", udp, "cedric-diggory-1", 53, true},
			poke{"harry-potter-1", udp, "cedric-diggory-1", 5353, false},
		)},
		Step{Name: "Should support an 'deny-ingress' policy for UDP protocol; ensure rule ordering is respected", Actions: do(reorder(cnp, 0, 1, dirIn)), Probes: h.pokes(
			poke{"luna-lovegood-0", udp, "cedric-diggory-1", 53, false},
			poke{"luna-lovegood-1", udp, "cedric-diggory-1", 5353, false},
		)},
		Step{Name: "Should support a 'deny-ingress' policy for UDP protocol at the specified port", Probes: h.pokes(
			poke{"draco-malfoy-0", udp, "cedric-diggory-0", 5353, false},
			poke{"draco-malfoy-1", udp, "cedric-diggory-0", 53, true},
		)},
	)
}
