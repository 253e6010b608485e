package enforcer

import (
	"maps"
	"net/netip"
	"slices"
	"sort"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/nftwarden/nftwarden/nft"
)

// compiler maintains the desired nft state incrementally. Every change records
// what it touched in scope, so Flush diffs only that.
type compiler struct {
	node    string
	m       *model
	desired *nft.State
	scope   *nft.Scope
	// untracked turns scope marking off while a full reconcile is pending
	// anyway (start-up, after a failure): the initial build does not pay for it.
	untracked bool

	policies     map[string]*policy
	policiesByNS map[string]map[string]*policy

	groups       map[string]*group
	localGroups  map[string]map[*group]struct{} // namespace -> namespace-local groups
	nsSelGroups  map[*group]struct{}            // all namespace-selector groups
	nsGroupsByNS map[string]map[*group]struct{} // namespace -> namespace-selector groups matching it
	// gcGroups are groups whose last reference went away during the current
	// operation; they are deleted at its end unless reacquired (a policy update
	// releases and reacquires the same groups).
	gcGroups map[*group]struct{}

	shared map[string]int // cidr and ports sets: references
	// allNamed are the egress named sets over every pod (rules without
	// peers, ipBlock peers) by key, shared by the rules with the same named
	// ports: each mirrors every pod's named ports, so one per rule would
	// multiply the biggest sets of the node by the number of such rules.
	allNamed map[string]*namedSet
	local    map[string]*localPod // local active pods by ID
	// localByNS holds the same pods by namespace: the pods a new policy may
	// select (the model has no index by node for that: each index costs a
	// radix insert per pod cluster-wide, for a query about a few local pods).
	localByNS map[string]map[string]*localPod
	// localPerNS counts the local active pods per namespace: the policies of a
	// namespace are programmed while it has one, so that label changes and most
	// pod churn touch only elements, while a node carries only what its pods need.
	localPerNS map[string]int
	vmapOwn    [2][2]map[netip.Addr]string // [dir][fam] IP -> pod owning the dispatch element (or claimOwner)
	// conf is what the rule for addresses claimed by several pods programmed
	// (conflicts.go).
	conf conflicts
	// fams are the address families the policy rules and peer sets are
	// compiled for: those in which a local active pod has an address
	// (localFams counts such pods per family). A packet reaches a policy
	// chain only through a dispatch element of a local pod's address, so rules
	// of another family could never match; on a single-stack node leaving
	// them out spares the kernel that family's rules and sets, and a new
	// connection its rules. Dispatch maps and base chains stay dual-stack.
	fams      [2]bool
	localFams [2]int
}

// group is a peer selector pair: one set per family holding the IPs of the
// matching pods cluster-wide.
type group struct {
	spec       *groupSpec
	refs       int
	members    map[string]*podRecord
	nsMatch    map[string]bool // namespace-selector groups: matching namespaces
	setNames   [2]string
	dependents map[*namedSet]struct{}
	// chainRefs counts, per direction, the active rules that jump to the
	// group's peer chain; the chain exists while it is positive.
	chainRefs [2]int
}

// namedSet holds the (IP, protocol, port) triples of one rule's named ports,
// resolved over its sources: the local targets of the policy (ingress), the
// selector peer pods of the rule (egress), or every active pod (egress rules
// without peers, and ipBlock peers).
type namedSet struct {
	names   [2]string // per family; "" for a family no rule matches against
	ports   []portName
	dir     *policyDir // ingress source
	groups  []*group   // egress source
	all     bool       // every active pod
	key     string     // every-pod sets: key in compiler.allNamed
	refs    int        // every-pod sets: active rules using it
	contrib map[string][]nft.Element
	count   [2]map[string]int
	dead    bool // its policy direction was deactivated
}

// localPod is a local active pod with the policies that select it.
type localPod struct {
	rec    *podRecord
	pols   [2]map[string]*policy
	chains [2]string
}

func newCompiler(node string, m *model) *compiler {
	c := &compiler{
		node:         node,
		m:            m,
		desired:      nft.NewState(),
		scope:        &nft.Scope{},
		policies:     map[string]*policy{},
		policiesByNS: map[string]map[string]*policy{},
		groups:       map[string]*group{},
		localGroups:  map[string]map[*group]struct{}{},
		nsSelGroups:  map[*group]struct{}{},
		nsGroupsByNS: map[string]map[*group]struct{}{},
		gcGroups:     map[*group]struct{}{},
		shared:       map[string]int{},
		allNamed:     map[string]*namedSet{},
		local:        map[string]*localPod{},
		localByNS:    map[string]map[string]*localPod{},
		localPerNS:   map[string]int{},
	}
	for d := range 2 {
		for f := range 2 {
			c.vmapOwn[d][f] = map[netip.Addr]string{}
			c.putSet(nft.Set{Name: vmapNames[d][f], Key: []nft.KeyType{addrTypes[f]}, VerdictMap: true,
				Comment: "local pods isolated for " + dirNames[d] + " (" + famNames[f] + ")"})
		}
	}
	c.putChain(baseChain(dirEgress, chainEgress, nft.PriorityFilter, "egress policy of local pods"))
	c.putChain(baseChain(dirIngress, chainIngress, nft.PriorityFilter+1, "ingress policy of local pods"))
	return c
}

// --- desired-state primitives (each records what it touched) ---

func (c *compiler) putChain(ch *nft.Chain) {
	ch.Comment = comment(ch.Comment)
	c.desired.Chains[ch.Name] = ch
	if !c.untracked {
		c.scope.MarkChain(ch.Name)
	}
}

func (c *compiler) deleteChain(name string) {
	delete(c.desired.Chains, name)
	if !c.untracked {
		c.scope.MarkChain(name)
	}
}

func (c *compiler) putSet(s nft.Set) *nft.Set { return c.putSetSized(s, 0) }

// putSetSized puts an empty set with room for n elements.
func (c *compiler) putSetSized(s nft.Set, n int) *nft.Set {
	s.Comment = comment(s.Comment)
	s.Elements = make(map[string]nft.Element, n)
	c.desired.Sets[s.Name] = &s
	if !c.untracked {
		c.scope.MarkSet(s.Name)
	}
	return &s
}

func (c *compiler) deleteSet(name string) {
	delete(c.desired.Sets, name)
	if !c.untracked {
		c.scope.MarkSet(name)
	}
}

func (c *compiler) addElement(set string, e nft.Element) {
	s := c.desired.Sets[set]
	id := nft.ElementID(s, e)
	s.Elements[id] = e
	if !c.untracked {
		c.scope.MarkElement(set, id)
	}
}

func (c *compiler) delElement(set string, e nft.Element) {
	s := c.desired.Sets[set]
	id := nft.ElementID(s, e)
	delete(s.Elements, id)
	if !c.untracked {
		c.scope.MarkElement(set, id)
	}
}

func addrElement(a netip.Addr) nft.Element { return nft.Element{Key: []nft.Value{nft.AddrValue(a)}} }

// --- shared sets (ipBlocks and port lists) ---

func (c *compiler) acquireShared(s *sharedSpec) {
	c.shared[s.name]++
	if c.shared[s.name] == 1 {
		set := c.putSet(s.set)
		for _, e := range s.elems {
			set.Elements[nft.ElementID(set, e)] = e
		}
	}
}

func (c *compiler) releaseShared(s *sharedSpec) {
	c.shared[s.name]--
	if c.shared[s.name] <= 0 {
		delete(c.shared, s.name)
		c.deleteSet(s.name)
	}
}

// --- peer groups ---

func (c *compiler) acquireGroup(spec *groupSpec) *group {
	g := c.groups[spec.key]
	if g != nil {
		g.refs++
		delete(c.gcGroups, g)
		return g
	}
	g = &group{
		spec:       spec,
		refs:       1,
		dependents: map[*namedSet]struct{}{},
	}
	c.groups[spec.key] = g
	var pods []*podRecord
	if spec.nsSel == nil {
		addTo(c.localGroups, spec.local, g)
		pods = c.m.podsInNamespace(spec.local)
	} else {
		g.nsMatch = map[string]bool{}
		c.nsSelGroups[g] = struct{}{}
		for _, ns := range c.m.namespaces() {
			if spec.nsSel.Matches(ns.Labels) {
				g.nsMatch[ns.Name] = true
				addTo(c.nsGroupsByNS, ns.Name, g)
				pods = append(pods, c.m.podsInNamespace(ns.Name)...)
			}
		}
	}
	// Find the members first and allocate the member map and the sets at their
	// final size: growing them pod by pod was most of the cost of a large group.
	members := pods[:0]
	var addrs [2]int
	for _, p := range pods {
		if p.active() && spec.podSel.Matches(p.Labels) {
			members = append(members, p)
			for _, a := range p.IPs {
				addrs[famOf(a)]++
			}
		}
	}
	g.members = make(map[string]*podRecord, len(members))
	for f := range 2 {
		if c.fams[f] {
			c.putGroupSet(g, f, addrs[f])
		}
	}
	for _, p := range members {
		c.setMember(g, p.ID, p, true)
	}
	return g
}

// putGroupSet creates g's (empty) peer set of family f with room for n elements.
func (c *compiler) putGroupSet(g *group, f, n int) {
	g.setNames[f] = peerSetName(f, g.spec.key)
	c.putSetSized(nft.Set{Name: g.setNames[f], Key: []nft.KeyType{addrTypes[f]}, Comment: g.spec.desc}, n)
}

// syncGroupFamilies gives g a peer set for exactly the families in c.fams,
// filling a new one from the current members, and its peer chains the rules
// of those families.
func (c *compiler) syncGroupFamilies(g *group) {
	changed := false
	for f := range 2 {
		switch {
		case c.fams[f] && g.setNames[f] == "":
			changed = true
			c.putGroupSet(g, f, 0)
			for _, p := range g.members {
				for _, a := range p.IPs {
					switch {
					case famOf(a) != f:
					case c.conflicted(a):
						c.syncGroupAddr(g, a)
					default:
						c.addElement(g.setNames[f], addrElement(a))
					}
				}
			}
		case !c.fams[f] && g.setNames[f] != "":
			changed = true
			c.deleteSet(g.setNames[f])
			g.setNames[f] = ""
		}
	}
	for dir := range 2 {
		if changed && g.chainRefs[dir] > 0 {
			c.putPeerChain(g, dir)
		}
	}
}

// --- peer chains ---
//
// A policy rule to a selector peer with numeric or no ports matches the ports
// (a few inline comparisons, a set for long lists) and jumps to the group's
// peer chain, which matches the group's addresses of every family and
// accepts. The kernel resolves each set a rule names by a walk over the
// table's sets and creates each set after a walk over all of them, so naming
// each peer set once per group and direction, and keeping short port lists out
// of sets, is what keeps loading a node with thousands of policies well under
// a second whatever the variety of their peers and ports; chains are found by
// a hash. Per packet, the cheap port comparisons come first, and the peer
// lookup runs only for a port the rule allows.

func (c *compiler) acquirePeerChain(g *group, dir int) {
	if g.chainRefs[dir]++; g.chainRefs[dir] == 1 {
		c.putPeerChain(g, dir)
	}
}

func (c *compiler) releasePeerChain(g *group, dir int) {
	if g.chainRefs[dir]--; g.chainRefs[dir] == 0 {
		c.deleteChain(peerChainName(dir, g.spec.key))
	}
}

func (c *compiler) putPeerChain(g *group, dir int) {
	field := saddrFields
	if dir == dirEgress {
		field = daddrFields
	}
	var rules []nft.Rule
	for f := range 2 {
		if g.setNames[f] != "" {
			rules = append(rules, nft.Rule{Exprs: []nft.Expr{
				nft.Lookup{Fields: []nft.Field{field[f]}, Set: g.setNames[f]},
				nft.Verdict{Kind: nft.VerdictAccept},
			}})
		}
	}
	c.putChain(&nft.Chain{Name: peerChainName(dir, g.spec.key), Comment: [2]string{"ingress from ", "egress to "}[dir] + g.spec.desc, Rules: rules})
}

func (c *compiler) releaseGroup(g *group) {
	g.refs--
	if g.refs <= 0 {
		c.gcGroups[g] = struct{}{}
	}
}

// collectGroups deletes the groups nobody reacquired during the operation.
func (c *compiler) collectGroups() {
	for g := range c.gcGroups {
		if g.refs > 0 {
			continue
		}
		delete(c.groups, g.spec.key)
		if g.spec.nsSel == nil {
			removeFrom(c.localGroups, g.spec.local, g)
		} else {
			delete(c.nsSelGroups, g)
			for ns := range g.nsMatch {
				removeFrom(c.nsGroupsByNS, ns, g)
			}
		}
		for f := range 2 {
			if g.setNames[f] != "" {
				c.deleteSet(g.setNames[f])
			}
		}
	}
	clear(c.gcGroups)
}

// updateMember makes p's membership in g match its current record (p == nil or
// inactive: not a member) and reports whether anything changed.
func (c *compiler) updateMember(g *group, p *podRecord) bool {
	return c.setMember(g, p.ID, p, p.active() && g.spec.podSel.Matches(p.Labels) && c.groupHasNS(g, p.Namespace()))
}

func (c *compiler) groupHasNS(g *group, ns string) bool {
	if g.spec.nsSel == nil {
		return g.spec.local == ns
	}
	return g.nsMatch[ns]
}

func (c *compiler) setMember(g *group, id string, p *podRecord, in bool) bool {
	old := g.members[id]
	var oldIPs, newIPs []netip.Addr
	if old != nil {
		oldIPs = old.IPs
	}
	if in {
		newIPs = p.IPs
		g.members[id] = p
	} else {
		if old == nil {
			return false
		}
		delete(g.members, id)
	}
	// An address another pod claims too is in the set only if every
	// claimant is a member (conflicts.go).
	for _, a := range oldIPs {
		if set := g.setNames[famOf(a)]; set != "" && !slices.Contains(newIPs, a) {
			if c.m.ips.claimedByOther(a, id) {
				c.syncGroupAddr(g, a)
			} else {
				c.delElement(set, addrElement(a))
			}
		}
	}
	for _, a := range newIPs {
		if set := g.setNames[famOf(a)]; set != "" && !slices.Contains(oldIPs, a) {
			if c.conflicted(a) {
				c.syncGroupAddr(g, a)
			} else {
				c.addElement(set, addrElement(a))
			}
		}
	}
	return old == nil || !in || !slices.Equal(oldIPs, newIPs) || !slices.Equal(old.Ports, p.Ports)
}

// --- named-port sets ---

// newNamedSet creates the sets of a named-port set for the families in fams
// that the rules are compiled for.
func (c *compiler) newNamedSet(ports []portName, key, comment string, fams [2]bool) *namedSet {
	ns := &namedSet{ports: ports, contrib: map[string][]nft.Element{}}
	for f := range 2 {
		if !fams[f] || !c.fams[f] {
			continue
		}
		ns.names[f] = namedSetName(f, key)
		ns.count[f] = map[string]int{}
		c.putSet(nft.Set{Name: ns.names[f],
			Key:     []nft.KeyType{addrTypes[f], nft.TypeInetProto, nft.TypeInetService},
			Comment: comment})
	}
	return ns
}

// acquireAllNamed returns the egress named set over every active pod for the
// named ports of r, which a rule without peers or an ipBlock peer matches
// against: the destination may be any pod, and the name resolves on it.
// podChanged keeps it current.
func (c *compiler) acquireAllNamed(r *policyRule) *namedSet {
	if ns := c.allNamed[r.allKey]; ns != nil {
		ns.refs++
		return ns
	}
	ns := c.newNamedSet(r.named, r.allKey, r.allKey, r.allFams)
	ns.all, ns.key, ns.refs = true, r.allKey, 1
	c.allNamed[r.allKey] = ns
	for _, p := range c.m.pods() {
		c.refreshNamed(ns, p.ID, p)
	}
	return ns
}

// releaseAllNamed drops a rule's use of an every-pod named set, and the set
// with its last user.
func (c *compiler) releaseAllNamed(ns *namedSet) {
	if ns.refs--; ns.refs <= 0 {
		c.dropNamedSet(ns)
	}
}

// dropNamedSet removes a named set of a deactivated rule.
func (c *compiler) dropNamedSet(ns *namedSet) {
	for _, g := range ns.groups {
		delete(g.dependents, ns)
	}
	if ns.all {
		delete(c.allNamed, ns.key)
	}
	ns.dead = true
	for f := range 2 {
		if ns.names[f] != "" {
			c.deleteSet(ns.names[f])
		}
	}
}

// has reports whether p is a source of the named set.
func (ns *namedSet) has(p *podRecord) bool {
	switch {
	case ns.dir != nil:
		return ns.dir.targets[p.ID] != nil
	case ns.all:
		return p.active()
	}
	for _, g := range ns.groups {
		if g.members[p.ID] != nil {
			return true
		}
	}
	return false
}

// refreshNamed recomputes the elements pod id contributes (p nil: deleted
// pod). An address several pods claim matches no named port (conflicts.go).
func (c *compiler) refreshNamed(ns *namedSet, id string, p *podRecord) {
	var want []nft.Element
	if p != nil && ns.has(p) {
		for _, pn := range ns.ports {
			for _, port := range p.resolve(pn.Name, pn.Proto) {
				for _, a := range p.IPs {
					if ns.names[famOf(a)] == "" || c.conflicted(a) {
						continue
					}
					want = append(want, nft.Element{Key: []nft.Value{nft.AddrValue(a), nft.ProtoValue(pn.Proto), nft.PortValue(port)}})
				}
			}
		}
	}
	old := ns.contrib[id]
	if len(old) == 0 && len(want) == 0 {
		return
	}
	for _, e := range want {
		f := famByLen(e.Key[0])
		set := c.desired.Sets[ns.names[f]]
		eid := nft.ElementID(set, e)
		ns.count[f][eid]++
		if ns.count[f][eid] == 1 {
			c.addElement(ns.names[f], e)
		}
	}
	for _, e := range old {
		f := famByLen(e.Key[0])
		set := c.desired.Sets[ns.names[f]]
		eid := nft.ElementID(set, e)
		ns.count[f][eid]--
		if ns.count[f][eid] <= 0 {
			delete(ns.count[f], eid)
			c.delElement(ns.names[f], e)
		}
	}
	if len(want) == 0 {
		delete(ns.contrib, id)
	} else {
		ns.contrib[id] = want
	}
}

func famByLen(v nft.Value) int {
	if len(v) == 4 {
		return famV4
	}
	return famV6
}

// --- policies ---

// activate creates the chain and sets of a policy direction that just got its
// first local target.
func (c *compiler) activate(d *policyDir) {
	d.active = true
	for _, r := range d.rules {
		for _, p := range r.peers {
			if p.group != nil {
				g := c.acquireGroup(p.group)
				if r.usesPeerChain() {
					c.acquirePeerChain(g, d.dir)
				}
			} else if c.fams[p.fam] {
				c.acquireShared(p.cidr)
			}
		}
		if r.numeric != nil && r.numeric.inline == nil {
			c.acquireShared(r.numeric)
		}
		if r.allKey != "" {
			r.allSet = c.acquireAllNamed(r)
		}
		if r.namedKey == "" {
			continue
		}
		ns := c.newNamedSet(r.named, r.namedKey, "named ports of "+r.namedKey, [2]bool{true, true})
		r.namedSet = ns
		if d.dir == dirIngress {
			ns.dir = d
			for id, p := range d.targets {
				c.refreshNamed(ns, id, p)
			}
		} else {
			for _, p := range r.peers {
				if p.group == nil {
					continue
				}
				g := c.groups[p.group.key]
				ns.groups = append(ns.groups, g)
				g.dependents[ns] = struct{}{}
			}
			for _, g := range ns.groups {
				for id, p := range g.members {
					if _, done := ns.contrib[id]; !done {
						c.refreshNamed(ns, id, p)
					}
				}
			}
		}
	}
	c.putChain(&nft.Chain{Name: d.chain, Comment: d.pol.id + " " + dirNames[d.dir] + " rule list", Rules: d.buildRules(c.fams)})
}

func (c *compiler) deactivate(d *policyDir) {
	d.active = false
	c.deleteChain(d.chain)
	for _, r := range d.rules {
		for _, p := range r.peers {
			if p.group != nil {
				g := c.groups[p.group.key]
				if r.usesPeerChain() {
					c.releasePeerChain(g, d.dir)
				}
				c.releaseGroup(g)
			} else if c.fams[p.fam] {
				c.releaseShared(p.cidr)
			}
		}
		if r.numeric != nil && r.numeric.inline == nil {
			c.releaseShared(r.numeric)
		}
		if r.namedSet != nil {
			c.dropNamedSet(r.namedSet)
		}
		if r.allSet != nil {
			c.releaseAllNamed(r.allSet)
		}
		r.namedSet, r.allSet = nil, nil
	}
}

// addPolicy compiles in a policy: finds its local targets and activates it.
func (c *compiler) addPolicy(p *policy) {
	c.policies[p.id] = p
	m := c.policiesByNS[p.ns]
	if m == nil {
		m = map[string]*policy{}
		c.policiesByNS[p.ns] = m
	}
	m[p.id] = p
	var touched []*localPod
	locals := c.localByNS[p.ns]
	for _, id := range slices.Sorted(maps.Keys(locals)) { // ID order: deterministic transactions
		lp := locals[id]
		rec := lp.rec
		if !p.podSel.Matches(rec.Labels) {
			continue
		}
		for dir, d := range p.dirs {
			if d == nil {
				continue
			}
			d.targets[rec.ID] = rec
			lp.pols[dir][p.id] = p
		}
		touched = append(touched, lp)
	}
	if c.localPerNS[p.ns] > 0 {
		for _, d := range p.dirs {
			if d != nil {
				c.activate(d)
			}
		}
	}
	for _, lp := range touched {
		c.syncLocalPod(lp)
	}
	c.markAllConflicts()
	c.resyncConflicts()
}

// removePolicy compiles out a policy.
func (c *compiler) removePolicy(id string) {
	p := c.policies[id]
	if p == nil {
		return
	}
	delete(c.policies, id)
	removeKey(c.policiesByNS, p.ns, id)
	touched := map[string]*localPod{}
	for dir, d := range p.dirs {
		if d == nil {
			continue
		}
		for pid := range d.targets {
			if lp := c.local[pid]; lp != nil {
				delete(lp.pols[dir], id)
				touched[pid] = lp
			}
		}
		if d.active {
			c.deactivate(d)
		}
	}
	for _, pid := range slices.Sorted(maps.Keys(touched)) {
		c.syncLocalPod(touched[pid])
	}
	c.markAllConflicts()
	c.resyncConflicts()
}

// --- pods ---

// podChanged updates everything that depends on one pod (old or new may be nil).
func (c *compiler) podChanged(old, cur *podRecord) {
	var id, ns string
	if cur != nil {
		id, ns = cur.ID, cur.Namespace()
	} else {
		id, ns = old.ID, old.Namespace()
	}
	c.markClaims(id, old, cur)
	// Peer groups that can concern the pod's namespace.
	named := map[*namedSet]struct{}{}
	check := func(g *group) {
		var changed bool
		if cur == nil {
			changed = c.setMember(g, id, nil, false)
		} else {
			changed = c.updateMember(g, cur)
		}
		if changed {
			for ns := range g.dependents {
				named[ns] = struct{}{}
			}
		}
	}
	for g := range c.localGroups[ns] {
		check(g)
	}
	for g := range c.nsGroupsByNS[ns] {
		check(g)
	}
	for _, nset := range c.allNamed {
		named[nset] = struct{}{}
	}

	// Targets: only local pods.
	wasLocal := c.local[id] != nil
	isLocal := cur != nil && cur.active() && cur.Node.Value() == c.node && c.node != ""
	if isLocal && !wasLocal {
		c.localPerNS[ns]++
		if c.localPerNS[ns] == 1 {
			c.setNamespaceActive(ns, true)
		}
	}
	if wasLocal || isLocal {
		lp := c.local[id]
		if lp == nil {
			lp = &localPod{pols: [2]map[string]*policy{{}, {}}}
			c.local[id] = lp
			if c.localByNS[ns] == nil {
				c.localByNS[ns] = map[string]*localPod{}
			}
			c.localByNS[ns][id] = lp
		}
		prev := lp.rec
		lp.rec = cur
		if wasLocal {
			c.countLocalFamilies(prev, -1)
		}
		if isLocal {
			c.countLocalFamilies(cur, +1)
		}
		for _, p := range c.policiesByNS[ns] {
			sel := isLocal && p.podSel.Matches(cur.Labels)
			for dir, d := range p.dirs {
				if d == nil {
					continue
				}
				_, had := d.targets[id]
				switch {
				case sel:
					d.targets[id] = cur
					lp.pols[dir][p.id] = p
				case had:
					delete(d.targets, id)
					delete(lp.pols[dir], p.id)
				}
				if d.dir == dirIngress && d.active && (sel || had) {
					for _, r := range d.rules {
						if r.namedSet != nil {
							named[r.namedSet] = struct{}{}
						}
					}
				}
			}
		}
		c.syncLocalPodFrom(lp, prev)
		if !isLocal {
			delete(c.local, id)
			removeKey(c.localByNS, ns, id)
		}
	}
	if wasLocal && !isLocal {
		c.localPerNS[ns]--
		if c.localPerNS[ns] == 0 {
			delete(c.localPerNS, ns)
			c.setNamespaceActive(ns, false)
		}
	}
	for nset := range named {
		if !nset.dead {
			c.refreshNamed(nset, id, cur)
		}
	}
	c.syncFamilies()
	c.resyncConflicts()
}

// countLocalFamilies adds delta to the local pod count of each family p has
// an address in.
func (c *compiler) countLocalFamilies(p *podRecord, delta int) {
	var has [2]bool
	for _, a := range p.IPs {
		has[famOf(a)] = true
	}
	for f := range 2 {
		if has[f] {
			c.localFams[f] += delta
		}
	}
}

// syncFamilies recompiles the active policies when the families of the local
// pods changed: the first pod of a family arrived, or the last one left. It is
// rare (a dual-stack node flips once, with its first pod), so the rules are
// simply built again; unchanged sets and chains diff to nothing.
func (c *compiler) syncFamilies() {
	want := [2]bool{c.localFams[famV4] > 0, c.localFams[famV6] > 0}
	if want == c.fams {
		return
	}
	var active []*policyDir
	for _, id := range slices.Sorted(maps.Keys(c.policies)) {
		for _, d := range c.policies[id].dirs {
			if d != nil && d.active {
				active = append(active, d)
			}
		}
	}
	for _, d := range active {
		c.deactivate(d)
	}
	c.fams = want
	for _, d := range active {
		c.activate(d)
	}
	for _, g := range c.groups {
		c.syncGroupFamilies(g)
	}
}

// setNamespaceActive programs or removes the policies of a namespace that got
// its first local pod or lost its last one.
func (c *compiler) setNamespaceActive(ns string, on bool) {
	for _, p := range c.policiesByNS[ns] {
		for _, d := range p.dirs {
			if d != nil && d.active != on {
				if on {
					c.activate(d)
				} else {
					c.deactivate(d)
				}
			}
		}
	}
}

// syncLocalPod rewrites a local pod's chains and dispatch elements.
func (c *compiler) syncLocalPod(lp *localPod) { c.syncLocalPodFrom(lp, lp.rec) }

func (c *compiler) syncLocalPodFrom(lp *localPod, prev *podRecord) {
	cur := lp.rec
	for dir := range 2 {
		want := cur != nil && cur.active() && cur.Node.Value() == c.node && len(lp.pols[dir]) > 0
		id := ""
		if cur != nil {
			id = cur.ID
		} else if prev != nil {
			id = prev.ID
		}
		chain := podChainName(dir, id)
		// Dispatch elements of the previous addresses go first.
		if prev != nil && lp.chains[dir] != "" {
			for _, a := range prev.IPs {
				f := famOf(a)
				if c.vmapOwn[dir][f][a] == id && (!want || !slices.Contains(cur.IPs, a)) {
					delete(c.vmapOwn[dir][f], a)
					c.delElement(vmapNames[dir][f], addrElement(a))
				}
			}
		}
		if !want {
			if lp.chains[dir] != "" {
				c.deleteChain(lp.chains[dir])
				lp.chains[dir] = ""
			}
			continue
		}
		ids := make([]string, 0, len(lp.pols[dir]))
		for pid := range lp.pols[dir] {
			ids = append(ids, pid)
		}
		sort.Strings(ids)
		rules := make([]nft.Rule, 0, len(ids)+1)
		for _, pid := range ids {
			rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: lp.pols[dir][pid].dirs[dir].chain}}})
		}
		rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}})
		if old := c.desired.Chains[chain]; old == nil || !sameRuleList(old.Rules, rules) {
			c.putChain(&nft.Chain{Name: chain, Comment: id + " " + dirNames[dir], Rules: rules})
		}
		lp.chains[dir] = chain
		for _, a := range cur.IPs {
			f := famOf(a)
			owner, taken := c.vmapOwn[dir][f][a]
			if c.conflicted(a) || (taken && owner != id) {
				// Other pods claim the address too, or did until this
				// operation: resyncConflicts sets its element.
				continue
			}
			if !taken {
				c.vmapOwn[dir][f][a] = id
				e := addrElement(a)
				e.Verdict = &nft.Verdict{Kind: nft.VerdictGoto, Chain: chain}
				c.addElement(vmapNames[dir][f], e)
			}
		}
	}
}

func sameRuleList(a, b []nft.Rule) bool {
	return slices.EqualFunc(a, b, func(x, y nft.Rule) bool { return nft.RuleKey(x) == nft.RuleKey(y) })
}

// --- namespaces ---

// namespaceChanged re-evaluates the namespace-selector groups for one namespace
// (labels nil: deleted).
func (c *compiler) namespaceChanged(name string, l labels.Set, exists bool) {
	var pods []*podRecord
	loaded := false
	named := map[*namedSet]struct{}{}
	for g := range c.nsSelGroups {
		match := exists && g.spec.nsSel.Matches(l)
		if match == g.nsMatch[name] {
			continue
		}
		if !loaded {
			pods = c.m.podsInNamespace(name)
			loaded = true
		}
		if match {
			g.nsMatch[name] = true
			addTo(c.nsGroupsByNS, name, g)
		} else {
			delete(g.nsMatch, name)
			removeFrom(c.nsGroupsByNS, name, g)
		}
		for _, p := range pods {
			if c.updateMember(g, p) {
				for ns := range g.dependents {
					named[ns] = struct{}{}
				}
			}
		}
	}
	for ns := range named {
		if ns.dead {
			continue
		}
		for _, p := range pods {
			c.refreshNamed(ns, p.ID, p)
		}
	}
}

// --- small map helpers ---

func addTo[K comparable, V comparable](m map[K]map[V]struct{}, k K, v V) {
	s := m[k]
	if s == nil {
		s = map[V]struct{}{}
		m[k] = s
	}
	s[v] = struct{}{}
}

func removeFrom[K comparable, V comparable](m map[K]map[V]struct{}, k K, v V) {
	if s := m[k]; s != nil {
		delete(s, v)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

func removeKey[V any](m map[string]map[string]V, k, id string) {
	if s := m[k]; s != nil {
		delete(s, id)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}
