package enforcer

// sharedSets owns the sets whose content depends only on policy text: the
// interval sets of ipBlocks and of long port lists. Equal contents have one
// name (sharedSpec), so every rule that names the same block or list shares
// one set, which exists while an active rule uses it.
type sharedSets struct {
	w    *writer
	refs map[string]int // set name -> active rules using it
}

func newSharedSets(w *writer) *sharedSets { return &sharedSets{w: w, refs: map[string]int{}} }

// acquire counts one more user of s, creating the set for the first.
func (ss *sharedSets) acquire(s *sharedSpec) {
	ss.refs[s.name]++
	if ss.refs[s.name] == 1 {
		set := ss.w.putSet(s.set, len(s.elems))
		for _, e := range s.elems {
			set.Elements.Put(e)
		}
	}
}

// release counts one user less, deleting the set with the last.
func (ss *sharedSets) release(s *sharedSpec) {
	ss.refs[s.name]--
	if ss.refs[s.name] <= 0 {
		delete(ss.refs, s.name)
		ss.w.deleteSet(s.name)
	}
}
