package conformance

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// The topology of the network-policy-api conformance suite
// (conformance/base/manifests.yaml) mapped onto ours. Upstream has four
// namespaces network-policy-conformance-<house>, each with a StatefulSet of
// two pods <character>-0 and <character>-1; namespaces and pods carry the
// label conformance-house: <house>, pods also statefulset.kubernetes.io/pod-name.
//
//	upstream house (namespace)   ours   pods <character>-0, -1
//	gryffindor                   x      harry-potter     -> x/a, x/b
//	slytherin                    y      draco-malfoy     -> y/a, y/b
//	hufflepuff                   z      cedric-diggory   -> z/a, z/b
//	ravenclaw                    w      luna-lovegood    -> w/a, w/b
//
// A ported case's first step gives our namespaces and pods upstream's labels
// (keeping ours), so the policies keep upstream's selectors verbatim; only
// kubernetes.io/metadata.name values name our namespaces. Upstream's servers
// listen on TCP 80, 8080, UDP 53, 5353 and SCTP 9003, 9005: ours serve those
// ports too (HousePorts), so ports and ranges are upstream's, and name TCP 80
// "web" and UDP 53 "dns" as upstream's do (HouseNamedPorts).
//
// The fifth namespace, forbidden-forrest, holds upstream's StatefulSet centaur
// of two hostNetwork pods, centaur-0 and -1, whose servers listen on the
// node's address at HostNetworkPorts; only the experimental node-peer tests
// use them, and only centaur-1. Ours are servers in the nodes' own network
// namespaces (NodePoke): centaur-1 is the one on node 0, centaur-0 the one on
// node 1, the other node than harry-potter-<i>'s (x/a on node 0, x/b on node
// 1). Upstream leaves placement to the scheduler; this one makes every denied
// poke (all from harry-potter-1) cross nodes, because a pod's traffic to its
// own node never passes the forward hook and is not filtered
// (enforcer/PROGRAM.md).

// house is one upstream namespace and the model namespace standing for it.
type house struct{ name, ns, character string }

var hogwarts = []house{
	{"gryffindor", "x", "harry-potter"},
	{"slytherin", "y", "draco-malfoy"},
	{"hufflepuff", "z", "cedric-diggory"},
	{"ravenclaw", HouseNamespace, "luna-lovegood"},
}

// Upstream's label keys.
const (
	houseLabel   = "conformance-house"
	podNameLabel = "statefulset.kubernetes.io/pod-name"
	roleLabel    = "conformance-role" // set and removed by the pod-selector cases
)

// HousePods are the pods of every ported ClusterNetworkPolicy case.
var HousePods = []string{"x/a", "x/b", "y/a", "y/b", "z/a", "z/b", HouseNamespace + "/a", HouseNamespace + "/b"}

// houses is a ported case's view of the mapped topology; it follows the pod
// labels the case sets.
type houses struct {
	e      *Env
	labels map[PodRef]map[string]string
}

func newHouses(e *Env) *houses {
	h := &houses{e: e, labels: map[PodRef]map[string]string{}}
	for _, hs := range hogwarts {
		for i, name := range []string{"a", "b"} {
			l := DefaultPodLabels(name)
			l[houseLabel] = hs.name
			l[podNameLabel] = fmt.Sprintf("%s-%d", hs.character, i)
			h.labels[e.Pod(hs.ns, name)] = l
		}
	}
	return h
}

func houseOf(name string) house {
	i := slices.IndexFunc(hogwarts, func(h house) bool { return h.name == name })
	if i < 0 {
		panic(fmt.Sprintf("unknown house %q", name))
	}
	return hogwarts[i]
}

// pod maps upstream's pod name ("luna-lovegood-0") to ours (w/a).
func (h *houses) pod(name string) PodRef {
	for _, hs := range hogwarts {
		if rest, ok := strings.CutPrefix(name, hs.character+"-"); ok && (rest == "0" || rest == "1") {
			return h.e.Pod(hs.ns, map[string]string{"0": "a", "1": "b"}[rest])
		}
	}
	panic(fmt.Sprintf("unknown upstream pod %q", name))
}

// namespace is the real name of our namespace for house.
func (h *houses) namespace(houseName string) string { return h.e.Real(houseOf(houseName).ns) }

// byName selects house's namespace by its name label, as upstream's
// kubernetes.io/metadata.name: network-policy-conformance-<house>.
func (h *houses) byName(houseName string) *metav1.LabelSelector {
	return Sel(NamespaceLabelKey, h.namespace(houseName))
}

// byHouse is upstream's conformance-house: <house> selector (namespaces or pods).
func byHouse(houseName string) *metav1.LabelSelector { return Sel(houseLabel, houseName) }

// labelled is the first step of every ported case: upstream's labels on our
// namespaces and pods (conformance/base/manifests.yaml), then the manifest's
// policies.
func (h *houses) labelled(manifest string, create ...Action) Step {
	var actions []Action
	for _, hs := range hogwarts {
		actions = append(actions, h.e.AddNamespaceLabel(h.e.Real(hs.ns), houseLabel, hs.name))
	}
	for _, p := range h.e.Pods {
		actions = append(actions, PodLabels(p, h.labels[p]))
	}
	return Step{Name: manifest, Actions: append(actions, create...)}
}

// setPodLabel is upstream's SetPodLabel, removePodLabel its RemovePodLabel.
func (h *houses) setPodLabel(pod, key, value string) Action {
	ref := h.pod(pod)
	h.labels[ref][key] = value
	return PodLabels(ref, h.labels[ref])
}

func (h *houses) removePodLabel(pod, key string) Action {
	ref := h.pod(pod)
	delete(h.labels[ref], key)
	return PodLabels(ref, h.labels[ref])
}

// setNamespaceLabels is upstream's namespace.SetLabels + PatchNamespace: all
// labels replaced (the API server keeps the name label).
func (h *houses) setNamespaceLabels(houseName string, l map[string]string) Action {
	return NamespaceLabels(h.namespace(houseName), l)
}

// HostNetworkPorts are upstream's suite.HostNetworkPorts at their default
// (HostNetworkPortRangeStart 34345, eight ports), which its experimental
// manifests index as {{ index .HostNetworkPorts i }}.
var HostNetworkPorts = [8]int32{34345, 34346, 34347, 34348, 34349, 34350, 34351, 34352}

// NodeServerPorts are the ports centaur's containers listen on
// (conformance/base/manifests.yaml): TCP 0 and 1 (serve-hostname), UDP 2 and
// 4 with their netexec HTTP ports TCP 3 and 5, SCTP 6 and 7 (porter).
var NodeServerPorts = map[corev1.Protocol][]int32{
	corev1.ProtocolTCP:  {HostNetworkPorts[0], HostNetworkPorts[1], HostNetworkPorts[3], HostNetworkPorts[5]},
	corev1.ProtocolUDP:  {HostNetworkPorts[2], HostNetworkPorts[4]},
	corev1.ProtocolSCTP: {HostNetworkPorts[6], HostNetworkPorts[7]},
}

// centaurNode maps upstream's hostNetwork server pods to our nodes.
var centaurNode = map[string]int{"centaur-0": 1, "centaur-1": 0}

// nodePoke is one upstream PokeServer to a centaur pod's address (its node's)
// at HostNetworkPorts[portIndex].
type nodePoke struct {
	client    string
	proto     corev1.Protocol
	server    string
	portIndex int
	allowed   bool
}

// nodePokes turns upstream's PokeServer calls to centaur into NodePokes.
func (h *houses) nodePokes(ps ...nodePoke) []NodePoke {
	var out []NodePoke
	for _, p := range ps {
		n, ok := centaurNode[p.server]
		if !ok {
			panic(fmt.Sprintf("unknown hostNetwork pod %q", p.server))
		}
		out = append(out, NodePoke{From: h.pod(p.client), Node: n, Port: int(HostNetworkPorts[p.portIndex]), Protocol: p.proto, Allowed: p.allowed})
	}
	return out
}

// poke is one upstream PokeServer: client pod, protocol, server pod, port,
// whether the connection must succeed.
type poke struct {
	client  string
	proto   corev1.Protocol
	server  string
	port    int
	allowed bool
}

// pokes turns upstream's PokeServer calls into probes, one per port and
// protocol, each checking only the flows upstream pokes.
func (h *houses) pokes(ps ...poke) []Probe {
	var out []Probe
	for _, p := range ps {
		i := slices.IndexFunc(out, func(pr Probe) bool { return pr.Port == p.port && pr.Protocol == p.proto })
		if i < 0 {
			out = append(out, Probe{Port: p.port, Protocol: p.proto, Reach: NewPokes(h.e.Pods)})
			i = len(out) - 1
		}
		from, to := h.pod(p.client), h.pod(p.server)
		if exp, known := out[i].Reach.Expected.Get(from, to); known && exp != p.allowed {
			panic(fmt.Sprintf("pokes: %s -> %s %s/%d expected both ways in one step", p.client, p.server, p.proto, p.port))
		}
		out[i].Reach.Expect(from, to, p.allowed)
	}
	return out
}

// nsRule is one rule of a manifest whose peer is one house's namespace by
// name, the form of most upstream manifests.
type nsRule struct {
	name      string
	action    v1beta1.ClusterNetworkPolicyRuleAction
	house     string
	protocols []v1beta1.ClusterNetworkPolicyProtocol
}

// rules appends nsRules in direction dir.
func (h *houses) rules(dir networkingv1.PolicyType, rs ...nsRule) CNPOption {
	return func(p *v1beta1.ClusterNetworkPolicy) {
		for _, r := range rs {
			peers := CNPPeers(NsCNPPeer(h.byName(r.house)))
			if dir == networkingv1.PolicyTypeIngress {
				CNPIngress(CNPIn(r.name, r.action, peers, r.protocols...))(p)
			} else {
				CNPEgress(CNPOut(r.name, r.action, peers, r.protocols...))(p)
			}
		}
	}
}

// protocolRules are the rules of the standard-{ingress,egress}-{tcp,udp,sctp}
// manifests, named as upstream names them: everything from (to) house a is
// accepted, denied, passed (in that order); b is denied, then passed, at port
// denyPort; c is accepted at port acceptPort and denied everything else. The
// Baseline tier's manifests have no Pass rules.
func protocolRules(tier v1beta1.Tier, dir networkingv1.PolicyType, proto corev1.Protocol, a, b string, denyPort int32, c string, acceptPort int32) []nsRule {
	way := "to"
	if dir == networkingv1.PolicyTypeIngress {
		way = "from"
	}
	verb := map[v1beta1.ClusterNetworkPolicyRuleAction]string{Accept: "allow", Deny: "deny", Pass: "pass"}
	everything := func(act v1beta1.ClusterNetworkPolicyRuleAction, hs string) nsRule {
		return nsRule{fmt.Sprintf("%s-%s-%s-everything", verb[act], way, hs), act, hs, nil}
	}
	atPort := func(act v1beta1.ClusterNetworkPolicyRuleAction, hs string, port int32) nsRule {
		return nsRule{fmt.Sprintf("%s-%s-%s-at-port-%d", verb[act], way, hs, port), act, hs, cnpPorts(CNPPort(proto, port))}
	}
	rs := []nsRule{everything(Accept, a), everything(Deny, a)}
	if tier == v1beta1.AdminTier {
		rs = append(rs, everything(Pass, a))
	}
	rs = append(rs, atPort(Deny, b, denyPort))
	if tier == v1beta1.AdminTier {
		rs = append(rs, atPort(Pass, b, denyPort))
	}
	return append(rs, atPort(Accept, c, acceptPort), nsRule{fmt.Sprintf("deny-%s-%s-everything-else", way, c), Deny, c, nil})
}

func cnpPorts(p ...v1beta1.ClusterNetworkPolicyProtocol) []v1beta1.ClusterNetworkPolicyProtocol {
	return p
}

// swap is upstream's rule reordering: mutate.Spec.<dir>[i], [j] = [j], [i].
func swap[T any](rules []T, i, j int) { rules[i], rules[j] = rules[j], rules[i] }
