package enforcer

import (
	"fmt"
	"net/netip"
	"slices"
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

// decide evaluates a flow; nodeAudit is Config.Audit (every policy in
// audit mode). The caller holds the engine lock.
func decide(m *model, f Flow, nodeAudit bool) Decision {
	src, dst := claimantsAt(m, f.Src), claimantsAt(m, f.Dst)
	d := Decision{
		Egress:  decideEnd(m, Egress, f.Src, src, dst, f, nodeAudit),
		Ingress: decideEnd(m, Ingress, f.Dst, dst, src, f, nodeAudit),
	}
	d.Allowed = d.Egress.Allowed && d.Ingress.Allowed
	d.Reason = reason(d, f)
	return d
}

// decideEnd evaluates the direction of the end at addr (the source for
// egress, the destination for ingress), claimed by pods: first-packet
// isolation (firstpacket.go) drops it when addr is in the node's pod CIDRs
// and no local pod claims it, before any policy; otherwise its policies
// decide (decideDirection).
func decideEnd(m *model, dir Direction, addr netip.Addr, pods, others []*podRecord, f Flow, nodeAudit bool) DirectionDecision {
	if !unknownAt(m, addr, pods) {
		return decideDirection(m, dir, pods, others, f, nodeAudit)
	}
	dd := DirectionDecision{Unknown: true}
	if len(pods) > 0 {
		dd.Pod = pods[0].ID
	}
	if len(pods) > 1 {
		for _, p := range pods {
			dd.Claimants = append(dd.Claimants, p.ID)
		}
	}
	if nodeAudit {
		would := dd
		return DirectionDecision{Pod: dd.Pod, Claimants: dd.Claimants, Allowed: true, Audit: &would}
	}
	return dd
}

// claimantsAt returns the active pods claiming an address, sorted by ID:
// usually one, several while an address is reused (doc.go, "Two live pods
// claiming one address"), none for an address that is no pod's.
func claimantsAt(m *model, a netip.Addr) []*podRecord {
	if !a.IsValid() {
		return nil
	}
	return m.podsByIP(a.Unmap())
}

// only is the pod of a single claimant, nil for none or several: a named
// port resolves on the pod at an address, and several claimants name none.
func only(claimants []*podRecord) *podRecord {
	if len(claimants) == 1 {
		return claimants[0]
	}
	return nil
}

// decideDirection evaluates one direction for the pods claiming the address
// it concerns (the source for egress, the destination for ingress); others
// claim the far end. An address no pod claims is not subject to policy.
// With ClusterNetworkPolicies in the model, their tiers surround the
// NetworkPolicies (cnpdecide.go).
//
// Audit mode: policies annotated for audit (honoured unless nodeAudit)
// change no verdict, and Audit says what they would deny; with nodeAudit
// every direction is allowed, and Audit is the verdict policy would give
// when it denies.
func decideDirection(m *model, dir Direction, pods, others []*podRecord, f Flow, nodeAudit bool) DirectionDecision {
	if len(pods) == 0 {
		return DirectionDecision{Allowed: true}
	}
	var dd DirectionDecision
	if cnps := m.clusterPolicies(); len(cnps) > 0 {
		dd = decideTiers(m, cnps, dir, pods, others, f, !nodeAudit)
	} else {
		dd = decideNetworkPolicies(m, dir, pods, others, f, !nodeAudit)
	}
	if nodeAudit && !dd.Allowed {
		would := dd
		return DirectionDecision{Pod: dd.Pod, Claimants: dd.Claimants, Allowed: true, Audit: &would}
	}
	return dd
}

// decideNetworkPolicies evaluates the NetworkPolicies of one direction for
// pods (at least one). Several claimants are judged as one: by the policies
// that select them (audited or not) if these are the same for all, otherwise
// denied. With honorAudit, audited policies decide nothing: they are left
// out when an enforced policy isolates the pod (they could only allow
// more), and when they alone isolate it the direction is not isolated and
// Audit is set if none of them allows the flow.
func decideNetworkPolicies(m *model, dir Direction, pods, others []*podRecord, f Flow, honorAudit bool) DirectionDecision {
	dd := DirectionDecision{Pod: pods[0].ID}
	isolating, usable := selectingPolicies(m, dir, pods[0])
	if len(pods) > 1 {
		for _, p := range pods {
			dd.Claimants = append(dd.Claimants, p.ID)
		}
		union := slices.Clone(isolating)
		for _, p := range pods[1:] {
			ids, _ := selectingPolicies(m, dir, p)
			if !slices.Equal(ids, isolating) {
				dd.Conflict = true
			}
			union = append(union, ids...)
		}
		if dd.Conflict {
			slices.Sort(union)
			dd.Isolated, dd.Policies = true, slices.Compact(union)
			return dd
		}
	}
	if honorAudit {
		enforcedIDs, auditedIDs := splitAuditedIDs(m, isolating)
		usableEnforced, usableAudited := splitAuditedRecords(usable)
		if len(enforcedIDs) == 0 && len(auditedIDs) > 0 {
			dd.Allowed = true
			if len(allowingPolicies(m, usableAudited, dir, pods, others, f)) == 0 {
				dd.Audit = &DirectionDecision{Pod: dd.Pod, Claimants: dd.Claimants, Isolated: true, Policies: auditedIDs, Tier: tierNameNetworkPolicy}
			}
			return dd
		}
		isolating, usable = enforcedIDs, usableEnforced
	}
	allowing := allowingPolicies(m, usable, dir, pods, others, f)
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

// allowingPolicies lists, sorted, the policies of usable that allow the
// flow.
func allowingPolicies(m *model, usable []*policyRecord, dir Direction, pods, others []*podRecord, f Flow) []string {
	var allowing []string
	for _, pr := range usable {
		if policyAllows(m, pr, dir, pods, others, f) {
			allowing = append(allowing, pr.ID)
		}
	}
	sort.Strings(allowing)
	return allowing
}

// splitAuditedIDs splits policy IDs (sorted) into those enforced and those
// in audit mode.
func splitAuditedIDs(m *model, ids []string) (enforced, audited []string) {
	for _, id := range ids {
		if pr := m.policy(id); pr != nil && pr.Audit {
			audited = append(audited, id)
		} else {
			enforced = append(enforced, id)
		}
	}
	return enforced, audited
}

// splitAuditedRecords splits policies into those enforced and those in
// audit mode.
func splitAuditedRecords(prs []*policyRecord) (enforced, audited []*policyRecord) {
	for _, pr := range prs {
		if pr.Audit {
			audited = append(audited, pr)
		} else {
			enforced = append(enforced, pr)
		}
	}
	return enforced, audited
}

// selectingPolicies returns the IDs of the policies that select pod for
// direction dir (sorted) and those of them that can allow anything: an
// invalid podSelector selects every pod of its namespace, unknown
// policyTypes both directions, and such a policy allows nothing.
func selectingPolicies(m *model, dir Direction, pod *podRecord) (ids []string, usable []*policyRecord) {
	for _, pol := range m.policies.inNamespace(pod.Namespace()) {
		pr := pol.rec
		spec := &pr.Spec
		ingress, egress, typesErr := policyTypes(spec)
		if (dir == Ingress && !ingress) || (dir == Egress && !egress) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&spec.PodSelector)
		if err == nil && !sel.Matches(pod.Labels) {
			continue
		}
		ids = append(ids, pr.ID)
		if err == nil && typesErr == nil {
			usable = append(usable, pr)
		}
	}
	sort.Strings(ids)
	return ids, usable
}

func policyAllows(m *model, pr *policyRecord, dir Direction, pods, others []*podRecord, f Flow) bool {
	// The far address and the pod whose named ports count: for ingress the
	// destination is the target pod itself, for egress it is the peer.
	far, portPod := f.Src, only(pods)
	if dir == Egress {
		far, portPod = f.Dst, only(others)
	}
	for _, r := range specRules(&pr.Spec, dir) {
		// Whatever the kind of peer (selector, ipBlock, none), a named port
		// resolves on the pod at the destination address.
		ok := len(r.peers) == 0
		for i := range r.peers {
			ok = ok || peerMatches(m, pr.Namespace, &r.peers[i], far, others)
		}
		if !ok {
			continue
		}
		if len(r.ports) == 0 {
			return true
		}
		for _, p := range r.ports {
			if numeric, named := portMatches(p, portPod, f); numeric || named {
				return true
			}
		}
	}
	return false
}

// peerMatches reports whether the far end matches one peer. Invalid peers
// match nothing. A selector peer matches an address only if pods claim it and
// every claimant (others) matches the selectors.
func peerMatches(m *model, policyNS string, p *networkingv1.NetworkPolicyPeer, far netip.Addr, others []*podRecord) bool {
	if p.IPBlock != nil {
		return p.PodSelector == nil && p.NamespaceSelector == nil && ipBlockContains(p.IPBlock, far)
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil || len(others) == 0 {
		return false
	}
	for _, other := range others {
		if !podPeerMatches(m, policyNS, p, other) {
			return false
		}
	}
	return true
}

// podPeerMatches reports whether pod other matches a selector peer.
func podPeerMatches(m *model, policyNS string, p *networkingv1.NetworkPolicyPeer, other *podRecord) bool {
	if p.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		if err != nil || !sel.Matches(other.Labels) {
			return false
		}
	}
	if p.NamespaceSelector == nil {
		return other.Namespace() == policyNS
	}
	sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
	if err != nil {
		return false
	}
	ns := m.namespace(other.Namespace())
	return ns != nil && sel.Matches(ns.Labels)
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
	if _, ok := ProtocolNumber(proto); !ok || proto != fproto && !(proto == "" && fproto == corev1.ProtocolTCP) {
		return false, false
	}
	if p.Port == nil {
		return p.EndPort == nil, false
	}
	if p.Port.Type == intstr.String {
		if p.EndPort != nil || p.Port.StrVal == "" || portPod == nil {
			return false, false
		}
		for _, c := range portPod.Ports.list() {
			if c.Name.Value() == p.Port.StrVal && c.Port == f.Port {
				if pn, _ := ProtocolNumber(proto); pn == c.Proto {
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

func reason(d Decision, f Flow) string {
	// far lists the claimants of the other end when there are several.
	part := func(name string, dd DirectionDecision, far []string, addr netip.Addr) string {
		who := dd.Pod
		if len(dd.Claimants) > 1 {
			who = fmt.Sprintf("the address claimed by %s", strings.Join(dd.Claimants, ", "))
			if !dd.Conflict {
				who += " (selected by the same policies)"
			}
		}
		switch {
		case dd.Unknown:
			return name + " of " + unknownPart(dd, addr)
		case dd.Audit != nil && dd.Audit.Unknown:
			return fmt.Sprintf("%s of %s is allowed", name, addr)
		case dd.Pod == "":
			return ""
		case dd.Conflict && (dd.Tier == tierNameAdmin || dd.Tier == tierNameBaseline):
			return fmt.Sprintf("%s of %s is denied: the %s tier judges the claimants differently (%s), so new connections are dropped until one claimant is left",
				name, who, dd.Tier, strings.Join(dd.Policies, "; "))
		case len(dd.Passes) > 0 || dd.Tier == tierNameAdmin || dd.Tier == tierNameBaseline:
			return fmt.Sprintf("%s of %s is %s", name, who, tieredVerdict(dd))
		case dd.Conflict:
			return fmt.Sprintf("%s of %s is denied: they are selected by different policies (%s), so new connections are dropped until one claimant is left",
				name, who, strings.Join(dd.Policies, ", "))
		case !dd.Isolated:
			return fmt.Sprintf("%s of %s is not isolated", name, who)
		case dd.Allowed:
			return fmt.Sprintf("%s of %s is allowed by %s", name, who, strings.Join(dd.Policies, ", "))
		case len(far) > 1:
			return fmt.Sprintf("%s of %s is isolated by %s and no rule allows it (the other end is claimed by %s: a selector peer matches it only if every claimant does, and a named port never does)",
				name, who, strings.Join(dd.Policies, ", "), strings.Join(far, ", "))
		default:
			return fmt.Sprintf("%s of %s is isolated by %s and no rule allows it", name, who, strings.Join(dd.Policies, ", "))
		}
	}
	var parts []string
	for _, p := range []struct {
		name string
		dd   DirectionDecision
		far  []string
		addr netip.Addr
	}{{"egress", d.Egress, d.Ingress.Claimants, f.Src}, {"ingress", d.Ingress, d.Egress.Claimants, f.Dst}} {
		if s := part(p.name, p.dd, p.far, p.addr); s != "" {
			parts = append(parts, s+auditNote(p.dd.Audit))
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

// unknownPart says why first-packet isolation drops the end at addr
// (dd.Unknown): "198.18.1.7 is denied: ...".
func unknownPart(dd DirectionDecision, addr netip.Addr) string {
	whose := "is no known pod's"
	if dd.Pod != "" {
		pods := dd.Pod
		if len(dd.Claimants) > 1 {
			pods = strings.Join(dd.Claimants, ", ")
		}
		whose = "is no local pod's (" + pods + " claims it from another node)"
	}
	return fmt.Sprintf("%s is denied: the address is in the node's pod CIDRs but %s, so its new connections are dropped until its pod is programmed (first-packet isolation)", addr, whose)
}

// auditNote says what policies in audit mode would deny ("" for nothing).
func auditNote(a *DirectionDecision) string {
	switch {
	case a == nil:
		return ""
	case a.Unknown:
		return " (audit mode: would be denied: the address is in the node's pod CIDRs but no known local pod's, first-packet isolation)"
	case a.Conflict:
		return " (audit mode: would be denied, the claimants being judged differently: " + strings.Join(a.Policies, ", ") + ")"
	case a.Tier == tierNameAdmin || a.Tier == tierNameBaseline:
		return " (audit mode: would be denied by " + a.Rule + ")"
	case a.Isolated && len(a.Policies) > 0:
		return " (audit mode: would be denied by NetworkPolicy " + strings.Join(a.Policies, ", ") + ", isolated and no rule allows it)"
	}
	return " (audit mode: would be denied)"
}

// tieredVerdict says how the tiers decided a direction: the Pass rules met,
// then the deciding rule, NetworkPolicies or the default.
func tieredVerdict(dd DirectionDecision) string {
	steps := make([]string, 0, len(dd.Passes)+1)
	for _, p := range dd.Passes {
		steps = append(steps, "passed by "+p)
	}
	verdict := "allowed"
	if !dd.Allowed {
		verdict = "denied"
	}
	switch dd.Tier {
	case tierNameAdmin, tierNameBaseline:
		steps = append(steps, verdict+" by "+dd.Rule)
	case tierNameNetworkPolicy:
		if dd.Conflict {
			steps = append(steps, "denied: the claimants are selected by different NetworkPolicies ("+strings.Join(dd.Policies, ", ")+")")
		} else if dd.Allowed {
			steps = append(steps, "allowed by NetworkPolicy "+strings.Join(dd.Policies, ", "))
		} else {
			steps = append(steps, "denied by NetworkPolicy "+strings.Join(dd.Policies, ", ")+" (isolated, no rule allows it)")
		}
	default:
		steps = append(steps, "allowed (no policy decides)")
	}
	return strings.Join(steps, ", then ")
}
