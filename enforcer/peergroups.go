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
// one peer set per compiled family holds their addresses, and a peer chain
// per direction matches those sets.
type group struct {
	spec       *groupSpec
	refs       int // active rules naming the group
	members    map[string]*podRecord
	nsMatch    map[string]bool // namespace-selector groups: matching namespaces
	setNames   [2]string       // per Family; "" for a family not compiled
	dependents map[*namedSet]struct{}
	// chainRefs counts, per direction, the active rules that jump to the
	// group's peer chain; the chain exists while it is positive.
	chainRefs [2]int
}

// peerGroups owns the groups, their peer sets and peer chains. Equal
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
// found by a hash. Per packet, the cheap port comparisons come first, and the
// peer lookup runs only for a port the rule allows.
type peerGroups struct {
	w     *writer
	m     *model
	fams  *familySet // the compiler's compiled families
	byKey map[string]*group
	local map[string]map[*group]struct{} // namespace -> its namespace-local groups
	nsSel map[*group]struct{}            // every namespace-selector group
	byNS  map[string]map[*group]struct{} // namespace -> namespace-selector groups matching it
	gc    map[*group]struct{}            // released during the operation
}

func newPeerGroups(w *writer, m *model, fams *familySet) *peerGroups {
	return &peerGroups{
		w: w, m: m, fams: fams,
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
	g := &group{spec: spec, refs: 1, dependents: map[*namedSet]struct{}{}}
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
	// Find the members first and allocate the member map and the sets at their
	// final size: growing them pod by pod was most of the cost of a large group.
	var members []*podRecord
	var addrs [2]int
	for _, ns := range nss {
		for _, p := range pg.m.podsInNamespace(ns) {
			if p.active() && spec.podSel.Matches(p.selectable()) {
				members = append(members, p)
				for _, a := range p.IPs {
					addrs[familyOf(a)]++
				}
			}
		}
	}
	g.members = make(map[string]*podRecord, len(members))
	for _, f := range families {
		if pg.fams.has(f) {
			pg.putSet(g, f, addrs[f])
		}
	}
	for _, p := range members {
		pg.setMember(g, p.ID, p, true)
	}
	return g
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
			if g.setNames[f] != "" {
				pg.w.deleteSet(g.setNames[f])
			}
		}
	}
	clear(pg.gc)
}

// putSet creates g's (empty) peer set of family f with room for n elements.
func (pg *peerGroups) putSet(g *group, f Family, n int) {
	g.setNames[f] = peerSetName(f, g.spec.key)
	pg.w.putSet(nft.Set{Name: g.setNames[f], Key: []nft.KeyType{f.addrType()}, Comment: g.spec.desc}, n)
}

// syncFamilies gives every group a peer set for exactly the compiled
// families, filling a new one from the current members, and its peer chains
// the rules of those families.
func (pg *peerGroups) syncFamilies() {
	for _, g := range pg.byKey {
		pg.syncGroupFamilies(g)
	}
}

func (pg *peerGroups) syncGroupFamilies(g *group) {
	changed := false
	for _, f := range families {
		switch {
		case pg.fams.has(f) && g.setNames[f] == "":
			changed = true
			pg.putSet(g, f, 0)
			for _, p := range g.members {
				for _, a := range p.IPs {
					switch {
					case familyOf(a) != f:
					case pg.m.ips.conflicted(a):
						pg.syncAddr(g, a)
					default:
						pg.w.addElement(g.setNames[f], addrElement(a))
					}
				}
			}
		case !pg.fams.has(f) && g.setNames[f] != "":
			changed = true
			pg.w.deleteSet(g.setNames[f])
			g.setNames[f] = ""
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
		if g.setNames[f] != "" {
			rules = append(rules, nft.Rule{Exprs: []nft.Expr{
				nft.Lookup{Fields: []nft.Field{dir.peerField(f)}, Set: g.setNames[f]},
				allowVerdict(dir),
			}})
		}
	}
	pg.w.putChain(&nft.Chain{Name: peerChainName(dir, g.spec.key), Comment: peerChainComment(dir, g.spec.desc), Rules: rules})
}

// podChanged makes pod id's membership follow its record (cur nil: deleted)
// in the groups of its namespace, and adds the named-port sets that depend
// on a group whose membership changed to refresh.
func (pg *peerGroups) podChanged(id, ns string, cur *podRecord, refresh map[*namedSet]struct{}) {
	for g := range pg.concerning(ns) {
		var changed bool
		if cur == nil {
			changed = pg.setMember(g, id, nil, false)
		} else {
			changed = pg.updateMember(g, cur)
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
// changed, with the named-port sets to refresh for them.
func (pg *peerGroups) namespaceChanged(name string, l labels.Set, exists bool) (map[string]*podRecord, map[*namedSet]struct{}) {
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
		for _, p := range pods {
			if pg.updateMember(g, p) {
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

// updateMember makes p's membership in g match its current record (inactive:
// not a member) and reports whether anything changed.
func (pg *peerGroups) updateMember(g *group, p *podRecord) bool {
	return pg.setMember(g, p.ID, p, p.active() && g.spec.podSel.Matches(p.selectable()) && g.hasNamespace(p.Namespace()))
}

func (g *group) hasNamespace(ns string) bool {
	if g.spec.nsSel == nil {
		return g.spec.local == ns
	}
	return g.nsMatch[ns]
}

// setMember makes pod id a member of g with record p (in) or not, and
// reports whether its membership, addresses or named ports changed.
func (pg *peerGroups) setMember(g *group, id string, p *podRecord, in bool) bool {
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
		if set := g.setNames[familyOf(a)]; set != "" && !slices.Contains(newIPs, a) {
			if pg.m.ips.claimedByOther(a, id) {
				pg.syncAddr(g, a)
			} else {
				pg.w.delElement(set, addrElement(a))
			}
		}
	}
	for _, a := range newIPs {
		if set := g.setNames[familyOf(a)]; set != "" && !slices.Contains(oldIPs, a) {
			if pg.m.ips.conflicted(a) {
				pg.syncAddr(g, a)
			} else {
				pg.w.addElement(set, addrElement(a))
			}
		}
	}
	return old == nil || !in || !slices.Equal(oldIPs, newIPs) || !slices.Equal(old.Ports.list(), p.Ports.list())
}
