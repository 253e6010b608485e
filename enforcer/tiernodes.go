package enforcer

import (
	"maps"
	"net/netip"
	"slices"
)

// Nodes peers in the compiled tiers (experimental channel): a rule with a
// nodes peer is part of its groups' networks part (tierRule.nets), its
// selected nodes' addresses points (/32, /128) in the class maps beside the
// networks. A Node change recomputes the networks part of the groups with a
// nodes peer whose selector matches the node before or after the change (the
// runs are rebuilt and only the elements that differ are sent); nothing else
// depends on Nodes.

// resolveNodes sets, for each rule with nodes peers, the addresses of the
// nodes they select now, as blocks for netRuns.
func (t *tiers) resolveNodes(rules []*tierRule) {
	for _, r := range rules {
		r.nodes = nil
		if r.r.broken {
			continue
		}
		for _, p := range r.r.peers {
			if p.nodes == nil {
				continue
			}
			for _, a := range t.m.nodeAddrs(p.nodes) {
				r.nodes = append(r.nodes, netip.PrefixFrom(a, a.BitLen()))
			}
		}
	}
}

// nodeChanged follows a Node change (old or cur nil: added, deleted).
func (t *tiers) nodeChanged(old, cur *nodeRecord) {
	for _, id := range slices.Sorted(maps.Keys(t.groups)) {
		g := t.groups[id]
		if slices.ContainsFunc(slices.Collect(maps.Values(g.nets)), func(r *tierRule) bool { return selectsNode(r, old) || selectsNode(r, cur) }) {
			t.refill(g, nil, true)
		}
	}
}

// selectsNode reports whether a nodes peer of rule r selects node n.
func selectsNode(r *tierRule, n *nodeRecord) bool {
	if n == nil || r.r.broken {
		return false
	}
	return slices.ContainsFunc(r.r.peers, func(p cnpPeer) bool { return p.nodes != nil && p.nodes.Matches(n.Labels) })
}

// nodeChanged compiles a Node change: the tiers' nodes peers only.
func (c *compiler) nodeChanged(old, cur *nodeRecord) {
	c.tiers.nodeChanged(old, cur)
	c.tiers.finishClasses()
}
