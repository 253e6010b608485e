package daemon

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft/nflog"
)

// flowDecider is what the flow log needs of the engine: its reference
// evaluator, which also names the pods at the flow's addresses.
type flowDecider interface {
	Decide(enforcer.Flow) enforcer.Decision
}

// flowRecord is one line of the deny/flow log (flowlog_format.go writes it).
type flowRecord struct {
	Time    time.Time
	Verdict string // verdictDenied, verdictWouldDeny, verdictAllowed
	// Direction is "ingress" or "egress" for a denied or audited
	// connection, "" for an allowed one (logged once for both).
	Direction string
	// Src and Dst are "namespace/pod", or the address for a non-pod.
	Src, Dst     string
	SrcIP, DstIP netip.Addr
	Protocol     string // tcp, udp, sctp, icmp, icmpv6 or a number
	// SrcPort and DstPort are 0 when the protocol has none (ICMP).
	SrcPort, DstPort uint16
	// Policies decided ("ns/name" of NetworkPolicies, the name of a
	// ClusterNetworkPolicy), Rule the ClusterNetworkPolicy rule that did,
	// and Reason says it in words.
	Policies []string
	Rule     string
	Reason   string
	// Note says when the engine's model disagrees with the kernel's
	// verdict: a policy or pod changed after the packet.
	Note string
	// Site is the kernel's, from the prefix: np, admin, baseline, claimed,
	// unknown or flow.
	Site   string
	Length int
}

// flowOf is the connection a logged packet opens, as Decide takes it. An
// ICMP packet has no port: its protocol is given by name ("ICMP"), which no
// port of a policy matches, so only rules without ports allow it, as in the
// kernel.
func flowOf(ev nflog.Event) enforcer.Flow {
	return enforcer.Flow{
		Src:      ev.Src,
		Dst:      ev.Dst,
		Protocol: corev1.Protocol(strings.ToUpper(nflog.ProtocolName(ev.Protocol))),
		Port:     ev.DstPort,
	}
}

// buildRecord names the pods and the policies behind one logged packet.
func buildRecord(eng flowDecider, ev nflog.Event, p logPrefix) flowRecord {
	d := eng.Decide(flowOf(ev))
	r := flowRecord{
		Time:     ev.Time,
		Verdict:  p.verdict(),
		Src:      endpointName(d.Egress.Pod, ev.Src),
		Dst:      endpointName(d.Ingress.Pod, ev.Dst),
		SrcIP:    ev.Src,
		DstIP:    ev.Dst,
		Protocol: nflog.ProtocolName(ev.Protocol),
		SrcPort:  ev.SrcPort,
		DstPort:  ev.DstPort,
		Site:     p.Site,
		Length:   ev.Length,
	}
	if !p.HasDirection {
		// The flow log: the connection was allowed both ways.
		r.Policies, r.Rule = allowedBy(d)
		r.Reason = d.Reason
		if !d.Allowed {
			r.Note = "the policy model now denies this connection (a change since the packet)"
		}
		return r
	}
	r.Direction = p.Direction.String()
	dd := d.Ingress
	if p.Direction == enforcer.Egress {
		dd = d.Egress
	}
	if p.Action == actionAudit {
		// What the policies in audit mode would have done; the enforced
		// decision allowed it.
		if dd.Audit == nil {
			r.Note = "the policy model now would not deny this connection (a change since the packet)"
		} else {
			dd = *dd.Audit
		}
	} else if dd.Allowed {
		r.Note = "the policy model now allows this connection (a change since the packet)"
	}
	r.Policies, r.Rule, r.Reason = dd.Policies, dd.Rule, denyReason(dd)
	return r
}

// endpointName is "namespace/pod", or the address when no pod has it.
func endpointName(pod string, a netip.Addr) string {
	if pod != "" {
		return pod
	}
	return a.String()
}

// allowedBy names what allowed a connection in both directions: the
// NetworkPolicies (sorted, without repeats) and the ClusterNetworkPolicy
// rules ("; " between the two directions' rules).
func allowedBy(d enforcer.Decision) (policies []string, rules string) {
	var rs []string
	for _, dd := range []enforcer.DirectionDecision{d.Egress, d.Ingress} {
		if !dd.Allowed {
			continue
		}
		if dd.Isolated {
			policies = append(policies, dd.Policies...)
		}
		if dd.Rule != "" {
			rs = append(rs, dd.Rule)
		}
	}
	slices.Sort(policies)
	return slices.Compact(policies), strings.Join(rs, "; ")
}

// denyReason says what decided one direction, in the words of explain
// (describeDirection) where the tiers decided, and as "default deny of
// <policies>" where the NetworkPolicies isolating a pod allowed nothing.
func denyReason(dd enforcer.DirectionDecision) string {
	switch {
	case dd.Unknown && dd.Pod != "":
		return "first-packet isolation: the address is in the node's pod CIDRs but " + dd.Pod + " claims it from another node"
	case dd.Unknown:
		return "first-packet isolation: the address is in the node's pod CIDRs but is no known pod's (not programmed yet)"
	case dd.Pod == "":
		return "not a pod: no policy applies"
	case dd.Tier == tierNetworkPolicy && len(dd.Passes) == 0 && !dd.Conflict && !dd.Allowed:
		// The NetworkPolicy tier decided alone (an audit view has it even
		// without ClusterNetworkPolicies).
		return "default deny of " + strings.Join(dd.Policies, ", ")
	case dd.Tier != "" || len(dd.Passes) > 0:
		return tierChain(dd)
	case dd.Conflict:
		return "the pods claiming the address are selected by different NetworkPolicies (" + strings.Join(dd.Policies, ", ") + ")"
	case !dd.Isolated:
		return "not isolated: no policy applies"
	case dd.Allowed:
		return "allowed by " + strings.Join(dd.Policies, ", ")
	}
	return "default deny of " + strings.Join(dd.Policies, ", ")
}
