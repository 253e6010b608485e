package enforcer

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// This file is the reference evaluator. It reads the cluster model and the
// policies as written, and never the compiled state, so that tests can hold the
// compiler against it. Keep it simple and literal rather than fast.

// decide evaluates a flow. The caller holds the engine lock.
func decide(m *model, f Flow) Decision {
	src, dst := podAt(m, f.Src), podAt(m, f.Dst)
	var d Decision
	if src != nil {
		d.Egress = decideDirection(m, dirEgress, src, dst, f)
	} else {
		d.Egress.Allowed = true
	}
	if dst != nil {
		d.Ingress = decideDirection(m, dirIngress, dst, src, f)
	} else {
		d.Ingress.Allowed = true
	}
	d.Allowed = d.Egress.Allowed && d.Ingress.Allowed
	d.Reason = reason(d)
	return d
}

// podAt is the active pod owning an address (the lowest ID if several claim it).
func podAt(m *model, a netip.Addr) *podRecord {
	if !a.IsValid() {
		return nil
	}
	var best *podRecord
	for _, p := range m.podsByIP(a.Unmap()) {
		if p.active() && (best == nil || p.ID < best.ID) {
			best = p
		}
	}
	return best
}

// decideDirection evaluates one direction for the pod it concerns (the source
// for egress, the destination for ingress); other is the pod at the far end.
func decideDirection(m *model, dir int, pod, other *podRecord, f Flow) DirectionDecision {
	dd := DirectionDecision{Pod: pod.ID}
	var isolating, allowing []string
	for _, pr := range m.policiesInNamespace(pod.Namespace()) {
		spec := &pr.Spec
		ingress, egress := policyTypes(spec)
		if (dir == dirIngress && !ingress) || (dir == dirEgress && !egress) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&spec.PodSelector)
		validSel := err == nil
		if validSel && !sel.Matches(pod.Labels) {
			continue
		}
		// An invalid podSelector selects every pod of its namespace and allows nothing.
		isolating = append(isolating, pr.ID)
		if !validSel {
			continue
		}
		if policyAllows(m, pr, dir, pod, other, f) {
			allowing = append(allowing, pr.ID)
		}
	}
	sort.Strings(isolating)
	sort.Strings(allowing)
	dd.Isolated = len(isolating) > 0
	switch {
	case !dd.Isolated:
		dd.Allowed = true
	case len(allowing) > 0:
		dd.Allowed = true
		dd.Policies = allowing
	default:
		dd.Policies = isolating
	}
	return dd
}

func policyAllows(m *model, pr *policyRecord, dir int, pod, other *podRecord, f Flow) bool {
	// The far address and the pod whose named ports count: for ingress the
	// destination is the target pod itself, for egress it is the peer.
	far, portPod := f.Src, pod
	if dir == dirEgress {
		far, portPod = f.Dst, other
	}
	type rule struct {
		peers []networkingv1.NetworkPolicyPeer
		ports []networkingv1.NetworkPolicyPort
	}
	var rules []rule
	if dir == dirIngress {
		for _, r := range pr.Spec.Ingress {
			rules = append(rules, rule{r.From, r.Ports})
		}
	} else {
		for _, r := range pr.Spec.Egress {
			rules = append(rules, rule{r.To, r.Ports})
		}
	}
	for _, r := range rules {
		// Peer matches by kind, which matters for egress named ports: a
		// selector peer resolves the name on the peer pod; no peers ("any")
		// or an ipBlock, on whichever pod holds the destination address.
		anyOK := len(r.peers) == 0
		podOK, blockOK := false, false
		for i := range r.peers {
			isPod, ok := peerMatches(m, pr.Namespace, &r.peers[i], far, other)
			switch {
			case ok && isPod:
				podOK = true
			case ok:
				blockOK = true
			}
		}
		if !anyOK && !podOK && !blockOK {
			continue
		}
		if len(r.ports) == 0 {
			return true
		}
		for _, p := range r.ports {
			numeric, named := portMatches(p, portPod, f)
			if numeric || (named && (dir == dirIngress || podOK)) {
				return true
			}
			if dir == dirEgress && (anyOK || blockOK) && namedOnAnyPod(m, p, f) {
				return true
			}
		}
	}
	return false
}

// namedOnAnyPod reports whether a named port entry matches the flow on some
// active pod at the destination address (usually one; several during IP reuse).
func namedOnAnyPod(m *model, p networkingv1.NetworkPolicyPort, f Flow) bool {
	if !f.Dst.IsValid() {
		return false
	}
	for _, pod := range m.podsByIP(f.Dst.Unmap()) {
		if pod.active() {
			if _, named := portMatches(p, pod, f); named {
				return true
			}
		}
	}
	return false
}

// peerMatches reports whether the far end matches one peer, and whether the peer
// is a pod peer (selectors) rather than an ipBlock. Invalid peers match nothing.
func peerMatches(m *model, policyNS string, p *networkingv1.NetworkPolicyPeer, far netip.Addr, other *podRecord) (isPod, ok bool) {
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			return false, false
		}
		return false, ipBlockContains(p.IPBlock, far)
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return true, false
	}
	if other == nil {
		return true, false
	}
	if p.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		if err != nil || !sel.Matches(other.Labels) {
			return true, false
		}
	}
	if p.NamespaceSelector == nil {
		return true, other.Namespace() == policyNS
	}
	sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
	if err != nil {
		return true, false
	}
	ns := m.namespace(other.Namespace())
	return true, ns != nil && sel.Matches(ns.Labels)
}

// ipBlockContains checks an address against a cidr and its excepts; a malformed
// block contains nothing.
func ipBlockContains(b *networkingv1.IPBlock, a netip.Addr) bool {
	cidr, err := netip.ParsePrefix(strings.TrimSpace(b.CIDR))
	if err != nil || cidr.Addr().Is4In6() {
		return false
	}
	cidr = cidr.Masked()
	inExcept := false
	for _, s := range b.Except {
		e, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return false
		}
		e = e.Masked()
		// Excepts must lie inside the cidr; otherwise the block is invalid.
		if e.Addr().Is4() != cidr.Addr().Is4() || e.Bits() < cidr.Bits() || !cidr.Contains(e.Addr()) {
			return false
		}
		if e.Contains(a.Unmap()) {
			inExcept = true
		}
	}
	return cidr.Contains(a.Unmap()) && !inExcept
}

// portMatches reports whether a port entry matches by number (or protocol only)
// or by name against portPod's named ports. Invalid entries match nothing.
func portMatches(p networkingv1.NetworkPolicyPort, portPod *podRecord, f Flow) (numeric, named bool) {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	fproto := f.Protocol
	if fproto == "" {
		fproto = corev1.ProtocolTCP
	}
	if _, ok := protoNumber(proto); !ok || proto != fproto && !(proto == "" && fproto == corev1.ProtocolTCP) {
		return false, false
	}
	if p.Port == nil {
		return p.EndPort == nil, false
	}
	if p.Port.Type == intstr.String {
		if p.EndPort != nil || p.Port.StrVal == "" || portPod == nil {
			return false, false
		}
		for _, c := range portPod.Ports {
			if c.Name.Value() == p.Port.StrVal && c.Port == f.Port {
				if pn, _ := protoNumber(proto); pn == c.Proto {
					return false, true
				}
			}
		}
		return false, false
	}
	lo, hi := p.Port.IntVal, p.Port.IntVal
	if p.EndPort != nil {
		hi = *p.EndPort
	}
	if lo < 1 || hi > 65535 || hi < lo {
		return false, false
	}
	return int32(f.Port) >= lo && int32(f.Port) <= hi, false
}

func reason(d Decision) string {
	part := func(name string, dd DirectionDecision) string {
		switch {
		case dd.Pod == "":
			return ""
		case !dd.Isolated:
			return fmt.Sprintf("%s of %s is not isolated", name, dd.Pod)
		case dd.Allowed:
			return fmt.Sprintf("%s of %s is allowed by %s", name, dd.Pod, strings.Join(dd.Policies, ", "))
		default:
			return fmt.Sprintf("%s of %s is isolated by %s and no rule allows it", name, dd.Pod, strings.Join(dd.Policies, ", "))
		}
	}
	var parts []string
	for _, p := range []string{part("egress", d.Egress), part("ingress", d.Ingress)} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	verdict := "allowed"
	if !d.Allowed {
		verdict = "denied"
	}
	if len(parts) == 0 {
		return "allowed: neither address is a pod, so no policy applies"
	}
	return verdict + ": " + strings.Join(parts, "; ")
}
