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

// claimOwner marks, in dispatch.owner, a dispatch element set by the
// conflict rule rather than by one pod (a pod ID always holds a "/").
const claimOwner = "(several pods)"

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
	for a := range c.m.ips.conflicts() {
		c.markConflict(a, "")
	}
}

// markConflict records address a for the resync at the end of the operation,
// with ns the namespace of a pod that stopped claiming it ("" if none).
func (c *compiler) markConflict(a netip.Addr, ns string) {
	if c.dirty == nil {
		c.dirty = map[netip.Addr][]string{}
	}
	nss := c.dirty[a]
	if ns != "" && !slices.Contains(nss, ns) {
		nss = append(nss, ns)
	}
	c.dirty[a] = nss
}

// resyncConflicts makes everything the marked addresses contribute follow
// from their current claimants. It ends every operation that may mark one.
func (c *compiler) resyncConflicts() {
	if len(c.dirty) == 0 {
		return
	}
	for _, a := range slices.SortedFunc(maps.Keys(c.dirty), netip.Addr.Compare) {
		claimants := c.m.podsByIP(a)
		c.groups.resyncAddr(a, claimants, c.dirty[a])
		for _, p := range claimants {
			c.refreshNamedOf(p)
		}
		for _, dir := range directions {
			c.dispatch.resync(dir, a, claimants)
		}
	}
	clear(c.dirty)
}

// --- peer sets ---

// groupWants reports whether address a belongs in g's peer set: some pod
// claims it and every claimant (the current records of the pods with
// address a) is a member.
func groupWants(g *group, pods *podIndex, claimants []*podRecord) bool {
	for _, p := range claimants {
		if n, ok := pods.num(p.ID); !ok || !g.has(n) {
			return false
		}
	}
	return len(claimants) > 0
}

// syncAddr puts address a (with g's tag) in the peer set of its family or
// takes it out, as its claimants say.
func (pg *peerGroups) syncAddr(g *group, a netip.Addr) {
	pg.syncAddrOf(g, a, pg.m.podsByIP(a))
}

func (pg *peerGroups) syncAddrOf(g *group, a netip.Addr, claimants []*podRecord) {
	f := familyOf(a)
	if !g.fams.has(f) {
		return
	}
	set, k := pg.sets.name(f, g.tag), g.element(a)
	has := pg.w.hasKey(set, k)
	switch want := groupWants(g, &pg.m.pods, claimants); {
	case want && !has:
		pg.w.addKey(set, k)
	case !want && has:
		pg.w.delKey(set, k)
	}
}

// resyncAddr syncs address a in the groups that may hold it: those of the
// claimants' namespaces and of the namespaces in gone.
func (pg *peerGroups) resyncAddr(a netip.Addr, claimants []*podRecord, gone []string) {
	seen := map[*group]bool{}
	visit := func(ns string) {
		for g := range pg.concerning(ns) {
			if !seen[g] {
				seen[g] = true
				pg.syncAddrOf(g, a, claimants)
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
// is a source of (namedPorts.refresh leaves conflicted addresses out).
func (c *compiler) refreshNamedOf(p *podRecord) {
	sets := map[*namedSet]struct{}{}
	c.named.addEvery(sets)
	n, _ := c.m.pods.num(p.ID)
	for g := range c.groups.concerning(p.Namespace()) {
		if g.has(n) {
			for ns := range g.dependents {
				sets[ns] = struct{}{}
			}
		}
	}
	if c.m.local.get(p.ID) != nil {
		for _, pol := range c.m.policies.inNamespace(p.Namespace()) {
			if d := pol.dirs[Ingress]; d != nil && d.active && d.targets[p.ID] != nil {
				for _, r := range d.rules {
					if r.namedSet != nil {
						sets[r.namedSet] = struct{}{}
					}
				}
			}
		}
	}
	c.named.refreshAll(sets, p.ID, n, p)
}

// --- dispatch ---

// resync makes the dispatch element of address a for direction dir what its
// claimants call for: with one claimant, that of syncPod; with several, that
// of the conflict rule.
func (dp *dispatch) resync(dir Direction, a netip.Addr, claimants []*podRecord) {
	var owner, chain string
	switch {
	case len(claimants) == 1:
		if ch := dp.chain(claimants[0].ID, dir); ch != "" {
			owner, chain = claimants[0].ID, ch
		}
	case len(claimants) > 1:
		owner, chain = claimOwner, dp.claimChain(dir, claimants)
	}
	f := familyOf(a)
	cur, has := dp.owner[dir][f][a]
	if has {
		curChain := podChainName(dir, cur)
		if cur == claimOwner {
			curChain = dp.claimed[dir][a]
		}
		if cur == owner && curChain == chain {
			return
		}
		dp.drop(dir, a)
	}
	if chain == "" {
		return
	}
	dp.owner[dir][f][a] = owner
	if owner == claimOwner {
		dp.claim(dir, a, chain)
	}
	e := addrElement(a)
	e.Verdict = &nft.Verdict{Kind: nft.VerdictGoto, Chain: chain}
	dp.w.addElement(vmapName(dir, f), e)
}

// claim records that the conflict rule sends a to chain, creating the drop
// chain with its first element.
func (dp *dispatch) claim(dir Direction, a netip.Addr, chain string) {
	if dp.claimed[dir] == nil {
		dp.claimed[dir] = map[netip.Addr]string{}
	}
	dp.claimed[dir][a] = chain
	if chain == chainClaimDrop {
		if dp.drops++; dp.drops == 1 {
			dp.w.putChain(&nft.Chain{Name: chainClaimDrop,
				Comment: "addresses claimed by several pods with different policies: new connections dropped until one claimant is left",
				Rules:   []nft.Rule{{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}}}})
		}
	}
}

// drop removes the dispatch element of a for dir, and the drop chain with
// its last element.
func (dp *dispatch) drop(dir Direction, a netip.Addr) {
	f := familyOf(a)
	if dp.owner[dir][f][a] == claimOwner {
		if dp.claimed[dir][a] == chainClaimDrop {
			if dp.drops--; dp.drops == 0 {
				dp.w.deleteChain(chainClaimDrop)
			}
		}
		delete(dp.claimed[dir], a)
	}
	delete(dp.owner[dir][f], a)
	dp.w.delElement(vmapName(dir, f), addrElement(a))
}

// claimDrop is the chain of a denied claimed address: claimed-drop, or
// with the deny log (or node-wide audit) on the shared chain of the
// claimed site (logs.go), which logs.
func (dp *dispatch) claimDrop(dir Direction) string {
	if v := dp.log.dropVerdict(dir, siteClaimed); v.Kind == nft.VerdictGoto {
		return v.Chain
	}
	return chainClaimDrop
}

// claimChain is where the conflict rule sends new connections of direction
// dir from or to an address the claimants share ("" for no dispatch element).
func (dp *dispatch) claimChain(dir Direction, claimants []*podRecord) string {
	local := "" // the lowest ID: claimants are sorted
	for _, p := range claimants {
		if dp.m.local.get(p.ID) != nil {
			local = p.ID
			break
		}
	}
	if local == "" {
		return ""
	}
	pols := dp.m.selectingPolicies(dir, claimants[0])
	tiers := dp.tiers.signature(dir, claimants[0])
	for _, p := range claimants[1:] {
		if !slices.Equal(dp.m.selectingPolicies(dir, p), pols) || dp.tiers.signature(dir, p) != tiers {
			// Judged by different policies or ClusterNetworkPolicies
			// (whose tiers might then judge them differently).
			return dp.claimDrop(dir)
		}
	}
	switch {
	case len(pols) == 0 && !dp.tiers.concerns(local, dir):
		return ""
	case dp.chain(local, dir) == "":
		// The same policies select the local claimant, so its chain
		// exists; should it not, drop rather than let traffic through.
		return dp.claimDrop(dir)
	}
	return dp.chain(local, dir)
}

// selectingPolicies lists, sorted, the policies selecting pod p for direction
// dir, local or not (for a local pod, the policies of its chain).
func (m *model) selectingPolicies(dir Direction, p *podRecord) []string {
	var ids []string
	for id, pol := range m.policies.inNamespace(p.Namespace()) {
		if pol.dirs[dir] != nil && pol.podSel.Matches(p.Labels) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}
