package enforcer

import (
	"net/netip"

	"github.com/nftwarden/nftwarden/nft"
)

// writer is the one door to the desired state. Every part of the compiler
// puts and deletes its nftables objects through it, and it records what each
// change touched in scope, so that Flush diffs only that.
type writer struct {
	desired *nft.State
	scope   *nft.Scope
	// untracked turns scope marking off while a full reconcile is pending
	// anyway (start-up, after a failure): the initial build does not pay for it.
	untracked bool
	// owned names the sets whose element map the writer alone holds: those
	// it created or copied since the last snapshot. The others share their
	// map with the snapshot (the state a reconcile sends and then keeps as
	// what the dataplane holds), and are copied before their first change
	// unless they are journaled.
	owned map[string]struct{}
	// journaled names the sets too big to copy at a change (the shared
	// tagged sets, taggedsets.go, which hold every peer group's addresses):
	// while such a set shares its map with the snapshot, its changes go to
	// an overlay instead (journal.go).
	journaled map[string]bool
	overlay   map[string]overlay // by set name
	// inflight are the overlays of the changes a Flush is sending, landed in
	// the shared maps once the dataplane and the record hold them (land).
	inflight []pendingOverlay
	// backlogs are the changes to journaled sets made while untracked, not
	// in their maps yet (backlog.go).
	backlogs map[string]*backlog
	// hot is the backlog a change went to last, of set hotName (nil: none),
	// taken without looking the set up (backlog.go, dropBacklog).
	hot     *backlog
	hotName string
}

func newWriter() *writer {
	return &writer{desired: nft.NewState(), scope: &nft.Scope{}, owned: map[string]struct{}{},
		journaled: map[string]bool{}, overlay: map[string]overlay{}, backlogs: map[string]*backlog{}}
}

// snapshot returns a copy of the desired state that shares the sets'
// element maps with it (nft.State.CloneSharingElements): a reconcile no
// longer copies every element of the table, only the sets that change after
// it, each once (journaled ones, only if changes wait in their overlays:
// ownPending). The caller holds mu and applyMu.
func (w *writer) snapshot() *nft.State {
	w.fillAll()
	w.ownPending()
	clear(w.owned)
	return w.desired.CloneSharingElements()
}

// ownedSet returns set name of the desired state with an element map of its
// own, copying it if the last snapshot shares it.
func (w *writer) ownedSet(name string) *nft.Set {
	s := w.desired.Sets[name]
	if _, ok := w.owned[name]; ok {
		return s
	}
	cp := s.WithOwnElements()
	w.desired.Sets[name] = cp
	w.owned[name] = struct{}{}
	return cp
}

// takeScope returns what was touched since the last call and starts a new scope.
func (w *writer) takeScope() *nft.Scope {
	s := w.scope
	w.scope = &nft.Scope{}
	return s
}

func (w *writer) chain(name string) *nft.Chain { return w.desired.Chains[name] }

func (w *writer) putChain(ch *nft.Chain) {
	ch.Comment = comment(ch.Comment)
	w.desired.Chains[ch.Name] = ch
	if !w.untracked {
		w.scope.MarkChain(ch.Name)
	}
}

func (w *writer) deleteChain(name string) {
	delete(w.desired.Chains, name)
	if !w.untracked {
		w.scope.MarkChain(name)
	}
}

func (w *writer) set(name string) *nft.Set { return w.desired.Sets[name] }

// putSet puts an empty set with room for n elements.
func (w *writer) putSet(s nft.Set, n int) *nft.Set {
	s.Comment = comment(s.Comment)
	s.Elements = nft.NewElements(&s, n)
	w.detach(s.Name)
	w.dropBacklog(s.Name)
	w.desired.Sets[s.Name] = &s
	w.owned[s.Name] = struct{}{}
	if !w.untracked {
		w.scope.MarkSet(s.Name)
	}
	return &s
}

func (w *writer) deleteSet(name string) {
	w.detach(name)
	w.dropBacklog(name)
	delete(w.desired.Sets, name)
	delete(w.owned, name)
	if !w.untracked {
		w.scope.MarkSet(name)
	}
}

func (w *writer) addElement(set string, e nft.Element) {
	if w.pushHot(set, e, true) {
		return
	}
	if w.journaled[set] && w.deferOrNote(set, e, true) {
		return
	}
	s := w.ownedSet(set)
	s.Elements.Put(e)
	if !w.untracked {
		w.scope.MarkElement(set, nft.ElementID(s, e))
	}
}

func (w *writer) delElement(set string, e nft.Element) {
	if w.pushHot(set, e, false) {
		return
	}
	if w.journaled[set] && w.deferOrNote(set, e, false) {
		return
	}
	s := w.ownedSet(set)
	s.Elements.Delete(e)
	if !w.untracked {
		w.scope.MarkElement(set, nft.ElementID(s, e))
	}
}

// hasElement reports whether set holds e (false for a missing set).
func (w *writer) hasElement(set string, e nft.Element) bool {
	s := w.desired.Sets[set]
	if s == nil {
		return false
	}
	w.fill(set)
	if w.mayPend(set) {
		if c, ok := w.pending(set, nft.ElementID(s, e)); ok {
			return c.present
		}
	}
	return s.Elements.Contains(e)
}

func (w *writer) object(name string) *nft.Object { return w.desired.Objects[name] }

// putObject puts a named object (counter or limit). Objects are immutable in
// the kernel: a caller changes one by giving it another name.
func (w *writer) putObject(o *nft.Object) {
	if w.desired.Objects == nil {
		w.desired.Objects = map[string]*nft.Object{}
	}
	o.Comment = comment(o.Comment)
	w.desired.Objects[o.Name] = o
	w.markObject(o.Name)
}

func (w *writer) deleteObject(name string) {
	delete(w.desired.Objects, name)
	w.markObject(name)
}

// addKey and delKey are addElement and delElement of the element of packed
// key k (nft.AddrTagKey): a peer group's address, at start-up without an
// Element (backlog.go).
func (w *writer) addKey(set string, k nft.ElementKey) { w.changeKey(set, k, true) }

func (w *writer) delKey(set string, k nft.ElementKey) { w.changeKey(set, k, false) }

// hasKey is hasElement of the element of packed key k. It builds the
// Element: only an address that two pods claim asks (conflicts.go).
func (w *writer) hasKey(set string, k nft.ElementKey) bool {
	s := w.desired.Sets[set]
	return s != nil && w.hasElement(set, nft.KeyElement(s, k))
}

func addrElement(a netip.Addr) nft.Element { return nft.Element{Key: []nft.Value{nft.AddrValue(a)}} }

// markObject records that a named object may have changed.
func (w *writer) markObject(name string) {
	if !w.untracked {
		w.scope.MarkObject(name)
	}
}
