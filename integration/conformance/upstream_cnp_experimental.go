package conformance

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// The experimental-channel conformance tests of sigs.k8s.io/network-policy-api
// v0.3.0 (conformance/tests/*-experimental-*.go: nodes egress peers and
// destinationNamedPort), ported the way upstream_cnp.go ports the standard
// ones: the first step applies the test's manifest, each further step is one
// of its t.Run subtests with upstream's mutation and PokeServer calls. The
// named-port tests start from a standard manifest and rewrite one rule's
// protocols to a named port ("web" is TCP 80, "dns" UDP 53 on every server
// pod, HouseNamedPorts); the node-peer tests poke centaur-1, a hostNetwork
// server, at HostNetworkPorts (NodePokes on the mapping of houses.go). They
// need the experimental channel: the experimental CRD, and daemons with
// --cluster-network-policy=experimental (TestConformancePackets runs them so
// after the standard cases).

// setNamedPort is upstream's rewrite of rule i of direction dir to the one
// protocol {destinationNamedPort: name}, followed by PatchClusterNetworkPolicy.
func setNamedPort(cnp *v1beta1.ClusterNetworkPolicy, dir networkingv1.PolicyType, i int, name string) Action {
	named := []v1beta1.ClusterNetworkPolicyProtocol{CNPNamedPort(name)}
	if dir == dirIn {
		cnp.Spec.Ingress[i].Protocols = named
	} else {
		cnp.Spec.Egress[i].Protocols = named
	}
	return UpdateCNP(cnp)
}

// linuxNodes is upstream's nodes peer: kubernetes.io/os: linux, every node.
var linuxNodes = NodesCNPPeer(Sel(corev1.LabelOSStable, "linux"))

// internet is upstream's networks peer 0.0.0.0/0 and ::/0.
var internet = CNPPeer{Networks: []v1beta1.CIDR{"0.0.0.0/0", "::/0"}}

// nodePeersRules is experimental-egress-selector-rules.yaml of either tier.
func nodePeersRules(h *houses, tier v1beta1.Tier) *v1beta1.ClusterNetworkPolicy {
	if tier == admin {
		return NewCNP("node-and-cidr-as-peers-example", admin, 75, SubjectPods(byHouse("gryffindor"), byHouse("gryffindor")), CNPEgress(
			CNPOut(fmt.Sprintf("allow-egress-to-%d-on-nodes", HostNetworkPorts[0]), Accept, CNPPeers(linuxNodes), CNPPort(tcp, HostNetworkPorts[0])),
			CNPOut(fmt.Sprintf("pass-egress-to-%d-on-nodes", HostNetworkPorts[2]), Pass, CNPPeers(linuxNodes), CNPPort(udp, HostNetworkPorts[2])),
			CNPOut("deny-egress-to-slytherin-and-nodes-and-internet", Deny, CNPPeers(PodsCNPPeer(byHouse("slytherin"), byHouse("slytherin")), linuxNodes, internet)),
		))
	}
	return NewCNP("default", baseline, 10, SubjectNamespaces(h.byName("gryffindor")), CNPEgress(
		CNPOut(fmt.Sprintf("allow-egress-to-%d-on-nodes", HostNetworkPorts[0]), Accept, CNPPeers(linuxNodes), CNPPortRange(tcp, HostNetworkPorts[0], HostNetworkPorts[1])),
		CNPOut("deny-egress-to-nodes-and-internet", Deny, CNPPeers(linuxNodes, internet)),
	))
}

// namedPortCase is one of the four named-port tests: the manifest of tier
// pm, rule i of its direction rewritten to the named port, then upstream's
// two pokes.
func namedPortCase(name string, tier v1beta1.Tier, pm protocolManifest, manifest string, i int, portName, subtest string, pokes ...poke) Case {
	return Case{Name: name, Pods: HousePods, Steps: func(e *Env) []Step {
		h := newHouses(e)
		cnp := pm.cnp(h, tier)
		return steps(h.labelled(manifest, CreateCNP(cnp)),
			Step{Name: subtest, Actions: do(setNamedPort(cnp, pm.dir, i, portName)), Probes: h.pokes(pokes...)})
	}}
}

// subtest is one upstream t.Run of a node-peer test: its name and pokes.
type subtest struct {
	name  string
	pokes []nodePoke
}

// nodePeersCase is one of the two node-peer tests: the manifest of tier,
// then one step per subtest.
func nodePeersCase(name string, tier v1beta1.Tier, manifest string, subtests ...subtest) Case {
	return Case{Name: name, Pods: HousePods, Steps: func(e *Env) []Step {
		h := newHouses(e)
		out := steps(h.labelled(manifest, CreateCNP(nodePeersRules(h, tier))))
		for _, st := range subtests {
			out = append(out, Step{Name: st.name, NodePokes: h.nodePokes(st.pokes...)})
		}
		return out
	}}
}

// UpstreamCNPExperimentalCases returns the ported experimental-channel cases,
// Admin tier first, in upstream's file order.
func UpstreamCNPExperimentalCases() []Case {
	return []Case{
		// CNPAdminTierEgressNamedPort: conformance/tests/admin-network-policy-experimental-egress-rules.go, manifest conformance/base/admin_tier/standard-egress-tcp-rules.yaml
		namedPortCase("CNPAdminTierEgressNamedPort", admin, egressTCPManifest, "admin_tier/standard-egress-tcp-rules.yaml", 5, "web",
			"Should support an 'allow-egress' policy for named port",
			poke{"harry-potter-0", tcp, "cedric-diggory-1", 80, true},
			poke{"harry-potter-1", tcp, "cedric-diggory-1", 8080, false}),

		// CNPAdminTierEgressNodePeers: conformance/tests/admin-network-policy-experimental-egress-rules.go, manifest conformance/base/admin_tier/experimental-egress-selector-rules.yaml
		nodePeersCase("CNPAdminTierEgressNodePeers", admin, "admin_tier/experimental-egress-selector-rules.yaml",
			subtest{"Should support an 'allow-egress' rule policy for egress-node-peer", []nodePoke{
				{"harry-potter-1", tcp, "centaur-1", 0, true},
			}},
			subtest{"Should support a 'pass-egress' rule policy for egress-node-peer", []nodePoke{
				{"harry-potter-1", udp, "centaur-1", 2, true},
			}},
			subtest{"Should support a 'deny-egress' rule policy for egress-node-peer", []nodePoke{
				{"harry-potter-1", tcp, "centaur-1", 1, false},
				{"harry-potter-1", udp, "centaur-1", 4, false},
				{"harry-potter-1", sctp, "centaur-1", 6, false},
			}}),

		// CNPAdminTierIngressNamedPort: conformance/tests/admin-network-policy-experimental-ingress-rules.go, manifest conformance/base/admin_tier/standard-ingress-udp-rules.yaml
		namedPortCase("CNPAdminTierIngressNamedPort", admin, ingressUDPManifest, "admin_tier/standard-ingress-udp-rules.yaml", 5, "dns",
			"Should support an 'allow-ingress' policy for named port",
			poke{"harry-potter-0", udp, "cedric-diggory-1", 53, true},
			poke{"harry-potter-1", udp, "cedric-diggory-1", 5353, false}),

		// CNPBaselineTierEgressNamedPort: conformance/tests/baseline-admin-network-policy-experimental-egress-rules.go, manifest conformance/base/baseline_tier/standard-egress-udp-rules.yaml
		namedPortCase("CNPBaselineTierEgressNamedPort", baseline, egressUDPManifest, "baseline_tier/standard-egress-udp-rules.yaml", 3, "dns",
			"Should support an 'allow-egress' policy for named port",
			poke{"cedric-diggory-0", udp, "harry-potter-1", 53, true},
			poke{"cedric-diggory-1", udp, "harry-potter-1", 5353, false}),

		// CNPBaselineTierEgressNodePeers: conformance/tests/baseline-admin-network-policy-experimental-egress-rules.go, manifest conformance/base/baseline_tier/experimental-egress-selector-rules.yaml
		nodePeersCase("CNPBaselineTierEgressNodePeers", baseline, "baseline_tier/experimental-egress-selector-rules.yaml",
			subtest{"Should support an 'allow-egress' rule policy for egress-node-peer", []nodePoke{
				{"harry-potter-0", tcp, "centaur-1", 0, true},
				{"harry-potter-1", tcp, "centaur-1", 1, true},
			}},
			subtest{"Should support a 'deny-egress' rule policy for egress-node-peer", []nodePoke{
				{"harry-potter-1", udp, "centaur-1", 4, false},
				{"harry-potter-1", sctp, "centaur-1", 6, false},
			}}),

		// CNPBaselineTierIngressNamedPort: conformance/tests/baseline-admin-network-policy-experimental-ingress-rules.go, manifest conformance/base/baseline_tier/standard-ingress-tcp-rules.yaml
		namedPortCase("CNPBaselineTierIngressNamedPort", baseline, ingressTCPManifest, "baseline_tier/standard-ingress-tcp-rules.yaml", 3, "web",
			"Should support an 'allow-ingress' policy for named port",
			poke{"cedric-diggory-0", tcp, "harry-potter-1", 80, true},
			poke{"cedric-diggory-1", tcp, "harry-potter-1", 8080, false}),
	}
}
