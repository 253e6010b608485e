package conformance

// The Baseline-tier half of the ported ClusterNetworkPolicy conformance tests
// (upstream_cnp.go says how they are ported).

// baselineTierCNPCases are upstream's baseline-admin-network-policy-standard-*.go
// tests.
func baselineTierCNPCases() []Case {
	return []Case{
		// CNPBaselineTierEgressInlineCIDRPeers: conformance/tests/baseline-admin-network-policy-standard-egress-inline-cidr-rules.go, manifest conformance/base/baseline_tier/standard-egress-inline-cidr-rules.yaml
		{Name: "CNPBaselineTierEgressInlineCIDRPeers", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := inlineCIDRRules("default", baseline, 10, SubjectNamespaces(h.byName("gryffindor")))
				return append(steps(h.labelled("baseline_tier/standard-egress-inline-cidr-rules.yaml", CreateCNP(cnp))), inlineCIDRSteps(h, cnp)...)
			}},

		// CNPBaselineTierEgressSCTP: conformance/tests/baseline-admin-network-policy-standard-egress-sctp-rules.go, manifest conformance/base/baseline_tier/standard-egress-sctp-rules.yaml
		{Name: "CNPBaselineTierEgressSCTP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := NewCNP("default", baseline, 10, SubjectNamespaces(h.byName("ravenclaw")),
					h.rules(dirOut, protocolRules(baseline, dirOut, sctp, "gryffindor", "slytherin", 9003, "hufflepuff", 9003)...))
				return append(steps(h.labelled("baseline_tier/standard-egress-sctp-rules.yaml", CreateCNP(cnp))), egressSCTPSteps(h, cnp)...)
			}},

		// CNPBaselineTierEgressTCP: conformance/tests/baseline-admin-network-policy-standard-egress-tcp-rules.go, manifest conformance/base/baseline_tier/standard-egress-tcp-rules.yaml
		{Name: "CNPBaselineTierEgressTCP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := egressTCPManifest.cnp(h, baseline)
				return append(steps(h.labelled("baseline_tier/standard-egress-tcp-rules.yaml", CreateCNP(cnp))), egressTCPSteps(h, cnp)...)
			}},

		// CNPBaselineTierEgressUDP: conformance/tests/baseline-admin-network-policy-standard-egress-udp-rules.go, manifest conformance/base/baseline_tier/standard-egress-udp-rules.yaml
		{Name: "CNPBaselineTierEgressUDP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := egressUDPManifest.cnp(h, baseline)
				return append(steps(h.labelled("baseline_tier/standard-egress-udp-rules.yaml", CreateCNP(cnp))), egressUDPSteps(h, cnp)...)
			}},

		// CNPBaselineTierGress: conformance/tests/baseline-admin-network-policy-standard-gress-rules.go, manifest conformance/base/baseline_tier/standard-gress-rules-combined.yaml
		{Name: "CNPBaselineTierGress", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := gressRules(h, baseline)
				return steps(h.labelled("baseline_tier/standard-gress-rules-combined.yaml", CreateCNP(cnp)),
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
				)
			}},

		// CNPBaselineTierIngressSCTP: conformance/tests/baseline-admin-network-policy-standard-ingress-sctp-rules.go, manifest conformance/base/baseline_tier/standard-ingress-sctp-rules.yaml
		{Name: "CNPBaselineTierIngressSCTP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := NewCNP("default", baseline, 10, SubjectNamespaces(h.byName("ravenclaw")),
					h.rules(dirIn, protocolRules(baseline, dirIn, sctp, "gryffindor", "slytherin", 9003, "hufflepuff", 9003)...))
				return append(steps(h.labelled("baseline_tier/standard-ingress-sctp-rules.yaml", CreateCNP(cnp))), ingressSCTPSteps(h, cnp)...)
			}},

		// CNPBaselineTierIngressTCP: conformance/tests/baseline-admin-network-policy-standard-ingress-tcp-rules.go, manifest conformance/base/baseline_tier/standard-ingress-tcp-rules.yaml
		{Name: "CNPBaselineTierIngressTCP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := ingressTCPManifest.cnp(h, baseline)
				return append(steps(h.labelled("baseline_tier/standard-ingress-tcp-rules.yaml", CreateCNP(cnp))), ingressTCPSteps(h, cnp)...)
			}},

		// CNPBaselineTierIngressUDP: conformance/tests/baseline-admin-network-policy-standard-ingress-udp-rules.go, manifest conformance/base/baseline_tier/standard-ingress-udp-rules.yaml
		{Name: "CNPBaselineTierIngressUDP", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := ingressUDPManifest.cnp(h, baseline)
				return append(steps(h.labelled("baseline_tier/standard-ingress-udp-rules.yaml", CreateCNP(cnp))), ingressUDPSteps(h, cnp)...)
			}},

		// CNPBaselineTierPodSelector: conformance/tests/baseline-admin-network-policy-standard-pod-selector-rules.go, manifest conformance/base/baseline_tier/standard-pod-selector-rules.yaml
		{Name: "CNPBaselineTierPodSelector", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				rules, labelSelected := podSelectorRules(h, baseline, 10, 10)
				return append(steps(h.labelled("baseline_tier/standard-pod-selector-rules.yaml", CreateCNP(rules), CreateCNP(labelSelected))), podSelectorSteps(h)...)
			}},

		// CNPBaselineTierPortRange: conformance/tests/baseline-admin-network-policy-standard-port-range-rules.go, manifest conformance/base/baseline_tier/standard-port-range-rules-combined.yaml
		{Name: "CNPBaselineTierPortRange", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				cnp := portRangeRules(h, baseline, 10)
				return append(steps(h.labelled("baseline_tier/standard-port-range-rules-combined.yaml", CreateCNP(cnp))), portRangeSteps(h)...)
			}},

		// CNPBaselineTierSamePriority: conformance/tests/baseline-admin-network-policy-standard-same-priority.go, manifest conformance/base/baseline_tier/standard-same-priority.yaml
		{Name: "CNPBaselineTierSamePriority", Pods: HousePods,
			Steps: func(e *Env) []Step {
				h := newHouses(e)
				policies := samePriorityRules(h, baseline, 10, "baseline-same-priority-")
				return steps(h.labelled("baseline_tier/standard-same-priority.yaml", policies...),
					Step{Name: "Should deny traffic in both directions for each same-priority policy", Probes: h.pokes(
						poke{"draco-malfoy-0", tcp, "harry-potter-1", 80, false},
						poke{"harry-potter-0", tcp, "draco-malfoy-1", 80, false},
						poke{"cedric-diggory-0", tcp, "harry-potter-1", 80, false},
						poke{"harry-potter-1", tcp, "cedric-diggory-1", 80, false},
						poke{"draco-malfoy-1", tcp, "cedric-diggory-1", 8080, false},
						poke{"cedric-diggory-1", tcp, "draco-malfoy-1", 8080, false},
					)},
					Step{Name: "Should not apply one same-priority policy's rules to another policy's subject", Probes: h.pokes(
						poke{"draco-malfoy-0", tcp, "harry-potter-1", 8080, true},
						poke{"harry-potter-0", tcp, "draco-malfoy-1", 8080, true},
						poke{"draco-malfoy-1", tcp, "cedric-diggory-1", 80, true},
						poke{"cedric-diggory-0", tcp, "draco-malfoy-1", 80, true},
					)},
					Step{Name: "Should not affect traffic matching no same-priority policy", Probes: h.pokes(
						poke{"luna-lovegood-0", tcp, "harry-potter-1", 80, true},
						poke{"harry-potter-0", tcp, "luna-lovegood-1", 80, true},
					)},
				)
			}},
	}
}
