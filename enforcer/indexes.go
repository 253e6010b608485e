package enforcer

import (
	"encoding/binary"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// The model's pods and secondary indexes. The other records live in
// go-memdb (schema.go), which serves lookups by ID; the indexes below are
// typed maps because each is read on every pod change, where a memdb index
// would cost a radix insert per record and a clone of the index per read
// inside the open write transaction, and none of them needs memdb's
// snapshots (the engine's mutex serializes every read and write).

// ipIndex maps the addresses of active pods to their numbers in the pod
// index (podindex.go), which holds the records. Almost every address has
// one pod: it is the value of one map, the rare others are kept aside in
// more, whose keys are thus the conflicted addresses (conflicts.go).
//
// Nothing in the index is a pointer: every garbage collection marks it, and
// it holds every address of the cluster. A record pointer in each map slot
// sent the collector to the records in the map's hash order, all over the
// heap (about a third of the cost of marking the pods of a large cluster);
// the pod index's table of records is walked in number order, and the maps
// here are not scanned at all.
//
// IPv4 addresses are keyed by their 4 bytes in a map of their own: its
// slots are 8 bytes instead of 20, so that the map most clusters fill
// takes less than half the memory, misses the cache less on a lookup, and
// grows with less garbage.
type ipIndex struct {
	pods   *podIndex
	first4 map[uint32]podNum
	first6 map[ipKey]podNum
	more   map[ipKey][]podNum
}

// ipKey is an address as the index keys it: its 16 bytes. A netip.Addr is 24
// bytes with a pointer (its zone and family); the index holds every pod
// address of the cluster, and a smaller key without a pointer makes its
// map smaller, quicker to hash and to grow, and nothing for the collector
// to look at.
type ipKey [16]byte

// ipKeyOf returns the key of a, false for an address no record holds:
// records hold addresses valid, unmapped and without zone (fillPod), and an
// IPv4-mapped IPv6 address would share the key of its IPv4 form.
func ipKeyOf(a netip.Addr) (ipKey, bool) {
	if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
		return ipKey{}, false
	}
	return a.As16(), true
}

// addr is the address of key k.
func (k ipKey) addr() netip.Addr { return netip.AddrFrom16(k).Unmap() }

// update replaces the entries of pod n's record old (nil: none) by those of
// its record cur (nil: none).
func (x *ipIndex) update(n podNum, old, cur *podRecord) {
	if old.active() {
		for _, a := range old.IPs {
			x.remove(a, n)
		}
	}
	if cur.active() {
		for _, a := range cur.IPs {
			x.add(a, n)
		}
	}
}

// v4 returns the IPv4 address of key k as a number, false if k is IPv6.
func (k ipKey) v4() (uint32, bool) {
	if [12]byte(k[:12]) != [12]byte{10: 0xff, 11: 0xff} {
		return 0, false
	}
	return binary.BigEndian.Uint32(k[12:]), true
}

// firstNum returns the number of the first pod of key k, if any.
func (x *ipIndex) firstNum(k ipKey) (podNum, bool) {
	if a, ok := k.v4(); ok {
		n, ok := x.first4[a]
		return n, ok
	}
	n, ok := x.first6[k]
	return n, ok
}

// setFirst makes pod n the first pod of key k.
func (x *ipIndex) setFirst(k ipKey, n podNum) {
	if a, ok := k.v4(); ok {
		if x.first4 == nil {
			x.first4 = map[uint32]podNum{}
		}
		x.first4[a] = n
		return
	}
	if x.first6 == nil {
		x.first6 = map[ipKey]podNum{}
	}
	x.first6[k] = n
}

func (x *ipIndex) deleteFirst(k ipKey) {
	if a, ok := k.v4(); ok {
		delete(x.first4, a)
	} else {
		delete(x.first6, k)
	}
}

// addresses is the number of addresses in the index.
func (x *ipIndex) addresses() int { return len(x.first4) + len(x.first6) }

// firstOfAddr returns the key of address a and its first pod, if any.
func (x *ipIndex) firstOfAddr(a netip.Addr) (ipKey, *podRecord, bool) {
	k, ok := ipKeyOf(a)
	if !ok {
		return k, nil, false
	}
	n, ok := x.firstNum(k)
	if !ok {
		return k, nil, false
	}
	return k, x.pods.rec(n), true
}

func (x *ipIndex) add(a netip.Addr, n podNum) {
	k, ok := ipKeyOf(a)
	if !ok {
		return
	}
	switch f, ok := x.firstNum(k); {
	case !ok:
		x.setFirst(k, n)
	case f == n:
	default:
		if x.more == nil {
			x.more = map[ipKey][]podNum{}
		}
		x.more[k] = append(x.more[k], n)
	}
}

func (x *ipIndex) remove(a netip.Addr, n podNum) {
	k, ok := ipKeyOf(a)
	if !ok {
		return
	}
	if f, ok := x.firstNum(k); ok && f == n {
		if rest := x.more[k]; len(rest) > 0 {
			x.setFirst(k, rest[0])
			x.setMore(k, rest[1:])
		} else {
			x.deleteFirst(k)
		}
		return
	}
	x.setMore(k, slices.DeleteFunc(x.more[k], func(m podNum) bool { return m == n }))
}

func (x *ipIndex) setMore(k ipKey, rest []podNum) {
	if len(rest) == 0 {
		delete(x.more, k)
	} else {
		x.more[k] = rest
	}
}

// conflicted reports whether several pods claim address a.
func (x *ipIndex) conflicted(a netip.Addr) bool {
	k, ok := ipKeyOf(a)
	if !ok {
		return false
	}
	_, ok = x.more[k]
	return ok
}

// conflicts yields the addresses several pods claim, in no order.
func (x *ipIndex) conflicts() iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		for k := range x.more {
			if !yield(k.addr()) {
				return
			}
		}
	}
}

// claimedByOther reports whether a pod other than id claims address a.
func (x *ipIndex) claimedByOther(a netip.Addr, id string) bool {
	k, f, ok := x.firstOfAddr(a)
	if !ok {
		return false
	}
	_, more := x.more[k]
	return f.ID != id || more
}

// get returns the pods with address a, sorted by ID.
func (x *ipIndex) get(a netip.Addr) []*podRecord {
	k, f, ok := x.firstOfAddr(a)
	if !ok {
		return nil
	}
	rest := x.more[k]
	out := make([]*podRecord, 1, 1+len(rest))
	out[0] = f
	for _, n := range rest {
		out = append(out, x.pods.rec(n))
	}
	if len(out) > 1 {
		slices.SortFunc(out, func(p, q *podRecord) int { return strings.Compare(p.ID, q.ID) })
	}
	return out
}

// policyIndex holds the parsed policies by ID and by namespace.
type policyIndex struct {
	byID map[string]*policy
	byNS map[string]map[string]*policy
}

func (x *policyIndex) get(id string) *policy { return x.byID[id] }

func (x *policyIndex) put(p *policy) {
	if x.byID == nil {
		x.byID = map[string]*policy{}
		x.byNS = map[string]map[string]*policy{}
	}
	x.byID[p.id] = p
	m := x.byNS[p.ns]
	if m == nil {
		m = map[string]*policy{}
		x.byNS[p.ns] = m
	}
	m[p.id] = p
}

// remove removes the policy with ID id and returns it (nil if none).
func (x *policyIndex) remove(id string) *policy {
	p := x.byID[id]
	if p != nil {
		delete(x.byID, id)
		removeKey(x.byNS, p.ns, id)
	}
	return p
}

// inNamespace returns the policies of namespace ns by ID (not to be modified).
func (x *policyIndex) inNamespace(ns string) map[string]*policy { return x.byNS[ns] }

// ids returns the IDs of every policy, sorted.
func (x *policyIndex) ids() []string { return slices.Sorted(maps.Keys(x.byID)) }

// localPod is a pod of this node that policy may target (active, in the pod
// network), with the policies that select it.
type localPod struct {
	rec  *podRecord
	pols [2]policySet // per Direction
}

// policySet is the policies selecting a local pod in one direction, sorted
// by ID as its chain jumps to them: a pod that thousands of policies select
// gains or loses one without a sort of all of them.
type policySet struct{ byID []*policy }

func comparePolicyID(p *policy, id string) int { return strings.Compare(p.id, id) }

// put adds p, or replaces the policy of its ID.
func (ps *policySet) put(p *policy) {
	if i, found := slices.BinarySearchFunc(ps.byID, p.id, comparePolicyID); found {
		ps.byID[i] = p
	} else {
		ps.byID = slices.Insert(ps.byID, i, p)
	}
}

// remove removes the policy of ID id, if there.
func (ps *policySet) remove(id string) {
	if i, found := slices.BinarySearchFunc(ps.byID, id, comparePolicyID); found {
		ps.byID = slices.Delete(ps.byID, i, i+1)
	}
}

// localIndex holds the local pods by ID and by namespace: the pods a new
// policy of the namespace may select, and whether the namespace has any (its
// policies are programmed while it does).
type localIndex struct {
	byID map[string]*localPod
	byNS map[string]map[string]*localPod
	// podCIDRs are the node's pod CIDRs while first-packet isolation is
	// on (firstpacket.go): an address in them that no local pod claims is
	// unknown, for Decide as for the program.
	podCIDRs []netip.Prefix
}

func (x *localIndex) get(id string) *localPod { return x.byID[id] }

// add makes pod id of namespace ns local, with no policy yet.
func (x *localIndex) add(id, ns string) *localPod {
	if x.byID == nil {
		x.byID = map[string]*localPod{}
		x.byNS = map[string]map[string]*localPod{}
	}
	lp := &localPod{}
	x.byID[id] = lp
	if x.byNS[ns] == nil {
		x.byNS[ns] = map[string]*localPod{}
	}
	x.byNS[ns][id] = lp
	return lp
}

func (x *localIndex) remove(id, ns string) {
	delete(x.byID, id)
	removeKey(x.byNS, ns, id)
}

// inNamespace returns the local pods of namespace ns by ID (not to be modified).
func (x *localIndex) inNamespace(ns string) map[string]*localPod { return x.byNS[ns] }

// count is the number of local pods of namespace ns.
func (x *localIndex) count(ns string) int { return len(x.byNS[ns]) }

// len is the number of local pods.
func (x *localIndex) len() int { return len(x.byID) }

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
