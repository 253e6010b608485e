package conformance

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// A second, deliberately naive reading of NetworkPolicy v1, written straight
// from the API documentation over the objects of a world: no indexes, no
// compilation, every policy checked for every flow. Generated cases take their
// expectations from the engine's evaluator; this reading cross-checks that
// evaluator so that a semantic bug shared by the evaluator and the compiler
// (which agree with each other by construction) still shows up.

// naiveAllowed decides a pod-to-pod flow to the destination's primary address.
func (w *world) naiveAllowed(from, to PodRef, port int, proto corev1.Protocol) (bool, error) {
	eg, err := w.naiveDirection(from, from, to, port, proto, networkingv1.PolicyTypeEgress)
	if err != nil || !eg {
		return false, err
	}
	return w.naiveDirection(to, from, to, port, proto, networkingv1.PolicyTypeIngress)
}

// naiveDirection: is subject (the source for egress, the destination for
// ingress) isolated in dir, and if so does some rule of a selecting policy
// admit the other end?
func (w *world) naiveDirection(subject, from, to PodRef, port int, proto corev1.Protocol, dir networkingv1.PolicyType) (bool, error) {
	isolated := false
	for _, p := range w.policies {
		if p.Namespace != subject.Namespace {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			return false, fmt.Errorf("policy %s/%s: %w", p.Namespace, p.Name, err)
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
					return ok, err
				}
			}
		} else {
			for _, r := range p.Spec.Egress {
				if ok, err := w.naiveRule(p.Namespace, r.To, r.Ports, other, to, port, proto); ok || err != nil {
					return ok, err
				}
			}
		}
	}
	return !isolated, nil
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
