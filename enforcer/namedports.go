package enforcer

import "github.com/nftwarden/nftwarden/nft"

// namedSet holds the (IP, protocol, port) triples of one rule's named ports,
// resolved over its sources: the local targets of the policy (ingress), the
// selector peer pods of the rule (egress), or every active pod (egress rules
// without peers, and ipBlock peers).
type namedSet struct {
	tag    uint32    // its elements in the shared named-port sets
	tagKey nft.Value // tag as a key value, one for all its elements (never changed in place)
	key    string    // the key of its tag
	fams   familySet // the families whose named-port set holds its elements
	ports  []portName
	dir    *policyDir // ingress source
	// groups are the egress source; each lists the set among its dependents.
	groups []*group
	all    bool // every active pod (key is then its key in namedPorts.every)
	refs   int  // every-pod sets: active rules using it
	// contrib is what each source pod put in, count how many pods put each
	// element (two pods can resolve a name to the same triple only while
	// they claim one address, but the count keeps that case simple).
	contrib map[string][]nft.Element
	count   [2]map[string]int
	dead    bool // its policy direction was deactivated
}

// namedPorts owns the named-port sets: one per rule that resolves names on
// its targets or selector peers, and one per named-port list and families
// for the rules that resolve them on every pod. The latter mirror every
// pod's named ports, so one per rule would multiply the biggest sets of the
// node by the number of such rules: rules with the same list share one.
// Each is a tag in the shared set of each family (named-v4, named-v6;
// taggedsets.go says why), which its elements carry and its lookups supply.
type namedPorts struct {
	w     *writer
	m     *model
	fams  *familySet
	sets  *taggedSets
	every map[string]*namedSet // every-pod sets by key
}

func newNamedPorts(w *writer, m *model, fams *familySet) *namedPorts {
	return &namedPorts{w: w, m: m, fams: fams, every: map[string]*namedSet{},
		sets: newTaggedSets(w, "named", "(pod IP, protocol, port) of the named ports of every rule, with the rule's tag", namedSetKey)}
}

// namedSetKey is the key of the shared named-port set of family f.
func namedSetKey(f Family) []nft.KeyType {
	return []nft.KeyType{f.addrType(), nft.TypeInetProto, nft.TypeInetService, nft.TypeTag}
}

// newSet creates a named-port set of key with a share of the named-port set
// of each family in fams that the rules are compiled for.
func (np *namedPorts) newSet(ports []portName, key string, fams familySet) *namedSet {
	tag := np.sets.acquireTag(key)
	ns := &namedSet{ports: ports, key: key, tag: tag, tagKey: nft.TagValue(tag), contrib: map[string][]nft.Element{}}
	for _, f := range families {
		if !fams.has(f) || !np.fams.has(f) {
			continue
		}
		ns.fams[f] = true
		ns.count[f] = map[string]int{}
		np.sets.use(f, ns.tag)
	}
	return ns
}

// newRuleSet creates the named-port set of rule r of d over its targets
// (ingress) or its selector peers (egress) and fills it.
func (np *namedPorts) newRuleSet(d *policyDir, r *policyRule, groups *peerGroups) *namedSet {
	ns := np.newSet(r.named, r.namedKey, familySet{true, true})
	if d.dir == Ingress {
		ns.dir = d
		for id, p := range d.targets {
			n, _ := np.m.pods.num(id)
			np.refresh(ns, id, n, p)
		}
		return ns
	}
	for _, p := range r.peers {
		if p.group == nil {
			continue
		}
		g := groups.get(p.group)
		ns.groups = append(ns.groups, g)
		g.dependents[ns] = struct{}{}
	}
	for _, g := range ns.groups {
		for n := range g.members {
			p := np.m.pods.rec(n)
			if _, done := ns.contrib[p.ID]; !done {
				np.refresh(ns, p.ID, n, p)
			}
		}
	}
	return ns
}

// acquireEvery returns the egress named set over every active pod for the
// named ports of r, which a rule without peers or an ipBlock peer matches
// against: the destination may be any pod, and the name resolves on it.
func (np *namedPorts) acquireEvery(r *policyRule) *namedSet {
	return np.acquireEveryKey(r.named, r.allKey, r.allFams)
}

// acquireEveryKey returns the every-pod named set of key (everyPodNamedKey
// of ports and fams), creating it for its first user: NetworkPolicy rules
// (acquireEvery) and the ClusterNetworkPolicy tiers' named ports
// (tiernamed.go).
func (np *namedPorts) acquireEveryKey(ports []portName, key string, fams familySet) *namedSet {
	if ns := np.every[key]; ns != nil {
		ns.refs++
		return ns
	}
	ns := np.newSet(ports, key, fams)
	ns.all, ns.refs = true, 1
	np.every[key] = ns
	for n, p := range np.m.pods.all() {
		np.refresh(ns, p.ID, n, p)
	}
	return ns
}

// releaseEvery drops a rule's use of an every-pod named set, and the set
// with its last user.
func (np *namedPorts) releaseEvery(ns *namedSet) {
	if ns.refs--; ns.refs <= 0 {
		np.drop(ns)
	}
}

// drop removes a named set of a deactivated rule.
func (np *namedPorts) drop(ns *namedSet) {
	for _, g := range ns.groups {
		delete(g.dependents, ns)
	}
	if ns.all {
		delete(np.every, ns.key)
	}
	ns.dead = true
	for _, elems := range ns.contrib {
		for _, e := range elems {
			if f := familyOfValue(e.Key[0]); !np.sets.last(f, ns.tag) {
				np.w.delElement(np.sets.name(f, ns.tag), e)
			}
		}
	}
	for _, f := range families {
		if ns.fams.has(f) {
			np.sets.unuse(f, ns.tag)
		}
	}
	np.sets.releaseTag(ns.key)
}

// lookup is the match of a destination (address, protocol, port) of family
// f against ns.
func (np *namedPorts) lookup(ns *namedSet, f Family) nft.Lookup {
	return np.sets.lookup(f, ns.key, f.daddr(), nft.FieldL4Proto, nft.FieldTHDport)
}

// addEvery adds the every-pod sets to refresh: any pod change may change
// what they hold.
func (np *namedPorts) addEvery(refresh map[*namedSet]struct{}) {
	for _, ns := range np.every {
		refresh[ns] = struct{}{}
	}
}

// refreshAll recomputes what pod id, number n, contributes to the sets in
// refresh (p nil: deleted).
func (np *namedPorts) refreshAll(refresh map[*namedSet]struct{}, id string, n podNum, p *podRecord) {
	for ns := range refresh {
		if !ns.dead {
			np.refresh(ns, id, n, p)
		}
	}
}

// has reports whether pod n, record p, is a source of the named set.
func (ns *namedSet) has(n podNum, p *podRecord) bool {
	switch {
	case ns.dir != nil:
		return ns.dir.targets[p.ID] != nil
	case ns.all:
		return p.active()
	}
	for _, g := range ns.groups {
		if g.has(n) {
			return true
		}
	}
	return false
}

// refresh recomputes the elements pod id, number n, contributes (p nil:
// deleted pod). An address several pods claim matches no named port
// (conflicts.go).
func (np *namedPorts) refresh(ns *namedSet, id string, n podNum, p *podRecord) {
	var want []nft.Element
	if p != nil && ns.has(n, p) {
		for _, pn := range ns.ports {
			for _, port := range p.resolve(pn.Name, pn.Proto) {
				for _, a := range p.IPs {
					if !ns.fams.has(familyOf(a)) || np.m.ips.conflicted(a) {
						continue
					}
					want = append(want, nft.Element{Key: nft.AddrKey(a, nft.ProtoValue(pn.Proto), nft.PortValue(port), ns.tagKey)})
				}
			}
		}
	}
	old := ns.contrib[id]
	if len(old) == 0 && len(want) == 0 {
		return
	}
	for _, e := range want {
		np.count(ns, e, +1)
	}
	for _, e := range old {
		np.count(ns, e, -1)
	}
	if len(want) == 0 {
		delete(ns.contrib, id)
	} else {
		ns.contrib[id] = want
	}
}

// count adds delta to the number of pods contributing e, adding the element
// for the first and deleting it after the last.
func (np *namedPorts) count(ns *namedSet, e nft.Element, delta int) {
	f := familyOfValue(e.Key[0])
	set := np.sets.name(f, ns.tag)
	eid := nft.ElementID(np.w.set(set), e)
	n := ns.count[f][eid] + delta
	switch {
	case n <= 0:
		delete(ns.count[f], eid)
		if delta < 0 {
			np.w.delElement(set, e)
		}
	case n == 1 && delta > 0:
		ns.count[f][eid] = n
		np.w.addElement(set, e)
	default:
		ns.count[f][eid] = n
	}
}
