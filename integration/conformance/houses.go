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
// ports too (HousePorts), so ports and ranges are upstream's. The fifth
// namespace, forbidden-forrest (hostNetwork pods), is used only by the
// experimental node-peer cases, which are not ported.

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
