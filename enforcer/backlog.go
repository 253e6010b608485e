package enforcer

import "github.com/nftwarden/nftwarden/nft"

// Backlogs: the start-up fill of the shared tagged sets, deferred.
//
// A journaled set (journal.go, the shared tagged sets of taggedsets.go)
// ends up with 100,000s of elements at 100,000 pods, added one at a time as
// groups fill while the policies come in. Growing its element map by
// doubling, element by element, rehashed and reallocated it about once
// more than its final size: some 8% of the CPU of the engine's start-up
// and, as garbage, more work for the collector. A guessed initial size
// only moved the cost to memory (most sets are far smaller than the
// largest).
//
// While the writer is untracked (start-up, or after a failure: the next sync
// is a full reconcile, which reads the whole desired state) nothing reads a
// set's elements until the desired state is read (compiler.settle) or a
// caller asks about one element (hasElement). So the changes to a journaled
// set the writer owns (created since the last snapshot: nothing shares its
// map) wait in a backlog, in order, and fill lands them at once in a map
// sized for them. Chunks of fixed size hold the backlog, so that it is never
// copied as it grows. A journaled set's elements are plain (journal.go): a
// backlog keeps their keys only, packed (nft.ElementKey: no pointers, so
// the collector does not scan the chunks), and lands them in the set's
// packed element map (nft.ElementMap) without an ID or an Element each.
// A change whose element does not pack (never from the engine) lands the
// backlog first and goes to the map directly, in order.
//
// Invariant: a set has a backlog only while the writer is untracked and owns
// it; putting or deleting the set drops its backlog (the new set starts
// empty), and every reader of elements fills first.

// backlogChunk is how many changes one chunk of a backlog holds at most. The
// first chunk holds backlogFirst, each next one twice the last up to
// backlogChunk: most sets are small, and a full chunk (64 KiB, of changes
// twice today's size) for each was a third of the backlogs' memory at start-up.
const (
	backlogChunk = 1024
	backlogFirst = 16
)

// backlog is the changes to one set not in its map yet, in order.
type backlog struct {
	set    *nft.Set // the set, owned by the writer: its key types
	chunks [][]backlogChange
	adds   int // changes that add: the most elements they can leave
}

// backlogChange is a change in a backlog: a journaled set's elements are
// plain (journal.go), their key is all there is to keep, packed: 25 bytes
// rather than a key's slice and its 64-byte object, which the collector
// marked while the policies came in.
type backlogChange struct {
	key     nft.ElementKey
	present bool
}

func (b *backlog) push(k nft.ElementKey, present bool) {
	if n := len(b.chunks); n == 0 || len(b.chunks[n-1]) == cap(b.chunks[n-1]) {
		size := backlogFirst
		if n > 0 {
			size = min(2*cap(b.chunks[n-1]), backlogChunk)
		}
		b.chunks = append(b.chunks, make([]backlogChange, 0, size))
	}
	last := &b.chunks[len(b.chunks)-1]
	*last = append(*last, backlogChange{k, present})
	if present {
		b.adds++
	}
}

// deferOrNote puts a change of journaled set name in its overlay (it shares
// its map with the record: journal.go) or its backlog (the writer owns it
// and is untracked), and reports whether it did: one test of ownership for
// both, since it runs for every element a group adds.
func (w *writer) deferOrNote(name string, e nft.Element, present bool) bool {
	if _, own := w.owned[name]; own {
		if !w.untracked {
			return false
		}
		k, ok := nft.PackElement(w.desired.Sets[name], e)
		if !ok {
			w.fill(name)
			return false
		}
		w.deferChange(name, k, present)
		return true
	}
	if w.desired.Sets[name] == nil {
		return false
	}
	w.note(name, e, present)
	return true
}

// deferChange adds a change of set name to its backlog, and makes it the
// writer's hot backlog: the next changes of the set go there without
// looking the set up three times (journaled, owned, its backlog), a group
// adding all its members' addresses to the one set of its tag. In CPU
// profiles of the start-up of a 100,000-pod cluster, deferring its 210,000
// changes took ~33 ms with the lookups and ~13 ms without.
func (w *writer) deferChange(name string, k nft.ElementKey, present bool) {
	b := w.backlogs[name]
	if b == nil {
		b = &backlog{set: w.desired.Sets[name]}
		w.backlogs[name] = b
	}
	w.hot, w.hotName = b, name
	b.push(k, present)
}

// pushHot puts a change of element e of set name into the hot backlog if
// that is the set's, and reports whether it did.
func (w *writer) pushHot(name string, e nft.Element, present bool) bool {
	if w.hot == nil || name != w.hotName {
		return false
	}
	k, ok := nft.PackElement(w.hot.set, e)
	if !ok {
		w.fill(name)
		return false
	}
	w.hot.push(k, present)
	return true
}

// changeKey adds (present) or deletes the element of packed key k (of the
// key types of set name): to the hot backlog, or another backlog, without
// an Element; else as addElement and delElement do.
func (w *writer) changeKey(name string, k nft.ElementKey, present bool) {
	if w.hot != nil && name == w.hotName {
		w.hot.push(k, present)
		return
	}
	if _, own := w.owned[name]; own && w.untracked && w.journaled[name] {
		w.deferChange(name, k, present)
		return
	}
	s := w.desired.Sets[name]
	if s == nil {
		return
	}
	if e := nft.KeyElement(s, k); present {
		w.addElement(name, e)
	} else {
		w.delElement(name, e)
	}
}

// dropBacklog forgets the backlog of set name (landed, or the set put or
// deleted), as the hot one too: the hot backlog is always in backlogs, so
// its set is journaled, owned and the writer untracked (the invariant
// above).
func (w *writer) dropBacklog(name string) {
	delete(w.backlogs, name)
	if name == w.hotName {
		w.hot, w.hotName = nil, ""
	}
}

// fill lands the backlog of set name in its element map: a new map of the
// final size if the set has no elements yet (at start-up, always).
func (w *writer) fill(name string) {
	b := w.backlogs[name]
	if b == nil {
		return
	}
	w.dropBacklog(name)
	s := w.desired.Sets[name]
	if s.Elements.Len() == 0 {
		s.Elements = nft.NewElements(s, b.adds)
	}
	for _, chunk := range b.chunks {
		for _, c := range chunk {
			if c.present {
				s.Elements.PutKey(c.key)
			} else {
				s.Elements.DeleteKey(c.key)
			}
		}
	}
}

// fillAll lands every backlog: the desired state is read.
func (w *writer) fillAll() {
	for name := range w.backlogs {
		w.fill(name)
	}
}
