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
}

func newWriter() *writer { return &writer{desired: nft.NewState(), scope: &nft.Scope{}} }

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
	s.Elements = make(map[string]nft.Element, n)
	w.desired.Sets[s.Name] = &s
	if !w.untracked {
		w.scope.MarkSet(s.Name)
	}
	return &s
}

func (w *writer) deleteSet(name string) {
	delete(w.desired.Sets, name)
	if !w.untracked {
		w.scope.MarkSet(name)
	}
}

func (w *writer) addElement(set string, e nft.Element) {
	s := w.desired.Sets[set]
	id := nft.ElementID(s, e)
	s.Elements[id] = e
	if !w.untracked {
		w.scope.MarkElement(set, id)
	}
}

func (w *writer) delElement(set string, e nft.Element) {
	s := w.desired.Sets[set]
	id := nft.ElementID(s, e)
	delete(s.Elements, id)
	if !w.untracked {
		w.scope.MarkElement(set, id)
	}
}

// hasElement reports whether set holds e (false for a missing set).
func (w *writer) hasElement(set string, e nft.Element) bool {
	s := w.desired.Sets[set]
	if s == nil {
		return false
	}
	_, ok := s.Elements[nft.ElementID(s, e)]
	return ok
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

func addrElement(a netip.Addr) nft.Element { return nft.Element{Key: []nft.Value{nft.AddrValue(a)}} }

// markObject records that a named object may have changed.
func (w *writer) markObject(name string) {
	if !w.untracked {
		w.scope.MarkObject(name)
	}
}
