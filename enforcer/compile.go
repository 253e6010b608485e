package enforcer

import (
	"log/slog"
	"maps"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
)

// compiler maintains the desired nft state incrementally. It orchestrates
// the parts that own the objects of the program, each in its own file:
//   - peerGroups (peergroups.go): selector groups, their share of the peer
//     sets (tags in sets shared by every group: taggedsets.go) and chains;
//   - sharedSets (sharedsets.go): ipBlock and port-list interval sets;
//   - namedPorts (namedports.go): named-port sets;
//   - dispatch (dispatch.go): verdict maps and pod chains of local pods;
//   - policyChains (policychains.go): the chain of each active policy
//     direction, which names what the others own;
//   - tiers (tiers.go): the ClusterNetworkPolicy tiers' subject groups,
//     class chains and class maps;
//   - conflicts.go: addresses claimed by several pods, across all of them;
//   - logging (logs.go): what the drop sites end in, the deny and audit
//     log chains, the limits and the flow log; counters (counters.go): the
//     named counters and what they mean; npAudits (audit.go): the chains
//     of audited NetworkPolicies;
//   - firstPacket (firstpacket.go): the pod CIDRs and known local addresses
//     of first-packet isolation, and its rules on both sides of the base chain.
//
// Each writes through one writer (writer.go), which records what every
// change touched so that Flush diffs only that. The compiler reads the
// cluster through the model and its indexes (schema.go, indexes.go).
type compiler struct {
	node string
	m    *model
	w    *writer

	groups   *peerGroups
	shared   *sharedSets
	named    *namedPorts
	dispatch *dispatch
	chains   *policyChains
	tiers    *tiers
	log      *logging
	counters *counters
	audits   *npAudits
	first    *firstPacket

	// fams are the address families the policy rules and peer sets are
	// compiled for: those in which a local active pod has an address
	// (localFams counts such pods per family). A packet reaches a policy
	// chain only through a dispatch element of a local pod's address, so rules
	// of another family could never match; on a single-stack node leaving
	// them out spares the kernel that family's rules and sets, and a new
	// connection its rules. Dispatch maps and the base and ingress chains stay dual-stack.
	fams      familySet
	localFams [2]int

	// dirty are the conflicted addresses to resync at the end of the current
	// operation, with the namespaces of pods that stopped claiming them there
	// (their groups may still hold the address); see conflicts.go.
	dirty map[netip.Addr][]string
}

func newCompiler(cfg *Config, m *model) *compiler {
	w := newWriter()
	node := cfg.NodeName
	c := &compiler{node: node, m: m, w: w}
	c.log = newLogging(w, cfg)
	c.counters = newCounters(w, cfg.Counters)
	c.groups = newPeerGroups(w, m, &c.fams)
	c.shared = newSharedSets(w)
	c.named = newNamedPorts(w, m, &c.fams)
	c.audits = newNPAudits(w, &c.fams, ruleSets{c.groups.sets, c.named.sets}, c.log)
	c.tiers = newTiers(w, m, node, c.named, c.log, c.counters)
	c.dispatch = newDispatch(w, m, node, c.tiers, c.log, c.counters, c.audits)
	c.chains = &policyChains{w: w, fams: &c.fams, groups: c.groups, shared: c.shared, named: c.named, log: c.log, counters: c.counters}
	c.first = newFirstPacket(w, m, c.log)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c.first.set(configPodCIDRs(cfg.PodCIDRs, log))
	c.putBaseChains()
	return c
}

// putBaseChains puts the base chain and the ingress chain (skeleton.go)
// with the rules of first-packet isolation in force.
func (c *compiler) putBaseChains() {
	c.w.putChain(forwardChain(c.first.rules(Egress)))
	c.w.putChain(ingressChain(c.first.rules(Ingress)))
}

// setPodCIDRs puts new pod CIDRs in force (Engine.SetPodCIDRs); the base
// chains are rewritten only when a family gains or loses its CIDRs.
func (c *compiler) setPodCIDRs(cidrs []netip.Prefix) {
	if c.first.set(cidrs) {
		c.putBaseChains()
	}
}

// collectGroups ends an operation: it deletes the peer groups nobody
// reacquired during it.
func (c *compiler) collectGroups() { c.groups.collect() }

// settle finishes what the compiler leaves for the moment the desired state
// is read: the class maps of the tiers (tiers.settle), the chains of the
// classes they use, and the shared sets' changes made while untracked
// (backlog.go).
func (c *compiler) settle() {
	c.tiers.settle()
	c.tiers.finishClasses()
	c.w.fillAll()
}

// --- policies ---

// addPolicy compiles in a policy: finds its local targets and activates it.
func (c *compiler) addPolicy(p *policy) {
	c.m.policies.put(p)
	if p.rec.Audit {
		c.log.countAudited(+1)
	}
	var touched []*localPod
	locals := c.m.local.inNamespace(p.ns)
	for _, id := range slices.Sorted(maps.Keys(locals)) { // ID order: deterministic transactions
		lp := locals[id]
		rec := lp.rec
		if !p.podSel.Matches(rec.selectable()) {
			continue
		}
		for dir, d := range p.dirs {
			if d == nil {
				continue
			}
			d.targets[rec.ID] = rec
			lp.pols[dir].put(p)
		}
		touched = append(touched, lp)
	}
	if c.m.local.count(p.ns) > 0 {
		for _, d := range p.dirs {
			if d != nil {
				c.chains.activate(d)
			}
		}
	}
	for _, lp := range touched {
		c.dispatch.syncPod(lp, lp.rec)
	}
	c.markAllConflicts()
	c.resyncConflicts()
}

// removePolicy compiles out a policy.
func (c *compiler) removePolicy(id string) {
	p := c.m.policies.remove(id)
	if p == nil {
		return
	}
	if p.rec.Audit {
		c.log.countAudited(-1)
	}
	touched := map[string]*localPod{}
	for dir, d := range p.dirs {
		if d == nil {
			continue
		}
		for pid := range d.targets {
			if lp := c.m.local.get(pid); lp != nil {
				lp.pols[dir].remove(id)
				touched[pid] = lp
			}
		}
		if d.active {
			c.chains.deactivate(d)
		}
	}
	for _, pid := range slices.Sorted(maps.Keys(touched)) {
		c.dispatch.syncPod(touched[pid], touched[pid].rec)
	}
	c.markAllConflicts()
	c.resyncConflicts()
}

// --- pods ---

// podChanged updates everything that depends on one pod (old or cur may be
// nil): its membership in the peer groups of its namespace, the named-port
// sets over it, and, for a pod of this node, its targets and dispatch.
func (c *compiler) podChanged(n podNum, old, cur *podRecord) {
	p := cur
	if p == nil {
		p = old
	}
	id, ns := p.ID, p.Namespace()
	c.markClaims(id, old, cur)
	c.tiers.podChanged(old, cur)
	refresh := map[*namedSet]struct{}{}
	c.groups.podChanged(n, ns, old, cur, refresh)
	c.named.addEvery(refresh)
	c.targetChanged(id, ns, cur, refresh)
	c.named.refreshAll(refresh, id, n, cur)
	c.syncFamilies()
	c.tiers.finishClasses()
	c.resyncConflicts()
}

// tiersMoved ends a tiers change that moved local pods between subject
// groups (tiers.go): their pod chains name the groups' class maps, and the
// claimants of an address are judged alike only with the same groups
// (conflicts.go).
func (c *compiler) tiersMoved(moved []string) {
	for _, id := range moved {
		if lp := c.m.local.get(id); lp != nil && lp.rec != nil {
			c.dispatch.syncPod(lp, lp.rec)
		}
	}
	c.tiers.finishClasses()
	if len(c.tiers.cnps) > 0 || len(moved) > 0 {
		c.markAllConflicts()
	}
}

// targetChanged updates pod id as a policy target of this node: a local
// active pod is one; the policies of a namespace are programmed while it has
// one (so that label changes and most pod churn touch only elements, while a
// node carries only what its pods need).
func (c *compiler) targetChanged(id, ns string, cur *podRecord, refresh map[*namedSet]struct{}) {
	lp := c.m.local.get(id)
	wasLocal := lp != nil
	isLocal := cur != nil && cur.active() && cur.Node.Value() == c.node && c.node != ""
	if !wasLocal && !isLocal {
		return
	}
	if !wasLocal {
		lp = c.m.local.add(id, ns)
		if c.m.local.count(ns) == 1 {
			c.chains.setActive(c.m.policies.inNamespace(ns), true)
		}
	}
	prev := lp.rec
	lp.rec = cur
	var was, is *podRecord // the records while local, for first-packet isolation
	if wasLocal {
		c.countLocalFamilies(prev, -1)
		was = prev
	}
	if isLocal {
		c.countLocalFamilies(cur, +1)
		is = cur
	}
	c.first.localChanged(was, is)
	c.retarget(lp, id, ns, cur, isLocal, refresh)
	c.dispatch.syncPod(lp, prev)
	if !isLocal {
		c.m.local.remove(id, ns)
		if c.m.local.count(ns) == 0 {
			c.chains.setActive(c.m.policies.inNamespace(ns), false)
		}
	}
}

// retarget makes the policies of the pod's namespace that select it (cur,
// selected only while local) its policies, and adds to refresh the ingress
// named-port sets of those that selected it or do now.
func (c *compiler) retarget(lp *localPod, id, ns string, cur *podRecord, isLocal bool, refresh map[*namedSet]struct{}) {
	for _, p := range c.m.policies.inNamespace(ns) {
		sel := isLocal && p.podSel.Matches(cur.selectable())
		for dir, d := range p.dirs {
			if d == nil {
				continue
			}
			_, had := d.targets[id]
			switch {
			case sel:
				d.targets[id] = cur
				lp.pols[dir].put(p)
			case had:
				delete(d.targets, id)
				lp.pols[dir].remove(p.id)
			}
			if d.dir == Ingress && d.active && (sel || had) {
				for _, r := range d.rules {
					if r.namedSet != nil {
						refresh[r.namedSet] = struct{}{}
					}
				}
			}
		}
	}
}

// countLocalFamilies adds delta to the local pod count of each family p has
// an address in.
func (c *compiler) countLocalFamilies(p *podRecord, delta int) {
	var has familySet
	for _, a := range p.IPs {
		has[familyOf(a)] = true
	}
	for _, f := range families {
		if has.has(f) {
			c.localFams[f] += delta
		}
	}
}

// syncFamilies recompiles the active policies when the families of the local
// pods changed: the first pod of a family arrived, or the last one left. It is
// rare (a dual-stack node flips once, with its first pod), so the rules are
// simply built again; unchanged sets and chains diff to nothing.
func (c *compiler) syncFamilies() {
	want := familySet{c.localFams[IPv4] > 0, c.localFams[IPv6] > 0}
	if want == c.fams {
		return
	}
	var active []*policyDir
	for _, id := range c.m.policies.ids() {
		for _, d := range c.m.policies.get(id).dirs {
			if d != nil && d.active {
				active = append(active, d)
			}
		}
	}
	for _, d := range active {
		c.chains.deactivate(d)
	}
	c.fams = want
	c.tiers.familiesChanged()
	for _, d := range active {
		c.chains.activate(d)
	}
	c.groups.syncFamilies()
	c.audits.refresh()
}

// --- namespaces ---

// namespaceChanged re-evaluates the namespace-selector groups for one namespace
// (exists false: deleted).
func (c *compiler) namespaceChanged(name string, l labels.Set, exists bool) {
	pods, refresh := c.groups.namespaceChanged(name, l, exists)
	if pods != nil { // nil: no group changed
		for n, p := range pods {
			c.named.refreshAll(refresh, p.ID, n, p)
		}
	}
	c.tiersMoved(c.tiers.namespaceChanged(name))
	c.resyncConflicts()
}

// clusterPolicyChanged compiles a ClusterNetworkPolicy that was stored
// (cur) or removed (cur nil).
func (c *compiler) clusterPolicyChanged(name string, cur *cnpRecord) {
	if prev := c.tiers.cnps[name]; prev != nil && prev.rec.Audit {
		c.log.countAudited(-1)
	}
	if cur != nil && cur.Audit {
		c.log.countAudited(+1)
	}
	c.tiersMoved(c.tiers.cnpChanged(name, cur))
	// Claimants are judged alike only with the same subjects
	// (conflicts.go): a policy change can change a claimant's on another
	// node, also when it deletes the last policy (tiersMoved marks them
	// while policies are left).
	c.markAllConflicts()
	c.resyncConflicts()
}
