package enforcer

import (
	"slices"
	"sync"
	"unique"
)

// Interning the strings of a pod (label keys and values, node and port
// names) is a unique.Make each: a hash and a walk down a concurrent trie
// that, with 100,000s of calls, misses the cache at every level — some 6% of
// the CPU of the engine's start-up. Pods repeat few distinct strings, so a
// small map in front of unique.Make answers most calls. NewPod runs outside
// the engine's lock (from any goroutine), so the maps come from a sync.Pool:
// one per P, no lock, and the pool drops them at a garbage collection, so
// that they pin nothing for long.

// internerMax bounds an interner's map: strings that never repeat (a label
// unique to each pod) must not grow it forever.
const internerMax = 4096

// interner is a cache of unique.Make, and of label lists. Not safe for
// concurrent use.
type interner struct {
	m map[string]unique.Handle[string]
	// sets holds the label lists made lately, so that pods with the same
	// labels (the pods of a workload) share one list (immutable, as the
	// records that hold it): one object fewer per pod for the allocator
	// and for every garbage collection to mark, in a heap that holds every
	// pod of the cluster. A list is shared by the pods parsed while the
	// interner lives (the pool drops it within two collections), which
	// keeps nothing alive for long.
	sets map[labelSet]labelList
}

// sharedLabelsMax is the most labels of a shared list; longer ones are
// rare, and the key of a shared list holds that many.
const sharedLabelsMax = 8

// labelSet is the key of a shared label list: its n first pairs, sorted by
// key (interned strings compare as pointers).
type labelSet struct {
	n     uint8
	pairs [sharedLabelsMax]labelPair
}

// labels returns a list holding the pairs of set, shared with the other
// pods of the same labels parsed lately.
func (in *interner) labels(set *labelSet) labelList {
	if l, ok := in.sets[*set]; ok {
		return l
	}
	l := slices.Clone(labelList(set.pairs[:set.n]))
	if in.sets == nil || len(in.sets) >= internerMax {
		in.sets = make(map[labelSet]labelList, 16)
	}
	in.sets[*set] = l
	return l
}

var interners = sync.Pool{New: func() any {
	return &interner{m: make(map[string]unique.Handle[string], 64)}
}}

// getInterner takes an interner from the pool; give it back with put.
func getInterner() *interner { return interners.Get().(*interner) }

func (in *interner) put() { interners.Put(in) }

// make returns unique.Make(s).
func (in *interner) make(s string) unique.Handle[string] {
	if h, ok := in.m[s]; ok {
		return h
	}
	h := unique.Make(s)
	if len(in.m) >= internerMax {
		clear(in.m)
	}
	// Keyed by the handle's own copy: the map must not keep the caller's
	// string (a field of some pod object) alive.
	in.m[h.Value()] = h
	return h
}
