package conformance

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Generated cases in the style of Cyclonus: policies are drawn from the cross
// product of targets × peers × ports × protocols × policy types, and steps
// between probes change the cluster (create, update, delete policies; relabel
// pods and namespaces). About half of the policies are ClusterNetworkPolicies
// of either tier (priorities from a small set, so equal priorities are common;
// subjects namespaces or pods; Accept, Deny and Pass rules; namespaces, pods
// and, for egress, networks built from pod addresses as peers; ports and
// ranges), mixed with NetworkPolicies. Case k of seed s depends on (s, k)
// alone, so any case can be rerun by itself. Expected tables come from the
// reference evaluator (Oracle), cross-checked by the naive reading of
// semantics.go; the case checks that the cluster agrees with it. (Since
// ClusterNetworkPolicies joined, a seed draws other cases than before.)

// Generate returns n cases for seed.
func Generate(seed uint64, n int) []Case {
	cs := make([]Case, n)
	for k := range n {
		cs[k] = GeneratedCase(seed, k)
	}
	return cs
}

// GeneratedCase returns case k of seed.
func GeneratedCase(seed uint64, k int) Case {
	return Case{
		Name: fmt.Sprintf("generated/%d/%d", seed, k),
		Steps: func(e *Env) []Step {
			g := &gen{e: e, rng: rand.New(rand.NewPCG(seed, uint64(k))), pods: map[PodRef]map[string]string{}, ns: map[string]map[string]string{}}
			for _, p := range e.Pods {
				g.pods[p] = DefaultPodLabels(p.Name)
			}
			for _, ns := range e.Namespaces() {
				g.ns[ns] = e.DefaultNamespaceLabels(ns)
			}
			return g.steps()
		},
	}
}

type gen struct {
	e        *Env
	rng      *rand.Rand
	seq      int
	policies []*networkingv1.NetworkPolicy   // live policies, with namespace
	cnps     []*v1beta1.ClusterNetworkPolicy // live cluster policies
	pods     map[PodRef]map[string]string
	ns       map[string]map[string]string
}

func pick[T any](g *gen, xs ...T) T { return xs[g.rng.IntN(len(xs))] }

func (g *gen) chance(p float64) bool { return g.rng.Float64() < p }

func (g *gen) steps() []Step {
	var out []Step
	first := Step{Name: "create policies"}
	for range 1 + g.rng.IntN(3) {
		first.Actions = append(first.Actions, g.create())
	}
	first.Probes = g.probes()
	out = append(out, first)
	for range g.rng.IntN(3) {
		st := Step{}
		for range 1 + g.rng.IntN(2) {
			st.Actions = append(st.Actions, g.mutate())
		}
		st.Name = fmt.Sprint(st.Actions)
		st.Probes = g.probes()
		out = append(out, st)
	}
	return out
}

// probes picks three of the six port/protocol combinations; every model pod
// serves all of them.
func (g *gen) probes() []Probe {
	var all []Probe
	for _, proto := range ModelProtocols {
		for _, port := range ModelPorts {
			all = append(all, Probe{Port: int(port), Protocol: proto})
		}
	}
	g.rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all[:3]
}

// create draws a NetworkPolicy or a ClusterNetworkPolicy, half and half.
func (g *gen) create() Action {
	g.seq++
	if g.chance(0.5) {
		p := g.clusterPolicy(fmt.Sprintf("gen-cnp-%d", g.seq))
		g.cnps = append(g.cnps, p)
		return CreateCNP(p)
	}
	p := g.policy(fmt.Sprintf("gen-%d", g.seq))
	p.Namespace = g.e.Real(pick(g, ModelNamespaces...))
	g.policies = append(g.policies, p)
	return Create(p.Namespace, p)
}

func (g *gen) mutate() Action {
	for {
		switch g.rng.IntN(9) {
		case 0:
			return g.create()
		case 7: // a cluster policy changes: a new spec, or only its priority
			if len(g.cnps) == 0 {
				continue
			}
			i := g.rng.IntN(len(g.cnps))
			p := g.clusterPolicy(g.cnps[i].Name)
			if g.chance(0.3) {
				p = g.cnps[i].DeepCopy()
				p.Spec.Priority = g.priority()
			}
			g.cnps[i] = p
			return UpdateCNP(p)
		case 8:
			if len(g.cnps) == 0 {
				continue
			}
			i := g.rng.IntN(len(g.cnps))
			p := g.cnps[i]
			g.cnps = slices.Delete(g.cnps, i, i+1)
			return DeleteCNP(p.Name)
		case 1: // update: same name, new spec
			if len(g.policies) == 0 {
				continue
			}
			i := g.rng.IntN(len(g.policies))
			p := g.policy(g.policies[i].Name)
			p.Namespace = g.policies[i].Namespace
			g.policies[i] = p
			return Update(p.Namespace, p)
		case 2:
			if len(g.policies) == 0 {
				continue
			}
			i := g.rng.IntN(len(g.policies))
			p := g.policies[i]
			g.policies = slices.Delete(g.policies, i, i+1)
			return Delete(p.Namespace, p.Name)
		case 3, 4: // relabel a pod: extra labels come and go, and a pod may take another pod's name label
			ref := pick(g, g.e.Pods...)
			l := maps.Clone(g.pods[ref])
			switch g.rng.IntN(4) {
			case 0:
				l["app"] = pick(g, "web", "db")
			case 1:
				delete(l, "app")
			case 2:
				l[PodLabelKey] = pick(g, ModelPods...)
			case 3:
				delete(l, PodLabelKey)
			}
			g.pods[ref] = l
			return PodLabels(ref, l)
		case 5: // relabel a namespace (the name label stays)
			ns := g.e.Real(pick(g, ModelNamespaces...))
			l := maps.Clone(g.ns[ns])
			switch g.rng.IntN(3) {
			case 0:
				l["env"] = pick(g, "prod", "dev")
			case 1:
				delete(l, "env")
			case 2:
				l[NsLabelKey] = pick(g, ModelNamespaces...)
			}
			g.ns[ns] = l
			return NamespaceLabels(ns, l)
		case 6:
			if len(g.policies)+len(g.cnps) == 0 || !g.chance(0.3) {
				continue
			}
			g.policies, g.cnps = nil, nil
			return DeleteAll()
		}
	}
}

// policy draws a policy: target, policy types, and up to two rules per
// direction, each with up to two peers and up to two ports.
func (g *gen) policy(name string) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.PodSelector = *g.podSelector(true)
	ingress, egress := true, true
	switch g.rng.IntN(4) {
	case 0:
		egress = false
	case 1:
		ingress = false
	}
	if ingress {
		p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		for range g.rng.IntN(3) {
			p.Spec.Ingress = append(p.Spec.Ingress, In(g.peers(), g.ports()...))
		}
	}
	if egress {
		p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		for range g.rng.IntN(3) {
			// Named ports with ipBlock peers included: the name resolves on
			// the pod at the destination address, as in Cyclonus and Calico.
			p.Spec.Egress = append(p.Spec.Egress, Out(g.peers(), g.ports()...))
		}
	}
	// Leaving policyTypes out lets the API default it: Ingress, plus Egress
	// when there are egress rules.
	// The engine must default it the same way (the oracle and the packet
	// harness's API server see the same object).
	if g.chance(0.15) {
		p.Spec.PolicyTypes = nil
	}
	return p
}

func (g *gen) podSelector(target bool) *metav1.LabelSelector {
	switch g.rng.IntN(8) {
	case 0:
		return &metav1.LabelSelector{}
	case 1, 2:
		return Sel(PodLabelKey, pick(g, ModelPods...))
	case 3:
		return Expr(PodLabelKey, metav1.LabelSelectorOpIn, pick(g, "a", "b"), pick(g, "b", "c"))
	case 4:
		return Expr(PodLabelKey, metav1.LabelSelectorOpNotIn, pick(g, ModelPods...))
	case 5:
		return Expr("app", pick(g, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist))
	case 6:
		return Sel("app", pick(g, "web", "db"))
	default:
		if target {
			return Sel(PodLabelKey, pick(g, ModelPods...))
		}
		return &metav1.LabelSelector{MatchLabels: map[string]string{PodLabelKey: pick(g, ModelPods...)}, MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	}
}

func (g *gen) nsSelector() *metav1.LabelSelector {
	switch g.rng.IntN(6) {
	case 0:
		return &metav1.LabelSelector{}
	case 1:
		return Sel(NsLabelKey, pick(g, ModelNamespaces...))
	case 2:
		return Sel(NamespaceLabelKey, g.e.Real(pick(g, ModelNamespaces...)))
	case 3:
		return Expr(NamespaceLabelKey, metav1.LabelSelectorOpNotIn, g.e.Real(pick(g, ModelNamespaces...)))
	case 4:
		return Expr("env", pick(g, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist))
	default:
		return Expr("env", metav1.LabelSelectorOpIn, pick(g, "prod", "dev"))
	}
}

// peers returns nil (all peers) or one or two peers.
func (g *gen) peers() []networkingv1.NetworkPolicyPeer {
	if g.chance(0.2) {
		return nil
	}
	var out []networkingv1.NetworkPolicyPeer
	for range 1 + g.rng.IntN(2) {
		switch g.rng.IntN(5) {
		case 0:
			out = append(out, PodPeer(g.podSelector(false)))
		case 1:
			out = append(out, NsPeer(g.nsSelector()))
		case 2, 3:
			out = append(out, NsPodPeer(g.nsSelector(), g.podSelector(false)))
		default:
			out = append(out, g.ipBlock())
		}
	}
	return out
}

// ipBlock draws a CIDR around a model pod: the pod itself, or a large block
// with the pod (and maybe another) carved out.
func (g *gen) ipBlock() networkingv1.NetworkPolicyPeer {
	ip := g.e.PodIP(pick(g, g.e.Pods...))
	switch g.rng.IntN(3) {
	case 0:
		return CIDRPeer(HostPrefix(ip))
	case 1:
		return CIDRPeer(LargePrefix(ip), HostPrefix(ip))
	default:
		other := g.e.PodIP(pick(g, g.e.Pods...))
		if other.BitLen() != ip.BitLen() || other == ip {
			return CIDRPeer(LargePrefix(ip), HostPrefix(ip))
		}
		return CIDRPeer(LargePrefix(ip), HostPrefix(ip), HostPrefix(other))
	}
}

// ports returns nil (all ports) or one or two port entries.
func (g *gen) ports() []networkingv1.NetworkPolicyPort {
	if g.chance(0.3) {
		return nil
	}
	var out []networkingv1.NetworkPolicyPort
	for range 1 + g.rng.IntN(2) {
		var proto *corev1.Protocol
		if !g.chance(0.25) { // nil means TCP
			proto = Proto(pick(g, ModelProtocols...))
		}
		switch g.rng.IntN(5) {
		case 0, 1:
			out = append(out, PortNum(proto, pick(g, ModelPorts...)))
		case 2:
			nameProto := corev1.ProtocolTCP
			if proto != nil {
				nameProto = *proto
			}
			// Mostly names that exist for this protocol; sometimes a name of
			// another protocol or no such name at all (must allow nothing).
			name := PortName(pick(g, ModelPorts...), nameProto)
			if g.chance(0.2) {
				name = pick(g, "serve-80-udp", "serve-81-sctp", "no-such-port")
			}
			out = append(out, PortNamed(proto, name))
		case 3:
			out = append(out, PortRange(proto, 80, pick(g, int32(80), 81, 1000)))
		default:
			out = append(out, AnyPort(pick(g, ModelProtocols...)))
		}
	}
	return out
}

// clusterPolicy draws a ClusterNetworkPolicy: tier, priority, subject, and up
// to three rules per direction, each with one or two peers and maybe ports.
func (g *gen) clusterPolicy(name string) *v1beta1.ClusterNetworkPolicy {
	subject := SubjectNamespaces(g.nsSelector())
	if g.chance(0.5) {
		subject = SubjectPods(g.nsSelector(), g.podSelector(true))
	}
	p := NewCNP(name, pick(g, v1beta1.AdminTier, v1beta1.BaselineTier), g.priority(), subject)
	for range g.rng.IntN(4) {
		p.Spec.Ingress = append(p.Spec.Ingress, CNPIn("", g.action(), g.cnpPeers(false), g.cnpProtocols()...))
	}
	for range g.rng.IntN(4) {
		p.Spec.Egress = append(p.Spec.Egress, CNPOut("", g.action(), g.cnpPeers(true), g.cnpProtocols()...))
	}
	return p
}

// priority comes from a small set, so that policies often share one (their
// order is then nftwarden's documented one, by name).
func (g *gen) priority() int32 { return pick(g, int32(0), 1, 1, 2, 1000) }

func (g *gen) action() v1beta1.ClusterNetworkPolicyRuleAction { return pick(g, Accept, Deny, Pass) }

// cnpPeers returns one or two peers; networks (egress only) are built from
// pod addresses like the ipBlocks of NetworkPolicies.
func (g *gen) cnpPeers(egress bool) []CNPPeer {
	var out []CNPPeer
	for range 1 + g.rng.IntN(2) {
		switch g.rng.IntN(5) {
		case 0, 1:
			out = append(out, NsCNPPeer(g.nsSelector()))
		case 2, 3:
			out = append(out, PodsCNPPeer(g.nsSelector(), g.podSelector(false)))
		default:
			if !egress {
				out = append(out, NsCNPPeer(g.nsSelector()))
				continue
			}
			ip := g.e.PodIP(pick(g, g.e.Pods...))
			nets := []netip.Prefix{pick(g, HostPrefix(ip), LargePrefix(ip), netip.PrefixFrom(ip, ip.BitLen()-4).Masked())}
			if g.chance(0.3) {
				nets = append(nets, HostPrefix(g.e.PodIP(pick(g, g.e.Pods...))))
			}
			out = append(out, NetsCNPPeer(nets...))
		}
	}
	return out
}

// cnpProtocols returns nil (every port of every protocol) or one or two
// entries: a protocol with all its ports (the range 1-65535: the CRD rejects a
// protocol without destinationPort), one port, or a range.
func (g *gen) cnpProtocols() []v1beta1.ClusterNetworkPolicyProtocol {
	if g.chance(0.35) {
		return nil
	}
	var out []v1beta1.ClusterNetworkPolicyProtocol
	for range 1 + g.rng.IntN(2) {
		proto := pick(g, ModelProtocols...)
		switch g.rng.IntN(4) {
		case 0:
			out = append(out, CNPPortRange(proto, 1, 65535))
		case 1, 2:
			out = append(out, CNPPort(proto, pick(g, ModelPorts...)))
		default:
			out = append(out, CNPPortRange(proto, pick(g, int32(1), 80), pick(g, int32(81), 1000))) // the API wants start < end
		}
	}
	return out
}
