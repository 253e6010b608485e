package enforcer

// The static part of the program: the base chain on the forward hook and
// the ingress chain it continues in, the same on every node whatever the
// cluster (see PROGRAM.md, "Base chain").

import "github.com/nftwarden/nftwarden/nft"

// forwardChain is the one base chain (PROGRAM.md): established connections
// first, invalid packets dropped, then the egress side (directionRules of
// Egress), then the ingress side, in the ingress chain. Conntrack's state is
// asked once per packet, and a packet passes one base chain: what any
// stateful filter needs.
func forwardChain(unknownEgress []nft.Rule) *nft.Chain {
	rules := []nft.Rule{
		{Exprs: []nft.Expr{nft.MatchCtState{States: nft.CtEstablished | nft.CtRelated}, nft.Verdict{Kind: nft.VerdictAccept}}},
		{Exprs: []nft.Expr{nft.MatchCtState{States: nft.CtInvalid}, nft.Verdict{Kind: nft.VerdictDrop}}},
	}
	rules = append(rules, directionRules(Egress, unknownEgress)...)
	rules = append(rules, nft.Rule{Exprs: []nft.Expr{allowVerdict(Egress)}})
	return &nft.Chain{Name: chainForward, Comment: "policy of local pods: egress, then ingress", Rules: rules,
		Base: &nft.BaseChain{Hook: nft.HookForward, Priority: nft.PriorityFilter, Policy: nft.VerdictAccept}}
}

// ingressChain is the ingress side (directionRules of Ingress), which the
// base chain goes to after the egress side, and every verdict that allows
// a packet's egress goes to (allowVerdict). It ends in accept: whatever
// chain went to it, nothing is left to judge.
func ingressChain(unknownIngress []nft.Rule) *nft.Chain {
	rules := append(directionRules(Ingress, unknownIngress), nft.Rule{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictAccept}}})
	return &nft.Chain{Name: chainIngress, Comment: "ingress policy of local pods", Rules: rules}
}

// allowVerdict is how a chain of direction dir lets a packet through: an
// ingress allow accepts it, an egress allow goes on to the ingress side,
// which judges the destination. A drop in either ends everything.
func allowVerdict(dir Direction) nft.Verdict {
	if dir == Egress {
		return nft.Verdict{Kind: nft.VerdictGoto, Chain: chainIngress}
	}
	return nft.Verdict{Kind: nft.VerdictAccept}
}

// directionRules are the rules of a direction for packets that are not
// established: mid-stream TCP segments of lost connections dropped, the
// rules of first-packet isolation (unknown: none while it is off;
// firstpacket.go), then dispatch by the local pod's address (the source for
// egress, the destination for ingress).
func directionRules(dir Direction, unknown []nft.Rule) []nft.Rule {
	var rules []nft.Rule
	// A TCP segment that conntrack sees as new but that starts no
	// connection was picked up after its entry went (revoked by
	// RevokeDenied, flushed, lost): nf_conntrack_tcp_loose makes it a new
	// connection in the direction it travels. Coming from a pod isolated
	// for ingress (or going to one isolated for egress), it is that pod
	// answering a connection whose entry is gone, which would otherwise
	// come back reversed, judged as the pod's own outbound connection: the
	// revoked client's packets would then pass as replies.
	for _, f := range families {
		rules = append(rules, nft.Rule{Exprs: []nft.Expr{
			nft.MatchCtState{States: nft.CtNew},
			nft.MatchTCPFlags{Flags: nft.TCPSyn, Mask: nft.TCPStartMask, Neq: true},
			nft.Lookup{Fields: []nft.Field{dir.peerField(f)}, Set: vmapName(dir, f)},
			nft.Verdict{Kind: nft.VerdictDrop},
		}, Comment: pickupComments[dir]})
	}
	// After the mid-stream rules: those drop whatever the log and audit
	// settings, and an address of the pod CIDRs that no local pod has is
	// in no dispatch map, so an allow of the audit chain of the unknown
	// site (allowVerdict) skips nothing of its direction.
	rules = append(rules, unknown...)
	for _, f := range families {
		rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.VerdictMapLookup{Fields: []nft.Field{dir.podField(f)}, Map: vmapName(dir, f)}}})
	}
	return rules
}

// pickupComments[dir] say why the rules of dir drop mid-stream TCP
// segments picked up as new.
var pickupComments = [2]string{
	"TCP from a pod isolated for ingress that starts no connection: its entry was revoked or lost",
	"TCP to a pod isolated for egress that starts no connection: its entry was revoked or lost",
}
