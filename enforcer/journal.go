package enforcer

import "github.com/nftwarden/nftwarden/nft"

// Journaled sets: changes to a big set kept beside its shared map.
//
// The writer shares every set's element map with the last snapshot (the
// state a reconcile sends, then the engine's record of what the dataplane
// holds) and copies a set at its first change after it (ownedSet). A shared
// tagged set (taggedsets.go) holds the addresses of every peer group of the
// node, 100,000s of elements at 100,000 pods: its copy would land on the
// first pod change after every reconcile, tens of milliseconds of it. So a
// journaled set is never copied: while it shares its map M with the record,
// the writer keeps its changes in an overlay (element ID -> the element, or
// its absence) and M stays what the record says the dataplane holds.
//
// A Flush diffs the overlay (the scope of the set's changes is within it),
// freezes it as in flight and starts a new one; once the dataplane took the
// batch, the frozen changes land in M, under both of the engine's locks, and
// M is again both what the record holds and, with the new overlay, what is
// desired. Nothing else writes M: the record's Apply leaves the journaled
// sets' element operations to the landing (recordable), and a reconcile,
// which reads its snapshot without the compiler's lock, holds the dataplane
// lock the landing needs. A snapshot gives a set with changes not landed a
// map of its own (ownPending). Putting or
// deleting the set ends its journal: the new set is the writer's own, and
// changes in flight still land in the record's map.
//
// M holds plain elements (no verdicts, no ranges): changing it outside
// nft.State.Apply leaves the record's counts of jumps and ranges right.

// overlay is a journaled set's changes by element ID.
type overlay map[string]pendingElement

// pendingElement is an element as changed: present, or deleted.
type pendingElement struct {
	e       nft.Element
	present bool
}

// pendingOverlay is an overlay in flight, to land in elems (the map the
// record shares) once the dataplane holds it. Detached: its set was put or
// deleted since, so it no longer says what is desired.
type pendingOverlay struct {
	name     string
	elems    nft.ElementMap
	changes  overlay
	detached bool
}

// journal marks set name (of a key type that will never hold verdicts or
// ranges) as journaled.
func (w *writer) journal(name string) { w.journaled[name] = true }

// note records a change of a journaled set in its overlay.
func (w *writer) note(name string, e nft.Element, present bool) {
	s := w.desired.Sets[name]
	id := nft.ElementID(s, e)
	ov := w.overlay[name]
	if ov == nil {
		ov = overlay{}
		w.overlay[name] = ov
	}
	ov[id] = pendingElement{e, present}
	if !w.untracked {
		w.scope.MarkElement(name, id)
	}
}

// mayPend reports whether set name may have changes not landed (pending
// may find one): without an element's ID.
func (w *writer) mayPend(name string) bool { return len(w.overlay[name]) > 0 || len(w.inflight) > 0 }

// pending returns the latest change of element id of set name not landed
// yet, if any.
func (w *writer) pending(name, id string) (pendingElement, bool) {
	if c, ok := w.overlay[name][id]; ok {
		return c, true
	}
	for i := len(w.inflight) - 1; i >= 0; i-- {
		if p := w.inflight[i]; p.name == name && !p.detached {
			if c, ok := p.changes[id]; ok {
				return c, true
			}
		}
	}
	return pendingElement{}, false
}

// detach ends the journal of set name, which is put or deleted.
func (w *writer) detach(name string) {
	delete(w.overlay, name)
	for i := range w.inflight {
		if w.inflight[i].name == name {
			w.inflight[i].detached = true
		}
	}
}

// withOverlays calls diff with the desired state's journaled sets showing
// their overlays: each holds, for the time of the call, the elements its
// overlay adds and none of those it deletes. That is exact for the
// elements the scope names (within the overlay), which are all a scoped
// nft.Diff reads of a set whose whole content is not in scope.
func (w *writer) withOverlays(diff func()) {
	saved := map[string]*nft.Set{}
	for name, ov := range w.overlay {
		s := w.desired.Sets[name]
		v := *s
		v.Elements = nft.NewElements(&v, len(ov))
		for _, c := range ov {
			if c.present {
				v.Elements.Put(c.e)
			}
		}
		saved[name] = s
		w.desired.Sets[name] = &v
	}
	defer func() {
		for name, s := range saved {
			w.desired.Sets[name] = s
		}
	}()
	diff()
}

// freeze puts the overlays in flight (a Flush sends them) and starts new
// ones.
func (w *writer) freeze() {
	for name, ov := range w.overlay {
		w.inflight = append(w.inflight, pendingOverlay{name: name, elems: w.desired.Sets[name].Elements, changes: ov})
	}
	clear(w.overlay)
}

// recordable is tx without the element operations of the sets in flight,
// which land instead (land): what the record's Apply may do.
func (w *writer) recordable(tx *nft.Transaction) *nft.Transaction {
	if len(w.inflight) == 0 {
		return tx
	}
	flying := map[string]bool{}
	for _, p := range w.inflight {
		flying[p.name] = true
	}
	out := &nft.Transaction{Ops: make([]nft.Op, 0, len(tx.Ops))}
	for _, op := range tx.Ops {
		if (op.Kind == nft.OpAddElements || op.Kind == nft.OpDeleteElements) && flying[op.Name] {
			continue
		}
		out.Ops = append(out.Ops, op)
	}
	return out
}

// land puts the changes in flight into the maps the record shares: the
// dataplane and the record hold them now. The caller holds mu and applyMu.
func (w *writer) land() {
	for _, p := range w.inflight {
		apply(p.elems, p.changes)
	}
	w.inflight = w.inflight[:0]
}

// ownPending gives each journaled set with changes not landed a map of its
// own that holds them, for a snapshot, and ends the journals. The maps the
// record shares stay as they are: a reconcile that fails leaves the record
// as it was, and one that succeeds replaces it. That copies a big set, but
// only for a reconcile that finds changes no Flush sent (made since the
// last one, or that a failed one did not), not at the first change after
// every reconcile.
func (w *writer) ownPending() {
	for _, p := range w.inflight {
		if !p.detached {
			w.ownCopy(p.name)
			apply(w.desired.Sets[p.name].Elements, p.changes)
		}
	}
	w.inflight = nil
	for name, ov := range w.overlay {
		w.ownCopy(name)
		apply(w.desired.Sets[name].Elements, ov)
	}
	clear(w.overlay)
}

// ownCopy gives set name of the desired state a map of its own, once.
func (w *writer) ownCopy(name string) {
	if _, ok := w.owned[name]; !ok {
		w.desired.Sets[name] = w.desired.Sets[name].WithOwnElements()
		w.owned[name] = struct{}{}
	}
}

func apply(elems nft.ElementMap, changes overlay) {
	for _, c := range changes {
		if c.present {
			elems.Put(c.e)
		} else {
			elems.Delete(c.e)
		}
	}
}

// withPending applies the changes not landed yet to the sets of s, a deep
// copy of the desired state.
func (w *writer) withPending(s *nft.State) *nft.State {
	for _, p := range w.inflight {
		if set := s.Sets[p.name]; set != nil && !p.detached {
			apply(set.Elements, p.changes)
		}
	}
	for name, ov := range w.overlay {
		apply(s.Sets[name].Elements, ov)
	}
	return s
}

// pendingCount is how many elements the changes not landed yet add to the
// desired state (negative: remove).
func (w *writer) pendingCount() int {
	n := 0
	seen := map[[2]string]bool{}
	count := func(name string, changes overlay) {
		base := w.desired.Sets[name].Elements
		for id := range changes {
			if seen[[2]string{name, id}] {
				continue
			}
			seen[[2]string{name, id}] = true
			c, _ := w.pending(name, id)
			had := base.Has(id)
			switch {
			case c.present && !had:
				n++
			case !c.present && had:
				n--
			}
		}
	}
	for name, ov := range w.overlay {
		count(name, ov)
	}
	for _, p := range w.inflight {
		if !p.detached {
			count(p.name, p.changes)
		}
	}
	return n
}
