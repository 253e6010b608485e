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

// nodeChanged follows a Node change (old or cur nil: added, deleted): in
// each group with a nodes peer whose match of the node or whose view of its
// addresses changes, the networks part is recomputed (the group's networks
// and nodes rules: a short sweep) and the class of each address the node
// had or has is set again, splitting and merging the runs around it; the
// other runs are unchanged, so this is exact and sends only those elements.
func (t *tiers) nodeChanged(old, cur *nodeRecord) {
	var addrs []netip.Addr
	for _, n := range [2]*nodeRecord{old, cur} {
		if n != nil {
			addrs = append(addrs, n.Addrs...)
		}
	}
	// updateAddrs takes each address once, in order.
	addrs = slices.Compact(slices.SortedFunc(slices.Values(addrs), netip.Addr.Compare))
	for _, id := range slices.Sorted(maps.Keys(t.groups)) {
		g := t.groups[id]
		rules := slices.Collect(maps.Values(g.nets))
		if !slices.ContainsFunc(rules, func(r *tierRule) bool { return nodeMatters(r, old, cur) }) {
			continue
		}
		t.resolveNodes(rules)
		for _, cm := range g.maps {
			t.setNet(g, cm, netRuns(cm.fam, rules))
		}
		t.updateAddrs(g, addrs)
	}
}

// nodeMatters reports whether a nodes peer of rule r selected the node
// before or after the change and the change moves what it matches: the
// selection itself, or the node's addresses.
func nodeMatters(r *tierRule, old, cur *nodeRecord) bool {
	if r.r.broken {
		return false
	}
	return slices.ContainsFunc(r.r.peers, func(p cnpPeer) bool {
		if p.nodes == nil {
			return false
		}
		was := old != nil && p.nodes.Matches(old.Labels)
		is := cur != nil && p.nodes.Matches(cur.Labels)
		return was != is || is && !slices.Equal(old.Addrs, cur.Addrs)
	})
}

// nodeChanged compiles a Node change: the tiers' nodes peers only.
func (c *compiler) nodeChanged(old, cur *nodeRecord) {
	c.tiers.nodeChanged(old, cur)
	c.tiers.finishClasses()
}
