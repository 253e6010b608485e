package enforcer

// The static part of the program: the base chains on the forward hook, the
// same on every node whatever the cluster (see PROGRAM.md, "Base chains").

import "github.com/nftwarden/nftwarden/nft"

// baseChain is the base chain of a direction (PROGRAM.md): established
// connections first, invalid packets dropped, mid-stream TCP segments of
// lost connections dropped, the rules of first-packet isolation (unknown:
// none while it is off; firstpacket.go), then dispatch by the local pod's
// address (the source for egress, the destination for ingress).
func baseChain(dir Direction, name string, prio int, comment string, unknown []nft.Rule) *nft.Chain {
	rules := []nft.Rule{
		{Exprs: []nft.Expr{nft.MatchCtState{States: nft.CtEstablished | nft.CtRelated}, nft.Verdict{Kind: nft.VerdictAccept}}},
		{Exprs: []nft.Expr{nft.MatchCtState{States: nft.CtInvalid}, nft.Verdict{Kind: nft.VerdictDrop}}},
	}
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
	// in no dispatch map, so an accept of the audit chain of the unknown
	// site skips nothing of its direction.
	rules = append(rules, unknown...)
	for _, f := range families {
		rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.VerdictMapLookup{Fields: []nft.Field{dir.podField(f)}, Map: vmapName(dir, f)}}})
	}
	return &nft.Chain{Name: name, Comment: comment, Rules: rules,
		Base: &nft.BaseChain{Hook: nft.HookForward, Priority: prio, Policy: nft.VerdictAccept}}
}

// pickupComments[dir] say why the base chain of dir drops mid-stream TCP
// segments picked up as new.
var pickupComments = [2]string{
	"TCP from a pod isolated for ingress that starts no connection: its entry was revoked or lost",
	"TCP to a pod isolated for egress that starts no connection: its entry was revoked or lost",
}
