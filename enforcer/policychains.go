package enforcer

import (
	"slices"

	"github.com/nftwarden/nftwarden/nft"
)

// policyChains owns the chain of each active policy direction and takes,
// for its rules, the peer groups, shared sets and named-port sets they name
// from the parts that own those. A policy direction is active (its chain and
// sets exist) while its namespace has a local pod.
type policyChains struct {
	w      *writer
	fams   *familySet
	groups *peerGroups
	shared *sharedSets
	named  *namedPorts
	// log says which policies are audited apart; counters count the
	// chains of the others (when on).
	log      *logging
	counters *counters
}

// activate creates the chain and sets of a policy direction that just got its
// first local target.
func (pc *policyChains) activate(d *policyDir) {
	d.active = true
	for _, r := range d.rules {
		for _, p := range r.peers {
			if p.group != nil {
				g := pc.groups.acquire(p.group)
				if r.usesPeerChain() {
					pc.groups.acquireChain(g, d.dir)
				}
			} else if pc.fams.has(p.fam) {
				pc.shared.acquire(p.cidr)
			}
		}
		if r.numeric != nil && r.numeric.inline == nil {
			pc.shared.acquire(r.numeric)
		}
		if r.allKey != "" {
			r.allSet = pc.named.acquireEvery(r)
		}
		if r.namedKey != "" {
			r.namedSet = pc.named.newRuleSet(d, r, pc.groups)
		}
	}
	rules := d.buildRules(*pc.fams, pc.sets())
	if pc.counters.on && !pc.log.audited(d.pol.rec.Audit) {
		// The accepts are in the rules and the shared peer chains: what
		// the policy allowed is what entered less what reached its end.
		entered, notAllowed := pc.counters.policyCounters(d)
		rules = append(append([]nft.Rule{{Exprs: []nft.Expr{nft.CounterRef{Name: entered}}}}, rules...),
			nft.Rule{Exprs: []nft.Expr{nft.CounterRef{Name: notAllowed}}})
	}
	pc.w.putChain(&nft.Chain{Name: d.chain, Comment: d.pol.id + " " + d.dir.String() + " rule list", Rules: rules})
}

// deactivate removes the chain of a policy direction and releases what its
// rules named.
func (pc *policyChains) deactivate(d *policyDir) {
	d.active = false
	pc.w.deleteChain(d.chain)
	pc.counters.dropPolicyCounters(d)
	for _, r := range d.rules {
		for _, p := range r.peers {
			if p.group != nil {
				g := pc.groups.get(p.group)
				if r.usesPeerChain() {
					pc.groups.releaseChain(g, d.dir)
				}
				pc.groups.release(g)
			} else if pc.fams.has(p.fam) {
				pc.shared.release(p.cidr)
			}
		}
		if r.numeric != nil && r.numeric.inline == nil {
			pc.shared.release(r.numeric)
		}
		if r.namedSet != nil {
			pc.named.drop(r.namedSet)
		}
		if r.allSet != nil {
			pc.named.releaseEvery(r.allSet)
		}
		r.namedSet, r.allSet = nil, nil
	}
}

// setActive activates or deactivates every direction of the policies given.
func (pc *policyChains) setActive(pols map[string]*policy, on bool) {
	for _, p := range pols {
		for _, d := range p.dirs {
			if d != nil && d.active != on {
				if on {
					pc.activate(d)
				} else {
					pc.deactivate(d)
				}
			}
		}
	}
}

// ruleSets are the shared sets the rules of a policy look their selector
// peers (peers) and named ports (named) up in, each with its tag.
type ruleSets struct{ peers, named *taggedSets }

func (pc *policyChains) sets() ruleSets { return ruleSets{pc.groups.sets, pc.named.sets} }

// portMatch is how a rule matches one entry of its ports.
type portMatch struct {
	expr   []nft.Expr
	named  bool // the family's named-port set, filled in per family
	inline bool // comparisons, which go before the address match
}

// peerMatch is how a rule matches one of its peers in one family.
type peerMatch struct {
	expr   []nft.Expr
	chain  string // selector peers: the group's peer chain
	desc   string // selector peers: what the group matches, for the jump's comment
	cidr   bool
	anyFam bool // no peers: every address of every family
}

// buildRules is the policy chain: for each rule, family in fams, peer and
// port kind (each entry of a short port list apart) one rule ending in accept
// (PROGRAM.md). Rules that match regardless of family are emitted once, in the
// first family's pass; so are those to a selector peer with numeric or no
// ports, which match the port and jump to the group's peer chain (that chain
// matches the addresses of every family and accepts).
func (d *policyDir) buildRules(fams familySet, sets ruleSets) []nft.Rule {
	return d.buildRulesEnding(fams, policyAllow(d.dir), sets)
}

// policyAllow is the verdict of a policy chain's rules that allow: an
// ingress allow accepts; an egress allow goes to the ingress side through
// the chain allow-egress (dispatch.go), so that, as through a peer chain,
// it reaches the ingress chain three chains below the base chain. Why: a
// batch that adds a rule with a jump or goto makes the kernel validate the
// whole table (nft_table_validate), a walk from the base chain that skips
// a chain it has already walked at that depth or deeper, but walks it again
// from a deeper one. The ingress chain, with everything below it (every
// ingress pod chain and the policy chains they jump to), was walked once
// for the first egress allow it found and again for the first deeper one.
// Every egress path now reaches it at the same depth: one walk.
func policyAllow(dir Direction) nft.Verdict {
	if dir == Egress {
		return nft.Verdict{Kind: nft.VerdictGoto, Chain: chainEgressAllowed}
	}
	return allowVerdict(dir)
}

// buildRulesEnding is buildRules with the rules ending in verdict v. With
// another verdict than accept (an audit chain's return, npAudits) selector
// peers are looked up in their peer sets in the rule itself, per family:
// the peer chain would accept.
func (d *policyDir) buildRulesEnding(fams familySet, v nft.Verdict, sets ruleSets) []nft.Rule {
	var out []nft.Rule
	first := fams.first()
	inline := v != policyAllow(d.dir)
	for _, r := range d.rules {
		ports := r.lowerPorts() // the same in every family
		for _, f := range families {
			if !fams.has(f) {
				continue
			}
			for _, pm := range r.lowerPeers(d.dir, f, sets.peers) {
				if inline {
					pm.chain = ""
				}
				for _, po := range ports {
					if (pm.anyFam || pm.chain != "") && !po.named && f != first {
						continue // family independent: emitted in the first pass
					}
					out = append(out, d.lowerRule(r, f, pm, po, v, sets.named))
				}
			}
		}
	}
	return out
}

// lowerPorts is how the rule matches each entry of its ports, the same in
// every family.
func (r *policyRule) lowerPorts() []portMatch {
	var ports []portMatch
	if r.anyPort {
		ports = append(ports, portMatch{})
	}
	switch {
	case r.numeric != nil && r.numeric.inline != nil:
		for _, entry := range r.numeric.inline {
			ports = append(ports, portMatch{expr: entry, inline: true})
		}
	case r.numeric != nil:
		ports = append(ports, portMatch{expr: []nft.Expr{nft.Lookup{Fields: []nft.Field{nft.FieldL4Proto, nft.FieldTHDport}, Set: r.numeric.name}}})
	}
	if len(r.named) > 0 {
		ports = append(ports, portMatch{named: true})
	}
	return ports
}

// lowerPeers is how the rule matches each of its peers in family f; a
// selector peer is its group's tag in the peer set of f (peerSets).
func (r *policyRule) lowerPeers(dir Direction, f Family, peerSets *taggedSets) []peerMatch {
	var peers []peerMatch
	if r.anyPeer {
		peers = append(peers, peerMatch{anyFam: true})
	}
	for _, p := range r.peers {
		switch {
		case p.group != nil:
			peers = append(peers, peerMatch{expr: []nft.Expr{peerSets.lookup(f, p.group.key, dir.peerField(f))},
				chain: peerChainName(dir, p.group.key), desc: p.group.desc})
		case p.cidr != nil && p.fam == f:
			peers = append(peers, peerMatch{expr: []nft.Expr{nft.Lookup{Fields: []nft.Field{dir.peerField(f)}, Set: p.cidr.name}}, cidr: true})
		}
	}
	return peers
}

// lowerRule is the rule of r that matches peer pm and port po in family f,
// ending in v; a named port is the tag of its named-port set in named.
func (d *policyDir) lowerRule(r *policyRule, f Family, pm peerMatch, po portMatch, v nft.Verdict, named *taggedSets) nft.Rule {
	if pm.chain != "" && !po.named {
		// The peer chain's name is a hash of its selectors: the comment
		// says which peers it matches.
		return nft.Rule{Exprs: append(slices.Clip(po.expr), nft.Verdict{Kind: nft.VerdictJump, Chain: pm.chain}),
			Comment: comment(peerChainComment(d.dir, pm.desc))}
	}
	portExpr := po.expr
	if po.named {
		// Egress to any address or to an ipBlock resolves the name on
		// whichever pod holds the destination; to a selector peer, on the
		// peer pods only.
		key := r.namedKey
		if d.dir == Egress && (pm.anyFam || pm.cidr) {
			key = r.allKey
		}
		portExpr = []nft.Expr{named.lookup(f, key, f.daddr(), nft.FieldL4Proto, nft.FieldTHDport)}
	}
	exprs := make([]nft.Expr, 0, len(pm.expr)+len(portExpr)+1)
	if po.inline {
		exprs = append(exprs, portExpr...)
		exprs = append(exprs, pm.expr...)
	} else {
		exprs = append(exprs, pm.expr...)
		exprs = append(exprs, portExpr...)
	}
	exprs = append(exprs, v)
	return nft.Rule{Exprs: exprs}
}
