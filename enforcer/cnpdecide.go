package enforcer

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// The reference evaluator's ClusterNetworkPolicy tiers (doc.go,
// "ClusterNetworkPolicy"). Like decide.go it reads the
// model and the policies as parsed from what was written, never compiled
// state.

// Tier names in DirectionDecision.Tier.
const (
	tierNameAdmin         = "admin"
	tierNameNetworkPolicy = "networkpolicy"
	tierNameBaseline      = "baseline"
)

// tierOutcome is what one tier says about one direction for one subject pod.
type tierOutcome struct {
	decided, allowed bool
	rule             string // the deciding rule, "" if undecided
	pass             string // the Pass rule that ended the tier, if any
	audited          bool   // the deciding rule's policy is in audit mode
}

// decideTiers evaluates one direction with the CNPs of the model: Admin
// tier, then NetworkPolicy (if one isolates the pod), then Baseline, then
// allowed. Several claimants of the subject address are judged as one: a
// tier that judges them differently denies. With honorAudit, policies in
// audit mode decide nothing, and the first tier the connection reaches
// that they would decide as a deny (their rule its first match, or audited
// NetworkPolicies alone isolating the pod and none allowing) is the
// decision's Audit.
func decideTiers(m *model, cnps []*cnpRecord, dir Direction, pods, others []*podRecord, f Flow, honorAudit bool) DirectionDecision {
	byPrecedence(cnps)
	var passes []string
	var audit *DirectionDecision
	for _, t := range []cnpTier{tierAdmin, tierBaseline} {
		if t == tierBaseline {
			np := decideNetworkPolicies(m, dir, pods, others, f, honorAudit)
			if audit == nil {
				audit = np.Audit
			}
			if np.Isolated || np.Conflict {
				np.Tier, np.Passes, np.Audit = tierNameNetworkPolicy, passes, audit
				return np
			}
		}
		out, conflict := claimantsOutcome(m, cnps, t, dir, pods, others, f, honorAudit)
		if honorAudit && conflict == nil && audit == nil {
			if would, wc := claimantsOutcome(m, cnps, t, dir, pods, others, f, false); wc == nil && would.decided && !would.allowed && would.audited {
				audit = &DirectionDecision{Pod: pods[0].ID, Claimants: claimantIDs(pods), Tier: t.String(), Rule: would.rule, Passes: passes}
			}
		}
		dd := DirectionDecision{Pod: pods[0].ID, Claimants: claimantIDs(pods), Tier: t.String(), Passes: passes, Audit: audit}
		switch {
		case conflict != nil:
			dd.Conflict, dd.Policies = true, conflict
			return dd
		case out.decided:
			dd.Allowed, dd.Rule = out.allowed, out.rule
			return dd
		case out.pass != "":
			passes = append(passes, out.pass)
		}
	}
	// No tier decided (and no NetworkPolicy isolates the pod): allowed.
	return DirectionDecision{Pod: pods[0].ID, Claimants: claimantIDs(pods), Allowed: true, Passes: passes, Audit: audit}
}

// byPrecedence sorts CNPs by priority, lower first; equal priorities by
// name (the API leaves their order undefined; ours is deterministic).
func byPrecedence(cnps []*cnpRecord) {
	slices.SortStableFunc(cnps, func(a, b *cnpRecord) int {
		return cmp.Or(cmp.Compare(a.parsed.priority, b.parsed.priority), strings.Compare(a.ID, b.ID))
	})
}

// claimantIDs lists the claimants' IDs when there are several (nil for one).
func claimantIDs(pods []*podRecord) []string {
	if len(pods) < 2 {
		return nil
	}
	ids := make([]string, len(pods))
	for i, p := range pods {
		ids[i] = p.ID
	}
	return ids
}

// claimantsOutcome evaluates tier t for every claimant of the subject
// address (without the policies in audit mode, with skipAudited). If they
// are not all judged alike it returns, sorted, what each was judged by
// (conflict), and the direction is denied.
func claimantsOutcome(m *model, cnps []*cnpRecord, t cnpTier, dir Direction, pods, others []*podRecord, f Flow, skipAudited bool) (tierOutcome, []string) {
	// A named port resolves on the pod at the destination address: the
	// peer for egress, the subject for ingress; none for several claimants.
	portPod := only(others)
	if dir == Ingress {
		portPod = only(pods)
	}
	first := evalTier(m, cnps, t, dir, pods[0], others, portPod, f, skipAudited)
	same := true
	for _, p := range pods[1:] {
		same = same && evalTier(m, cnps, t, dir, p, others, portPod, f, skipAudited) == first
	}
	if same {
		return first, nil
	}
	var judged []string
	for _, p := range pods {
		o := evalTier(m, cnps, t, dir, p, others, portPod, f, skipAudited)
		judged = append(judged, cmp.Or(o.rule, o.pass, "no rule"))
	}
	slices.Sort(judged)
	return tierOutcome{}, slices.Compact(judged)
}

// evalTier walks the CNPs of tier t that select pod, in precedence order,
// and their rules for dir in written order: the first rule that matches
// decides (Accept, Deny) or ends the tier (Pass). skipAudited leaves the
// policies in audit mode out.
func evalTier(m *model, cnps []*cnpRecord, t cnpTier, dir Direction, pod *podRecord, others []*podRecord, portPod *podRecord, f Flow, skipAudited bool) tierOutcome {
	far := f.Src
	if dir == Egress {
		far = f.Dst
	}
	for _, c := range cnps {
		p := c.parsed
		if p.tier != t || skipAudited && c.Audit || !p.selects(m, pod) {
			continue
		}
		for i := range p.rules[dir] {
			r := &p.rules[dir][i]
			action, ok := r.effectiveAction(p.degraded)
			if !ok || !r.matches(m, far, others, portPod, f) {
				continue
			}
			ref := ruleRef(t, c.ID, r)
			switch action {
			case v1beta1.ClusterNetworkPolicyRuleActionAccept:
				return tierOutcome{decided: true, allowed: true, rule: ref, audited: c.Audit}
			case v1beta1.ClusterNetworkPolicyRuleActionPass:
				return tierOutcome{pass: ref, audited: c.Audit}
			default:
				return tierOutcome{decided: true, rule: ref, audited: c.Audit}
			}
		}
	}
	return tierOutcome{}
}

// ruleRef names a rule for explain: "admin policy deny-db rule 2", with the
// rule's name and, for a rule that failed to parse, how it acts.
func ruleRef(t cnpTier, name string, r *cnpRule) string {
	s := fmt.Sprintf("%s policy %s rule %d", t, name, r.index)
	if r.name != "" {
		s += fmt.Sprintf(" (%s)", r.name)
	}
	if r.broken {
		s += " (invalid: denies all)"
	}
	return s
}

// effectiveAction is the action a rule takes, failing closed: a broken or
// unknown non-Accept rule denies everything, a broken Accept matches
// nothing (ok false), and a degraded policy only denies (Accept matches
// nothing, Pass denies).
func (r *cnpRule) effectiveAction(degraded bool) (v1beta1.ClusterNetworkPolicyRuleAction, bool) {
	if r.action == v1beta1.ClusterNetworkPolicyRuleActionAccept {
		return r.action, !r.broken && !degraded
	}
	if r.broken || degraded || r.action != v1beta1.ClusterNetworkPolicyRuleActionPass {
		return v1beta1.ClusterNetworkPolicyRuleActionDeny, true
	}
	return r.action, true
}

// selects reports whether the policy's subject selects pod (an active pod:
// hostNetwork and finished pods are never claimants).
func (p *cnpParsed) selects(m *model, pod *podRecord) bool {
	if !p.subjectNS.Matches(namespaceLabels(m, pod.Namespace())) {
		return false
	}
	return p.subjectPod == nil || p.subjectPod.Matches(pod.Labels)
}

// namespaceLabels returns a namespace's labels; for a namespace the model
// has not seen yet, the one label the API server gives every namespace.
func namespaceLabels(m *model, name string) labels.Labels {
	if ns := m.namespace(name); ns != nil {
		return ns.Labels
	}
	return labels.Set{labelNamespaceName: name}
}

// matches reports whether a rule applies to the flow; far is the peer's
// address, others the pods claiming it, portPod the pod at the destination
// (named ports). A broken rule matches every flow (effectiveAction keeps
// broken Accepts out).
func (r *cnpRule) matches(m *model, far netip.Addr, others []*podRecord, portPod *podRecord, f Flow) bool {
	if r.broken {
		return true
	}
	if !cnpPortsMatch(r.ports, portPod, f) {
		return false
	}
	for i := range r.peers {
		if r.peers[i].matches(m, far, others) {
			return true
		}
	}
	return false
}

// cnpPortsMatch: a named port matches if portPod has a container port of
// that name with the flow's protocol and port (a pod may name ports of
// several protocols alike).
func cnpPortsMatch(ports []cnpPort, portPod *podRecord, f Flow) bool {
	if ports == nil {
		return true
	}
	proto, ok := ProtocolNumber(f.Protocol)
	if !ok {
		return false
	}
	for _, p := range ports {
		if p.named != "" {
			if portPod != nil && slices.Contains(portPod.resolve(p.named, proto), f.Port) {
				return true
			}
			continue
		}
		if p.proto == proto && f.Port >= p.lo && f.Port <= p.hi {
			return true
		}
	}
	return false
}

// matches: a networks peer by address (pods' addresses included, as the API
// says); a nodes peer if a node it selects has the address; a selector peer
// only if pods claim the address and every claimant matches (doc.go, "Two
// live pods claiming one address").
func (p *cnpPeer) matches(m *model, far netip.Addr, others []*podRecord) bool {
	if p.nodes != nil {
		return slices.Contains(m.nodeAddrs(p.nodes), far.Unmap())
	}
	if p.ns == nil {
		return slices.ContainsFunc(p.networks, func(n netip.Prefix) bool { return n.Contains(far.Unmap()) })
	}
	if len(others) == 0 {
		return false
	}
	for _, o := range others {
		if !p.ns.Matches(namespaceLabels(m, o.Namespace())) || p.pod != nil && !p.pod.Matches(o.Labels) {
			return false
		}
	}
	return true
}
