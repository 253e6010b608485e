package enforcer

import (
	"iter"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/nftwarden/nftwarden/nft"
)

// group is a peer selector pair (namespace-local podSelector, or
// namespaceSelector and podSelector) with the pods matching it cluster-wide:
// their addresses, each with the group's tag, are in the shared peer set of
// each compiled family (peers-v4, peers-v6), and a peer chain per direction
// looks them up there.
type group struct {
	spec *groupSpec
	refs int // active rules naming the group
	// members are the numbers of the member pods (podindex.go): a set
	// the collector does not look into, where a map by ID to the record
	// was a string and a pointer to follow per member.
	members map[podNum]struct{}
	nsMatch map[string]bool // namespace-selector groups: matching namespaces
	tag     uint32          // the group's elements in the shared peer sets
	tagKey  nft.Value       // tag as a key value, one for all its elements (never changed in place)
	fams    familySet       // the families whose peer set holds the group's addresses
	// dependents are the named-port sets over the group's members.
	dependents map[*namedSet]struct{}
	// chainRefs counts, per direction, the active rules that jump to the
	// group's peer chain; the chain exists while it is positive.
	chainRefs [2]int
}

// peerGroups owns the groups, the shared peer sets and peer chains. Equal
// selector pairs (groupSpec.key) share one group; it lives while an active
// rule names it, and is deleted at the end of the operation that released
// it last unless that operation took it again (a policy update releases and
// reacquires the same groups).
//
// A policy rule to a selector peer with numeric or no ports matches the
// ports (a few inline comparisons, a set for long lists) and jumps to the
// group's peer chain, which matches the group's addresses of every family
// and accepts. The kernel resolves each set a rule names by a walk over the
// table's sets and creates each set after a walk over all of them, so naming
// each peer set once per group and direction, and keeping short port lists
// out of sets, is what keeps loading a node with thousands of policies well
// under a second whatever the variety of their peers and ports; chains are
// found by a hash. For the same reason every group's addresses are in one
// peer set per family, tagged with the group's tag (taggedsets.go), rather
// than in a set per group. Per packet, the cheap port comparisons come
// first, and the peer lookup runs only for a port the rule allows.
type peerGroups struct {
	w     *writer
	m     *model
	fams  *familySet  // the compiler's compiled families
	sets  *taggedSets // peers-v4, peers-v6
	byKey map[string]*group
	local map[string]map[*group]struct{} // namespace -> its namespace-local groups
	nsSel map[*group]struct{}            // every namespace-selector group
	byNS  map[string]map[*group]struct{} // namespace -> namespace-selector groups matching it
	gc    map[*group]struct{}            // released during the operation
	// scratch is acquire's list of a new group's members, kept for the
	// next group (and dropped past maxScratch: one huge group does not keep
	// its list).
	scratch []podNum
}

const maxScratch = 4096

func newPeerGroups(w *writer, m *model, fams *familySet) *peerGroups {
	return &peerGroups{
		w: w, m: m, fams: fams,
		sets:  newTaggedSets(w, "peers", "addresses of the pods of every peer group, with the group's tag", peerSetKey),
		byKey: map[string]*group{},
		local: map[string]map[*group]struct{}{},
		nsSel: map[*group]struct{}{},
		byNS:  map[string]map[*group]struct{}{},
		gc:    map[*group]struct{}{},
	}
}

// get returns the live group of a spec (nil if none).
func (pg *peerGroups) get(spec *groupSpec) *group { return pg.byKey[spec.key] }

// concerning yields the groups that pods of namespace ns may be members of.
func (pg *peerGroups) concerning(ns string) iter.Seq[*group] {
	return func(yield func(*group) bool) {
		for _, gs := range [2]map[*group]struct{}{pg.local[ns], pg.byNS[ns]} {
			for g := range gs {
				if !yield(g) {
					return
				}
			}
		}
	}
}

// acquire counts one more rule naming spec, creating and filling the group
// for the first.
func (pg *peerGroups) acquire(spec *groupSpec) *group {
	if g := pg.byKey[spec.key]; g != nil {
		g.refs++
		delete(pg.gc, g)
		return g
	}
	tag := pg.sets.acquireTag(spec.key)
	g := &group{spec: spec, refs: 1, tag: tag, tagKey: nft.TagValue(tag), dependents: map[*namedSet]struct{}{}}
	pg.byKey[spec.key] = g
	var nss []string
	if spec.nsSel == nil {
		addTo(pg.local, spec.local, g)
		nss = []string{spec.local}
	} else {
		g.nsMatch = map[string]bool{}
		pg.nsSel[g] = struct{}{}
		for _, ns := range pg.m.namespaces() {
			if spec.nsSel.Matches(ns.Labels) {
				g.nsMatch[ns.Name] = true
				addTo(pg.byNS, ns.Name, g)
				nss = append(nss, ns.Name)
			}
		}
	}
	// Find the members first and allocate the member map at its final size:
	// growing it pod by pod was most of the cost of a large group. The list
	// is a scratch slice kept for the next group: grown anew by doubling for
	// each group, it was ~3 MB of garbage per start-up of the 100,000-pod
	// cluster.
	members := pg.scratch[:0]
	for _, ns := range nss {
		for n, p := range pg.m.podsInNamespace(ns) {
			if p.active() && spec.podSel.Matches(p.selectable()) {
				members = append(members, n)
			}
		}
	}
	g.members = make(map[podNum]struct{}, len(members))
	for _, f := range families {
		if pg.fams.has(f) {
			pg.useFamily(g, f)
		}
	}
	for _, n := range members {
		pg.addMember(g, n, pg.m.pods.rec(n))
	}
	if cap(members) <= maxScratch {
		pg.scratch = members[:0]
	}
	return g
}

// addMember is setMember(g, n, nil, p, true) for pod n, not yet a member,
// whose record is p: all its addresses are new. A new group adds every
// member this way, 100,000s at start-up, without setMember's lookup.
func (pg *peerGroups) addMember(g *group, n podNum, p *podRecord) {
	g.members[n] = struct{}{}
	pg.addAddrs(g, p.IPs, nil)
}

// addAddrs puts the addresses of ips that were not in had into g's sets. An
// address another pod claims too is in the set only if every claimant is a
// member (conflicts.go).
func (pg *peerGroups) addAddrs(g *group, ips, had []netip.Addr) {
	for _, a := range ips {
		if f := familyOf(a); g.fams.has(f) && !slices.Contains(had, a) {
			if pg.m.ips.conflicted(a) {
				pg.syncAddr(g, a)
			} else {
				pg.w.addKey(pg.sets.name(f, g.tag), g.element(a))
			}
		}
	}
}

// release counts one rule less; a group nobody names is collected at the end
// of the operation.
func (pg *peerGroups) release(g *group) {
	g.refs--
	if g.refs <= 0 {
		pg.gc[g] = struct{}{}
	}
}

// collect deletes the groups nobody reacquired during the operation.
func (pg *peerGroups) collect() {
	for g := range pg.gc {
		if g.refs > 0 {
			continue
		}
		delete(pg.byKey, g.spec.key)
		if g.spec.nsSel == nil {
			removeFrom(pg.local, g.spec.local, g)
		} else {
			delete(pg.nsSel, g)
			for ns := range g.nsMatch {
				removeFrom(pg.byNS, ns, g)
			}
		}
		for _, f := range families {
			if g.fams.has(f) {
				pg.dropFamily(g, f)
			}
		}
		pg.sets.releaseTag(g.spec.key)
	}
	clear(pg.gc)
}

// peerSetKey is the key of the shared peer set of family f: an address and
// a group's tag.
func peerSetKey(f Family) []nft.KeyType { return []nft.KeyType{f.addrType(), nft.TypeTag} }

// element is the packed key of the element of address a in g's share of
// the peer set (writer.addKey: no Element at start-up).
func (g *group) element(a netip.Addr) nft.ElementKey { return nft.AddrTagKey(a, g.tagKey) }

// useFamily makes g hold addresses of family f (none yet) in the family's
// peer set.
func (pg *peerGroups) useFamily(g *group, f Family) {
	g.fams[f] = true
	pg.sets.use(f, g.tag)
}

// dropFamily takes g's addresses of family f out of the family's peer set.
// Every address of a member may be there (an address other pods claim too
// may not, conflicts.go); deleting an absent element is no change.
// The last group of the family takes the set with it, elements and all.
func (pg *peerGroups) dropFamily(g *group, f Family) {
	set := pg.sets.name(f, g.tag)
	for p := range pg.memberRecords(g) {
		if pg.sets.last(f, g.tag) {
			break
		}
		for _, a := range p.IPs {
			if familyOf(a) == f {
				pg.w.delKey(set, g.element(a))
			}
		}
	}
	g.fams[f] = false
	pg.sets.unuse(f, g.tag)
}

// syncFamilies puts every group's addresses in the peer sets of exactly the
// compiled families, and gives its peer chains the rules of those families.
func (pg *peerGroups) syncFamilies() {
	for _, g := range pg.byKey {
		pg.syncGroupFamilies(g)
	}
}

func (pg *peerGroups) syncGroupFamilies(g *group) {
	changed := false
	for _, f := range families {
		switch {
		case pg.fams.has(f) && !g.fams.has(f):
			changed = true
			pg.useFamily(g, f)
			for p := range pg.memberRecords(g) {
				for _, a := range p.IPs {
					switch {
					case familyOf(a) != f:
					case pg.m.ips.conflicted(a):
						pg.syncAddr(g, a)
					default:
						pg.w.addKey(pg.sets.name(f, g.tag), g.element(a))
					}
				}
			}
		case !pg.fams.has(f) && g.fams.has(f):
			changed = true
			pg.dropFamily(g, f)
		}
	}
	for _, dir := range directions {
		if changed && g.chainRefs[dir] > 0 {
			pg.putChain(g, dir)
		}
	}
}

// acquireChain counts one more rule jumping to g's peer chain of dir.
func (pg *peerGroups) acquireChain(g *group, dir Direction) {
	if g.chainRefs[dir]++; g.chainRefs[dir] == 1 {
		pg.putChain(g, dir)
	}
}

func (pg *peerGroups) releaseChain(g *group, dir Direction) {
	if g.chainRefs[dir]--; g.chainRefs[dir] == 0 {
		pg.w.deleteChain(peerChainName(dir, g.spec.key))
	}
}

func (pg *peerGroups) putChain(g *group, dir Direction) {
	var rules []nft.Rule
	for _, f := range families {
		if g.fams.has(f) {
			rules = append(rules, nft.Rule{Exprs: []nft.Expr{
				pg.sets.lookup(f, g.spec.key, dir.peerField(f)),
				allowVerdict(dir),
			}})
		}
	}
	pg.w.putChain(&nft.Chain{Name: peerChainName(dir, g.spec.key), Comment: peerChainComment(dir, g.spec.desc), Rules: rules})
}

// podChanged makes the membership of pod n follow its record cur (nil:
// deleted; old is the record it replaces, nil if none) in the groups of its
// namespace, and adds the named-port sets that depend on a group whose
// membership changed to refresh.
func (pg *peerGroups) podChanged(n podNum, ns string, old, cur *podRecord, refresh map[*namedSet]struct{}) {
	for g := range pg.concerning(ns) {
		var changed bool
		if cur == nil {
			changed = pg.setMember(g, n, old, nil, false)
		} else {
			changed = pg.updateMember(g, n, old, cur)
		}
		if changed {
			for ns := range g.dependents {
				refresh[ns] = struct{}{}
			}
		}
	}
}

// namespaceChanged re-evaluates the namespace-selector groups for namespace
// name (exists false: deleted). It returns the namespace's pods if a group
// changed (nil if none did), with the named-port sets to refresh for them.
func (pg *peerGroups) namespaceChanged(name string, l labels.Set, exists bool) (iter.Seq2[podNum, *podRecord], map[*namedSet]struct{}) {
	pods := pg.m.podsInNamespace(name)
	changed := false
	refresh := map[*namedSet]struct{}{}
	for g := range pg.nsSel {
		match := exists && g.spec.nsSel.Matches(l)
		if match == g.nsMatch[name] {
			continue
		}
		changed = true
		if match {
			g.nsMatch[name] = true
			addTo(pg.byNS, name, g)
		} else {
			delete(g.nsMatch, name)
			removeFrom(pg.byNS, name, g)
		}
		for n, p := range pods {
			if pg.updateMember(g, n, p, p) {
				for ns := range g.dependents {
					refresh[ns] = struct{}{}
				}
			}
		}
	}
	if !changed {
		return nil, refresh
	}
	return pods, refresh
}

// updateMember makes the membership of pod n in g match its current record
// p (inactive: not a member; old is the record g last saw, nil if none) and
// reports whether anything changed.
func (pg *peerGroups) updateMember(g *group, n podNum, old, p *podRecord) bool {
	return pg.setMember(g, n, old, p, p.active() && g.spec.podSel.Matches(p.selectable()) && g.hasNamespace(p.Namespace()))
}

func (g *group) hasNamespace(ns string) bool {
	if g.spec.nsSel == nil {
		return g.spec.local == ns
	}
	return g.nsMatch[ns]
}

// setMember makes pod n a member of g with record p (in) or not, and
// reports whether its membership, addresses or named ports changed. old is
// the pod's record when g last saw it (the model's before this change; nil
// if none): what a member has in g's sets.
func (pg *peerGroups) setMember(g *group, n podNum, old, p *podRecord, in bool) bool {
	_, was := g.members[n]
	var id string
	var oldIPs, newIPs []netip.Addr
	if was {
		id, oldIPs = old.ID, old.IPs
	}
	if in {
		newIPs = p.IPs
		g.members[n] = struct{}{}
	} else {
		if !was {
			return false
		}
		delete(g.members, n)
	}
	// An address another pod claims too is in the set only if every
	// claimant is a member (conflicts.go).
	for _, a := range oldIPs {
		if f := familyOf(a); g.fams.has(f) && !slices.Contains(newIPs, a) {
			if pg.m.ips.claimedByOther(a, id) {
				pg.syncAddr(g, a)
			} else {
				pg.w.delKey(pg.sets.name(f, g.tag), g.element(a))
			}
		}
	}
	pg.addAddrs(g, newIPs, oldIPs)
	return !was || !in || !slices.Equal(oldIPs, newIPs) || !slices.Equal(old.Ports.list(), p.Ports.list())
}

// has reports whether pod n is a member of g.
func (g *group) has(n podNum) bool {
	_, ok := g.members[n]
	return ok
}

// memberRecords yields the current records of g's members. Between a pod's
// change in the model and the groups' (peerGroups.podChanged) a member's
// record is not what g last saw: nothing reads it then.
func (pg *peerGroups) memberRecords(g *group) iter.Seq[*podRecord] {
	return func(yield func(*podRecord) bool) {
		for n := range g.members {
			if !yield(pg.m.pods.rec(n)) {
				return
			}
		}
	}
}
