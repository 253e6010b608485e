package enforcer

import (
	"maps"
	"net/netip"
	"slices"
	"sort"

	"github.com/nftwarden/nftwarden/nft"
)

// Addresses claimed by several live pods.
//
// During IP reuse a new pod can be given the address of a pod whose deletion
// the engine has not seen yet (or whose object lingers). Both are then live
// claimants of one address, and nothing in a packet tells them apart. The
// rule (doc.go, "Two live pods claiming one address") fails closed, and Decide
// mirrors it exactly:
//   - peer sets: the address is in a group's set only if every claimant is a
//     member of the group;
//   - named ports: the address matches none;
//   - dispatch, when a claimant is local: no element if no claimant is
//     isolated; the pod chain of the lowest-ID local claimant if every
//     claimant is selected by the same policies (the verdict is then the same
//     for all of them); otherwise the shared drop chain.
//
// Conflicts are rare and short-lived, so the compiler's usual paths treat an
// address as having one claimant and leave the conflicted ones (the model's IP
// index knows them: ipIndex.more) to this file. An operation that touches a
// claimant or a policy marks the addresses concerned, and resyncConflicts
// derives, at the end of the operation, everything such an address
// contributes (peer-set elements, named-port elements, dispatch elements) from
// its claimants as a whole. Without a conflict the usual paths pay a map lookup
// per address and nothing else.

// chainClaimDrop is the chain the dispatch elements of an address claimed by
// pods with different policies go to. It exists while such an element does.
const chainClaimDrop = "claimed-drop"

// claimOwner marks, in compiler.vmapOwn, a dispatch element set by the
// conflict rule rather than by one pod (a pod ID always holds a "/").
const claimOwner = "(several pods)"

// conflicts is the compiler's record of what the conflict rule programmed.
type conflicts struct {
	// dirty are the addresses to resync at the end of the current operation,
	// with the namespaces of pods that stopped claiming them there (their
	// groups may still hold the address).
	dirty map[netip.Addr][]string
	// dispatch[dir] is the chain of each dispatch element the rule set.
	dispatch [2]map[netip.Addr]string
	// drops counts those elements that go to chainClaimDrop.
	drops int
}

// conflicted reports whether several live pods claim address a.
func (c *compiler) conflicted(a netip.Addr) bool { return c.m.ips.conflicted(a) }

// markClaims records the addresses of pod id (its old and current records)
// that another live pod claims too: they are conflicted now, or were until
// this change. podChanged calls it once the model holds cur.
func (c *compiler) markClaims(id string, old, cur *podRecord) {
	for _, p := range [2]*podRecord{old, cur} {
		if !p.active() {
			continue
		}
		for _, a := range p.IPs {
			if c.m.ips.claimedByOther(a, id) {
				c.markConflict(a, p.Namespace())
			}
		}
	}
}

// markAllConflicts records every conflicted address: a policy change can
// change which policies select a claimant, local or not.
func (c *compiler) markAllConflicts() {
	for a := range c.m.ips.more {
		c.markConflict(a, "")
	}
}

func (c *compiler) markConflict(a netip.Addr, ns string) {
	if c.conf.dirty == nil {
		c.conf.dirty = map[netip.Addr][]string{}
	}
	nss := c.conf.dirty[a]
	if ns != "" && !slices.Contains(nss, ns) {
		nss = append(nss, ns)
	}
	c.conf.dirty[a] = nss
}

// resyncConflicts makes everything the marked addresses contribute follow
// from their current claimants. It ends every operation that may mark one.
func (c *compiler) resyncConflicts() {
	if len(c.conf.dirty) == 0 {
		return
	}
	for _, a := range slices.SortedFunc(maps.Keys(c.conf.dirty), netip.Addr.Compare) {
		claimants := c.m.podsByIP(a)
		c.resyncGroups(a, claimants, c.conf.dirty[a])
		for _, p := range claimants {
			c.refreshNamedOf(p)
		}
		for dir := range 2 {
			c.resyncDispatch(dir, a, claimants)
		}
	}
	clear(c.conf.dirty)
}

// --- peer sets ---

// groupWants reports whether address a belongs in g's peer set: some pod
// claims it and every claimant is a member with that address.
func groupWants(g *group, a netip.Addr, claimants []*podRecord) bool {
	for _, p := range claimants {
		if m := g.members[p.ID]; m == nil || !slices.Contains(m.IPs, a) {
			return false
		}
	}
	return len(claimants) > 0
}

// syncGroupAddr puts address a in g's peer set or takes it out, as its
// claimants say.
func (c *compiler) syncGroupAddr(g *group, a netip.Addr) {
	c.syncGroupAddrOf(g, a, c.m.podsByIP(a))
}

func (c *compiler) syncGroupAddrOf(g *group, a netip.Addr, claimants []*podRecord) {
	set := c.desired.Sets[g.setNames[famOf(a)]]
	if set == nil {
		return
	}
	e := addrElement(a)
	_, has := set.Elements[nft.ElementID(set, e)]
	switch want := groupWants(g, a, claimants); {
	case want && !has:
		c.addElement(set.Name, e)
	case !want && has:
		c.delElement(set.Name, e)
	}
}

// resyncGroups syncs address a in the groups that may hold it: those of the
// claimants' namespaces and of the namespaces in gone.
func (c *compiler) resyncGroups(a netip.Addr, claimants []*podRecord, gone []string) {
	seen := map[*group]bool{}
	visit := func(ns string) {
		for _, gs := range [2]map[*group]struct{}{c.localGroups[ns], c.nsGroupsByNS[ns]} {
			for g := range gs {
				if !seen[g] {
					seen[g] = true
					c.syncGroupAddrOf(g, a, claimants)
				}
			}
		}
	}
	for _, p := range claimants {
		visit(p.Namespace())
	}
	for _, ns := range gone {
		visit(ns)
	}
}

// --- named ports ---

// refreshNamedOf recomputes what pod p contributes to every named-port set it
// is a source of (refreshNamed leaves conflicted addresses out).
func (c *compiler) refreshNamedOf(p *podRecord) {
	sets := map[*namedSet]struct{}{}
	for _, ns := range c.allNamed {
		sets[ns] = struct{}{}
	}
	for _, gs := range [2]map[*group]struct{}{c.localGroups[p.Namespace()], c.nsGroupsByNS[p.Namespace()]} {
		for g := range gs {
			if g.members[p.ID] != nil {
				for ns := range g.dependents {
					sets[ns] = struct{}{}
				}
			}
		}
	}
	if c.local[p.ID] != nil {
		for _, pol := range c.policiesByNS[p.Namespace()] {
			if d := pol.dirs[dirIngress]; d != nil && d.active && d.targets[p.ID] != nil {
				for _, r := range d.rules {
					if r.namedSet != nil {
						sets[r.namedSet] = struct{}{}
					}
				}
			}
		}
	}
	for ns := range sets {
		if !ns.dead {
			c.refreshNamed(ns, p.ID, p)
		}
	}
}

// --- dispatch ---

// resyncDispatch makes the dispatch element of address a for direction dir
// what its claimants call for: with one claimant, that of syncLocalPod; with
// several, that of the conflict rule.
func (c *compiler) resyncDispatch(dir int, a netip.Addr, claimants []*podRecord) {
	var owner, chain string
	switch {
	case len(claimants) == 1:
		if lp := c.local[claimants[0].ID]; lp != nil && lp.chains[dir] != "" {
			owner, chain = claimants[0].ID, lp.chains[dir]
		}
	case len(claimants) > 1:
		owner, chain = claimOwner, c.claimChain(dir, claimants)
	}
	f := famOf(a)
	cur, has := c.vmapOwn[dir][f][a]
	if has {
		curChain := podChainName(dir, cur)
		if cur == claimOwner {
			curChain = c.conf.dispatch[dir][a]
		}
		if cur == owner && curChain == chain {
			return
		}
		c.dropDispatch(dir, a)
	}
	if chain == "" {
		return
	}
	c.vmapOwn[dir][f][a] = owner
	if owner == claimOwner {
		if c.conf.dispatch[dir] == nil {
			c.conf.dispatch[dir] = map[netip.Addr]string{}
		}
		c.conf.dispatch[dir][a] = chain
		if chain == chainClaimDrop {
			if c.conf.drops++; c.conf.drops == 1 {
				c.putChain(&nft.Chain{Name: chainClaimDrop,
					Comment: "addresses claimed by several pods with different policies: new connections dropped until one claimant is left",
					Rules:   []nft.Rule{{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}}}})
			}
		}
	}
	e := addrElement(a)
	e.Verdict = &nft.Verdict{Kind: nft.VerdictGoto, Chain: chain}
	c.addElement(vmapNames[dir][f], e)
}

// dropDispatch removes the dispatch element of a for dir, and the drop chain
// with its last element.
func (c *compiler) dropDispatch(dir int, a netip.Addr) {
	f := famOf(a)
	if c.vmapOwn[dir][f][a] == claimOwner {
		if c.conf.dispatch[dir][a] == chainClaimDrop {
			if c.conf.drops--; c.conf.drops == 0 {
				c.deleteChain(chainClaimDrop)
			}
		}
		delete(c.conf.dispatch[dir], a)
	}
	delete(c.vmapOwn[dir][f], a)
	c.delElement(vmapNames[dir][f], addrElement(a))
}

// claimChain is where the conflict rule sends new connections of direction
// dir from or to an address the claimants share ("" for no dispatch element).
func (c *compiler) claimChain(dir int, claimants []*podRecord) string {
	var local *localPod // the lowest ID: claimants are sorted
	for _, p := range claimants {
		if local = c.local[p.ID]; local != nil {
			break
		}
	}
	if local == nil {
		return ""
	}
	pols := c.selectingPolicies(dir, claimants[0])
	for _, p := range claimants[1:] {
		if !slices.Equal(c.selectingPolicies(dir, p), pols) {
			return chainClaimDrop
		}
	}
	switch {
	case len(pols) == 0:
		return ""
	case local.chains[dir] == "":
		// The same policies select the local claimant, so its chain
		// exists; should it not, drop rather than let traffic through.
		return chainClaimDrop
	}
	return local.chains[dir]
}

// selectingPolicies lists, sorted, the policies selecting pod p for direction
// dir, local or not (for a local pod, the policies of its chain).
func (c *compiler) selectingPolicies(dir int, p *podRecord) []string {
	var ids []string
	for id, pol := range c.policiesByNS[p.Namespace()] {
		if pol.dirs[dir] != nil && pol.podSel.Matches(p.Labels) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}
