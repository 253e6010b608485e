package enforcer

import (
	"iter"
	"strings"
)

// podNum is a pod's number in the pod index: small, stable while the pod
// exists (its updates keep it), and given to another pod once it is
// deleted. Sets of pods keyed by it (a peer group's members) hold no
// pointer: the collector marks the live heap at every collection, and a
// set of 100,000s of string keys and record pointers was a large part of it.
type podNum uint32

// podIndex holds every pod of the cluster by namespace and name: the pods
// of a namespace are one map (a new selector group reads them), and a pod
// is found by its ID's two parts. The keys are the parts of the record's ID,
// so an entry costs the map slot alone. An entry holds the record beside the
// number: reading a namespace's pods (a new selector group) or a pod by ID
// then costs no look-up in the table, a cache miss per pod.
//
// The index numbers the pods: recs holds each pod's current record at its
// number. A deleted pod's number is free (nil there) and goes to a later
// pod; by then the deletion has taken the pod out of every set, so an old
// set never names the new pod. The table is not renumbered when the
// cluster shrinks (the sets keyed by numbers would have to be): it keeps 8
// bytes per pod of the largest size the cluster had.
type podIndex struct {
	byNS map[string]map[string]podEntry
	recs []*podRecord
	free []podNum
}

// podEntry is a pod's entry in its namespace's map: its record and number.
type podEntry struct {
	rec *podRecord
	num podNum
}

// num returns the number of the pod with ID id ("namespace/name"), if any.
func (x *podIndex) num(id string) (podNum, bool) {
	// The engine does not reject a namespace with a slash (no valid name
	// has one), so every split is tried: an ID usually has one slash.
	e := x.entry(id)
	return e.num, e.rec != nil
}

// entry returns the entry of the pod with ID id (zero if none).
func (x *podIndex) entry(id string) podEntry {
	for i := strings.IndexByte(id, '/'); i >= 0; {
		if e, ok := x.byNS[id[:i]][id[i+1:]]; ok {
			return e
		}
		j := strings.IndexByte(id[i+1:], '/')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return podEntry{}
}

// get returns the pod with ID id, or nil.
func (x *podIndex) get(id string) *podRecord { return x.entry(id).rec }

// rec returns the current record of pod number n (nil: no pod has it).
func (x *podIndex) rec(n podNum) *podRecord { return x.recs[n] }

// put inserts or replaces pod p and returns its number: a replaced pod's,
// or a free one.
func (x *podIndex) put(p *podRecord) podNum {
	if x.byNS == nil {
		x.byNS = map[string]map[string]podEntry{}
	}
	ns := p.Namespace()
	m := x.byNS[ns]
	if m == nil {
		m = map[string]podEntry{}
		x.byNS[ns] = m
	}
	e, ok := m[p.Name()]
	if !ok {
		e.num = x.take()
	}
	e.rec = p
	m[p.Name()] = e
	x.recs[e.num] = p
	return e.num
}

// take returns a free number, the last freed first.
func (x *podIndex) take() podNum {
	if k := len(x.free); k > 0 {
		n := x.free[k-1]
		x.free = x.free[:k-1]
		return n
	}
	x.recs = append(x.recs, nil)
	return podNum(len(x.recs) - 1)
}

// remove removes pod p (it must be in the index) and returns the number it
// had, now free.
func (x *podIndex) remove(p *podRecord) podNum {
	n := x.byNS[p.Namespace()][p.Name()].num
	removeKey(x.byNS, p.Namespace(), p.Name())
	x.recs[n] = nil
	x.free = append(x.free, n)
	return n
}

// inNamespace yields the pods of namespace ns with their numbers, in no
// order.
func (x *podIndex) inNamespace(ns string) iter.Seq2[podNum, *podRecord] {
	return func(yield func(podNum, *podRecord) bool) {
		for _, e := range x.byNS[ns] {
			if !yield(e.num, e.rec) {
				return
			}
		}
	}
}

// namespaces yields the namespaces with pods, in no order.
func (x *podIndex) namespaces() iter.Seq[string] {
	return func(yield func(string) bool) {
		for ns := range x.byNS {
			if !yield(ns) {
				return
			}
		}
	}
}

// all yields every pod with its number, by number.
func (x *podIndex) all() iter.Seq2[podNum, *podRecord] {
	return func(yield func(podNum, *podRecord) bool) {
		for n, p := range x.recs {
			if p != nil && !yield(podNum(n), p) {
				return
			}
		}
	}
}
