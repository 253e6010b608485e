package enforcer

import (
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
)

// tierPeers is the ClusterNetworkPolicy tiers' shared index of selector
// peers (namespaces and pods peers): one entry per distinct selector pair,
// whatever the number of rules, policies and subject groups that name it,
// with the active pods matching it cluster-wide. A pod change re-evaluates
// each peer whose namespace selector matches the pod's namespace once, and
// the groups then read the memberships (tierPeers.of) instead of running
// selectors. It is the tiers' counterpart of peerGroups (peergroups.go), which
// owns nft sets; this index owns none, so it lives apart.
type tierPeers struct {
	m     *model
	byKey map[string]*tierPeer
	// byNS caches, per namespace, the peers whose namespace selector matches
	// it; filled on demand, dropped when the namespace's labels change.
	byNS map[string][]*tierPeer
	// of is, per pod ID, the peers the pod is a member of.
	of map[string]map[*tierPeer]struct{}
}

// tierPeer is one selector pair with its members.
type tierPeer struct {
	key     string
	ns, pod labels.Selector // pod nil: a namespaces peer
	refs    int             // rules naming it
	members map[string]*podRecord
	nsMatch map[string]bool // cache of ns.Matches per namespace
}

func newTierPeers(m *model) *tierPeers {
	return &tierPeers{m: m, byKey: map[string]*tierPeer{}, byNS: map[string][]*tierPeer{},
		of: map[string]map[*tierPeer]struct{}{}}
}

// selectorKey names a selector pair canonically (pod nil: namespaces only).
func selectorKey(ns, pod labels.Selector) string {
	if pod == nil {
		return "ns{" + ns.String() + "}"
	}
	return "ns{" + ns.String() + "} pods{" + pod.String() + "}"
}

// matchesNS reports (and caches) whether p's namespace selector matches ns.
func (tp *tierPeers) matchesNS(p *tierPeer, ns string) bool {
	ok, cached := p.nsMatch[ns]
	if !cached {
		ok = p.ns.Matches(namespaceLabels(tp.m, ns))
		p.nsMatch[ns] = ok
	}
	return ok
}

// peersFor returns the peers whose namespace selector matches ns.
func (tp *tierPeers) peersFor(ns string) []*tierPeer {
	if ps, ok := tp.byNS[ns]; ok {
		return ps
	}
	ps := []*tierPeer{}
	for _, p := range tp.byKey {
		if tp.matchesNS(p, ns) {
			ps = append(ps, p)
		}
	}
	tp.byNS[ns] = ps
	return ps
}

// acquire counts one more rule naming the selector pair, creating and
// filling its entry for the first.
func (tp *tierPeers) acquire(ns, pod labels.Selector) *tierPeer {
	key := selectorKey(ns, pod)
	if p := tp.byKey[key]; p != nil {
		p.refs++
		return p
	}
	p := &tierPeer{key: key, ns: ns, pod: pod, refs: 1, members: map[string]*podRecord{}, nsMatch: map[string]bool{}}
	tp.byKey[key] = p
	// Every namespace with pods, including those the model has no object
	// for (Decide reads their labels as the API server would set them).
	for name := range tp.m.pods.namespaces() {
		if !tp.matchesNS(p, name) {
			continue
		}
		for _, rec := range tp.m.podsInNamespace(name) {
			tp.setMember(p, rec.ID, rec, p.admits(rec))
		}
	}
	for name, ps := range tp.byNS {
		if tp.matchesNS(p, name) {
			tp.byNS[name] = append(ps, p)
		}
	}
	return p
}

// release counts one rule less, dropping the entry with the last.
func (tp *tierPeers) release(p *tierPeer) {
	if p.refs--; p.refs > 0 {
		return
	}
	delete(tp.byKey, p.key)
	for id := range p.members {
		tp.setMember(p, id, nil, false)
	}
	for name, ps := range tp.byNS {
		tp.byNS[name] = slices.DeleteFunc(ps, func(q *tierPeer) bool { return q == p })
	}
}

// admits reports whether an active pod of a matching namespace is a member.
func (p *tierPeer) admits(rec *podRecord) bool {
	return rec.active() && (p.pod == nil || p.pod.Matches(rec.Labels))
}

// setMember makes pod id a member of p (in) or not; it reports a change.
func (tp *tierPeers) setMember(p *tierPeer, id string, rec *podRecord, in bool) bool {
	old, had := p.members[id]
	switch {
	case in:
		p.members[id] = rec
		s := tp.of[id]
		if s == nil {
			s = map[*tierPeer]struct{}{}
			tp.of[id] = s
		}
		s[p] = struct{}{}
		return !had || old != rec
	case had:
		delete(p.members, id)
		removeFrom(tp.of, id, p)
		return true
	}
	return false
}

// podChanged makes pod id's memberships follow its record (cur nil:
// deleted) and reports whether one changed.
func (tp *tierPeers) podChanged(id, ns string, old, cur *podRecord) bool {
	changed := false
	if cur == nil {
		for p := range tp.of[id] {
			changed = tp.setMember(p, id, nil, false) || changed
		}
		return changed
	}
	for _, p := range tp.peersFor(ns) {
		changed = tp.setMember(p, id, cur, p.admits(cur)) || changed
	}
	return changed
}

// namespaceChanged re-evaluates every peer's namespace selector for
// namespace name and returns the addresses of the pods whose membership
// changed.
func (tp *tierPeers) namespaceChanged(name string) []netip.Addr {
	delete(tp.byNS, name)
	pods := tp.m.podsInNamespace(name)
	var addrs []netip.Addr
	for _, p := range tp.byKey {
		was := p.nsMatch[name]
		delete(p.nsMatch, name)
		now := tp.matchesNS(p, name)
		if was == now {
			continue
		}
		for _, rec := range pods {
			if tp.setMember(p, rec.ID, rec, now && p.admits(rec)) && rec.active() {
				addrs = append(addrs, rec.IPs...)
			}
		}
	}
	return addrs
}

// allMember reports whether every claimant is a member of p.
func (p *tierPeer) allMember(claimants []*podRecord) bool {
	for _, c := range claimants {
		if p.members[c.ID] == nil {
			return false
		}
	}
	return len(claimants) > 0
}
