package conformance

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// A second, deliberately naive reading of NetworkPolicy v1 and
// ClusterNetworkPolicy v1beta1, written straight from the API documentation
// over the objects of a world: no indexes, no compilation, every policy
// checked for every flow. Generated cases take their expectations from the
// engine's evaluator; this reading cross-checks that evaluator so that a
// semantic bug shared by the evaluator and the compiler (which agree with each
// other by construction) still shows up.

// naiveAllowed decides a pod-to-pod flow to the destination's primary address.
func (w *world) naiveAllowed(from, to PodRef, port int, proto corev1.Protocol) (bool, error) {
	eg, err := w.naiveTiers(from, from, to, port, proto, networkingv1.PolicyTypeEgress)
	if err != nil || !eg {
		return false, err
	}
	return w.naiveTiers(to, from, to, port, proto, networkingv1.PolicyTypeIngress)
}

// naiveTiers decides one direction for subject (the source for egress, the
// destination for ingress): the Admin tier's first matching rule, unless it
// passes or nothing matches; then NetworkPolicy, if one isolates the subject;
// then the Baseline tier's first matching rule; then allowed.
func (w *world) naiveTiers(subject, from, to PodRef, port int, proto corev1.Protocol, dir networkingv1.PolicyType) (bool, error) {
	action, err := w.naiveTier(v1beta1.AdminTier, subject, from, to, port, proto, dir)
	if err != nil || action == Accept || action == Deny {
		return action == Accept, err
	}
	isolated, allowed, err := w.naiveDirection(subject, from, to, port, proto, dir)
	if err != nil || isolated {
		return allowed, err
	}
	action, err = w.naiveTier(v1beta1.BaselineTier, subject, from, to, port, proto, dir)
	return action != Deny, err
}

// naiveTier returns the action of the first rule, in precedence order (lower
// priority first; equal priorities by name, the order nftwarden documents
// where the API leaves it undefined), of the tier's policies selecting
// subject that matches the flow; "" when none does.
func (w *world) naiveTier(tier v1beta1.Tier, subject, from, to PodRef, port int, proto corev1.Protocol, dir networkingv1.PolicyType) (v1beta1.ClusterNetworkPolicyRuleAction, error) {
	cnps := slices.SortedFunc(maps.Values(w.cnps), func(a, b *v1beta1.ClusterNetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Spec.Priority, b.Spec.Priority), strings.Compare(a.Name, b.Name))
	})
	other := to
	if dir == networkingv1.PolicyTypeIngress {
		other = from
	}
	for _, p := range cnps {
		if p.Spec.Tier != tier {
			continue
		}
		selected, err := w.naiveSelects(p.Spec.Subject.Namespaces, p.Spec.Subject.Pods, subject)
		if err != nil {
			return "", fmt.Errorf("cluster policy %s subject: %w", p.Name, err)
		}
		if !selected {
			continue
		}
		type rule struct {
			action    v1beta1.ClusterNetworkPolicyRuleAction
			peers     []v1beta1.ClusterNetworkPolicyEgressPeer
			protocols []v1beta1.ClusterNetworkPolicyProtocol
		}
		var rules []rule
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range p.Spec.Ingress {
				var peers []v1beta1.ClusterNetworkPolicyEgressPeer
				for _, f := range r.From {
					peers = append(peers, v1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods})
				}
				rules = append(rules, rule{r.Action, peers, r.Protocols})
			}
		} else {
			for _, r := range p.Spec.Egress {
				rules = append(rules, rule{r.Action, r.To, r.Protocols})
			}
		}
		for _, r := range rules {
			if !naiveCNPPorts(r.protocols, port, proto) {
				continue
			}
			for _, peer := range r.peers {
				ok, err := w.naiveCNPPeer(peer, other)
				if err != nil {
					return "", fmt.Errorf("cluster policy %s: %w", p.Name, err)
				}
				if ok {
					return r.action, nil
				}
			}
		}
	}
	return "", nil
}

// naiveSelects: a namespaces selector takes every pod of the namespaces it
// selects; a pods selector the pods it selects in the namespaces its
// namespace selector selects.
func (w *world) naiveSelects(namespaces *metav1.LabelSelector, pods *v1beta1.NamespacedPod, pod PodRef) (bool, error) {
	nsSel, podSel := namespaces, (*metav1.LabelSelector)(nil)
	if pods != nil {
		nsSel, podSel = &pods.NamespaceSelector, &pods.PodSelector
	}
	if nsSel == nil {
		return false, fmt.Errorf("neither namespaces nor pods")
	}
	ok, err := naiveMatch(nsSel, w.nsLabels[pod.Namespace])
	if err != nil || !ok || podSel == nil {
		return ok, err
	}
	return naiveMatch(podSel, w.pods[pod])
}

func naiveMatch(sel *metav1.LabelSelector, l map[string]string) (bool, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	return s.Matches(labels.Set(l)), nil
}

// naiveCNPPeer: networks match the other end's primary address.
func (w *world) naiveCNPPeer(peer v1beta1.ClusterNetworkPolicyEgressPeer, other PodRef) (bool, error) {
	if len(peer.Networks) > 0 {
		for _, n := range peer.Networks {
			cidr, err := netip.ParsePrefix(string(n))
			if err != nil {
				return false, fmt.Errorf("network %q: %w", n, err)
			}
			if cidr.Contains(w.ips[other][0]) {
				return true, nil
			}
		}
		return false, nil
	}
	return w.naiveSelects(peer.Namespaces, peer.Pods, other)
}

// naiveCNPPorts: no protocols match everything; otherwise one entry of the
// flow's protocol whose destination port (none: all) holds the port.
func naiveCNPPorts(protocols []v1beta1.ClusterNetworkPolicyProtocol, port int, proto corev1.Protocol) bool {
	if len(protocols) == 0 {
		return true
	}
	for _, p := range protocols {
		var dp *v1beta1.Port
		switch {
		case p.TCP != nil && proto == corev1.ProtocolTCP:
			dp = p.TCP.DestinationPort
		case p.UDP != nil && proto == corev1.ProtocolUDP:
			dp = p.UDP.DestinationPort
		case p.SCTP != nil && proto == corev1.ProtocolSCTP:
			dp = p.SCTP.DestinationPort
		default:
			continue
		}
		switch {
		case dp == nil:
			return true
		case dp.Range != nil && int(dp.Range.Start) <= port && port <= int(dp.Range.End):
			return true
		case dp.Range == nil && int(dp.Number) == port:
			return true
		}
	}
	return false
}

// naiveDirection: is subject (the source for egress, the destination for
// ingress) isolated in dir by a NetworkPolicy, and if so does some rule of a
// selecting policy admit the other end?
func (w *world) naiveDirection(subject, from, to PodRef, port int, proto corev1.Protocol, dir networkingv1.PolicyType) (isolated, allowed bool, err error) {
	for _, p := range w.policies {
		if p.Namespace != subject.Namespace {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			return false, false, fmt.Errorf("policy %s/%s: %w", p.Namespace, p.Name, err)
		}
		if !sel.Matches(labels.Set(w.pods[subject])) || !hasType(p, dir) {
			continue
		}
		isolated = true
		other := to
		if dir == networkingv1.PolicyTypeIngress {
			other = from
		}
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range p.Spec.Ingress {
				if ok, err := w.naiveRule(p.Namespace, r.From, r.Ports, other, to, port, proto); ok || err != nil {
					return true, ok, err
				}
			}
		} else {
			for _, r := range p.Spec.Egress {
				if ok, err := w.naiveRule(p.Namespace, r.To, r.Ports, other, to, port, proto); ok || err != nil {
					return true, ok, err
				}
			}
		}
	}
	return isolated, !isolated, nil
}

// hasType applies the API server's default: Ingress always, Egress when the
// policy has egress rules.
func hasType(p *networkingv1.NetworkPolicy, t networkingv1.PolicyType) bool {
	types := p.Spec.PolicyTypes
	if len(types) == 0 {
		types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(p.Spec.Egress) > 0 {
			types = append(types, networkingv1.PolicyTypeEgress)
		}
	}
	for _, x := range types {
		if x == t {
			return true
		}
	}
	return false
}

// naiveRule: peers match the other end, and ports match the flow (named ports
// resolve on the destination pod, which serves them).
func (w *world) naiveRule(policyNS string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, other, dst PodRef, port int, proto corev1.Protocol) (bool, error) {
	if len(ports) > 0 {
		matched := false
		for _, pp := range ports {
			if naivePort(pp, port, proto) {
				matched = true
				break
			}
		}
		if !matched {
			return false, nil
		}
	}
	if len(peers) == 0 {
		return true, nil
	}
	for _, peer := range peers {
		ok, err := w.naivePeer(policyNS, peer, other)
		if ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

func naivePort(pp networkingv1.NetworkPolicyPort, port int, proto corev1.Protocol) bool {
	want := corev1.ProtocolTCP
	if pp.Protocol != nil {
		want = *pp.Protocol
	}
	if want != proto {
		return false
	}
	if pp.Port == nil {
		return true
	}
	if pp.Port.Type == 1 { // string: a named port of the model servers
		for _, cp := range ContainerPorts() {
			if cp.Name == pp.Port.StrVal && cp.Protocol == proto && int(cp.ContainerPort) == port {
				return true
			}
		}
		return false
	}
	lo, hi := int(pp.Port.IntVal), int(pp.Port.IntVal)
	if pp.EndPort != nil {
		hi = int(*pp.EndPort)
	}
	return lo <= port && port <= hi
}

func (w *world) naivePeer(policyNS string, peer networkingv1.NetworkPolicyPeer, other PodRef) (bool, error) {
	if peer.IPBlock != nil {
		cidr, err := netip.ParsePrefix(peer.IPBlock.CIDR)
		if err != nil {
			return false, fmt.Errorf("ipBlock %q: %w", peer.IPBlock.CIDR, err)
		}
		ip := w.ips[other][0]
		if !cidr.Contains(ip) {
			return false, nil
		}
		for _, e := range peer.IPBlock.Except {
			ex, err := netip.ParsePrefix(e)
			if err != nil {
				return false, fmt.Errorf("except %q: %w", e, err)
			}
			if ex.Contains(ip) {
				return false, nil
			}
		}
		return true, nil
	}
	if peer.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
		if err != nil {
			return false, err
		}
		if !sel.Matches(labels.Set(w.nsLabels[other.Namespace])) {
			return false, nil
		}
	} else if other.Namespace != policyNS {
		return false, nil
	}
	if peer.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
		if err != nil {
			return false, err
		}
		return sel.Matches(labels.Set(w.pods[other])), nil
	}
	return true, nil
}
