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
// copied as it grows.
//
// Invariant: a set has a backlog only while the writer is untracked and owns
// it; putting or deleting the set drops its backlog (the new set starts
// empty), and every reader of elements fills first.

// backlogChunk is how many changes one chunk of a backlog holds at most. The
// first chunk holds backlogFirst, each next one twice the last up to
// backlogChunk: most sets are small, and a full chunk (64 KiB) for each was
// a third of the backlogs' memory at start-up.
const (
	backlogChunk = 1024
	backlogFirst = 16
)

// backlog is the changes to one set not in its map yet, in order.
type backlog struct {
	chunks [][]pendingElement
	adds   int // changes that add: the most elements they can leave
}

func (b *backlog) push(e nft.Element, present bool) {
	if n := len(b.chunks); n == 0 || len(b.chunks[n-1]) == cap(b.chunks[n-1]) {
		size := backlogFirst
		if n > 0 {
			size = min(2*cap(b.chunks[n-1]), backlogChunk)
		}
		b.chunks = append(b.chunks, make([]pendingElement, 0, size))
	}
	last := &b.chunks[len(b.chunks)-1]
	*last = append(*last, pendingElement{e, present})
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
		w.deferChange(name, e, present)
		return true
	}
	if w.desired.Sets[name] == nil {
		return false
	}
	w.note(name, e, present)
	return true
}

// deferChange adds a change of set name to its backlog.
func (w *writer) deferChange(name string, e nft.Element, present bool) {
	b := w.backlogs[name]
	if b == nil {
		b = &backlog{}
		w.backlogs[name] = b
	}
	b.push(e, present)
}

// fill lands the backlog of set name in its element map: a new map of the
// final size if the set has no elements yet (at start-up, always).
func (w *writer) fill(name string) {
	b := w.backlogs[name]
	if b == nil {
		return
	}
	delete(w.backlogs, name)
	s := w.desired.Sets[name]
	if len(s.Elements) == 0 {
		s.Elements = make(map[string]nft.Element, b.adds)
	}
	for _, chunk := range b.chunks {
		for _, c := range chunk {
			id := nft.ElementID(s, c.e)
			if c.present {
				s.Elements[id] = c.e
			} else {
				delete(s.Elements, id)
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
