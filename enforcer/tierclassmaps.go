package enforcer

// Class maps of the ClusterNetworkPolicy tiers (tierclasses.go has the peer
// classes they map addresses to): per group and family, the runs of
// addresses and the class of each, sent as interval elements.

import (
	"maps"
	"net/netip"
	"slices"
	"sort"

	"github.com/nftwarden/nftwarden/nft"
)

// classRun is one run of a class map: from lo to the next run's lo (or the
// end of the family), class nil: no rule matches.
type classRun struct {
	lo    netip.Addr
	class *tierClass
}

// netRun is one run of the networks part of a class map: the rules whose
// networks peers (or whose failing to parse: the whole family) cover it, and
// their class once interned (setNet).
type netRun struct {
	lo    netip.Addr
	ids   []string
	class *tierClass
}

// classMap is one group's class map of one family.
type classMap struct {
	name string
	fam  Family
	net  []netRun
	// sel are the pod addresses some selector peer of the group matches,
	// with the class of those rules.
	sel  map[netip.Addr]*tierClass
	runs []classRun
	// gone: the group was destroyed (its elements of the operation are
	// not sent).
	gone bool
}

// newClassMap is an empty class map: one run with no class.
func newClassMap(name string, f Family) *classMap {
	first, _ := familyBounds(f)
	return &classMap{name: name, fam: f, sel: map[netip.Addr]*tierClass{}, runs: []classRun{{lo: first}}, net: []netRun{{lo: first}}}
}

// end is the last address of run i.
func (cm *classMap) end(i int) netip.Addr {
	if i+1 < len(cm.runs) {
		return cm.runs[i+1].lo.Prev()
	}
	_, last := familyBounds(cm.fam)
	return last
}

// netAt is the networks part of the class at a.
func (cm *classMap) netAt(a netip.Addr) *tierClass {
	i := sort.Search(len(cm.net), func(i int) bool { return cm.net[i].lo.Compare(a) > 0 }) - 1
	return cm.net[i].class
}

// setNet makes runs (netRuns) the networks part of cm, interning their
// classes.
func (t *tiers) setNet(g *tierGroup, cm *classMap, runs []netRun) {
	for i := range runs {
		runs[i].class = t.intern(g.dir, g.tier, runs[i].ids)
		t.holdClass(runs[i].class, +1)
	}
	for _, r := range cm.net {
		t.holdClass(r.class, -1)
	}
	cm.net = runs
}

// classAt is the class address a should have.
func (t *tiers) classAt(g *tierGroup, cm *classMap, a netip.Addr) *tierClass {
	return t.union(g, cm.netAt(a), cm.sel[a])
}

// setAt gives address a class c (setClasses).
func (t *tiers) setAt(cm *classMap, a netip.Addr, c *tierClass) {
	t.setClasses(cm, []classRun{{lo: a, class: c}})
}

// runAt is the index of the run holding address a.
func (cm *classMap) runAt(a netip.Addr) int {
	return sort.Search(len(cm.runs), func(i int) bool { return cm.runs[i].lo.Compare(a) > 0 }) - 1
}

// setClasses gives each address of pts (sorted, distinct; lo the address)
// its class, splitting and merging the runs around them, and sends the
// elements that change. Points whose runs are near each other (a namespace
// whose pods' class changed together) form one window, recomputed and sent
// at once; the runs are copied once for all windows.
func (t *tiers) setClasses(cm *classMap, pts []classRun) {
	pts = slices.DeleteFunc(pts, func(p classRun) bool { return cm.runs[cm.runAt(p.lo)].class == p.class })
	if len(pts) == 0 {
		return
	}
	type window struct {
		from, to int
		runs     []classRun
	}
	var windows []window
	grows := false
	for k, next := 0, 0; k < len(pts); {
		first := cm.runAt(pts[k].lo)
		last, m := first, k+1
		for ; m < len(pts); m++ {
			r := cm.runAt(pts[m].lo)
			if r > last+2 { // its window would not touch this one
				break
			}
			last = r
		}
		w := window{from: max(first-1, next), to: min(last+1, len(cm.runs)-1)}
		w.runs = cm.window(w.from, w.to, pts[k:m])
		end := cm.end(w.to)
		t.sendRuns(cm, cm.runs[w.from:w.to+1], end, w.runs, end)
		grows = grows || len(w.runs) != w.to-w.from+1
		windows = append(windows, w)
		next, k = w.to+1, m
	}
	if !grows { // a class changes, the runs stay: most changes, no copy
		for _, w := range windows {
			copy(cm.runs[w.from:], w.runs)
		}
		return
	}
	out := make([]classRun, 0, len(cm.runs)+2*len(pts))
	next := 0 // the first old run not yet copied
	for _, w := range windows {
		out = append(append(out, cm.runs[next:w.from]...), w.runs...)
		next = w.to + 1
	}
	cm.runs = append(out, cm.runs[next:]...)
}

// window is the canonical list of runs that old runs from..to become with
// the classes of pts (all inside them).
func (cm *classMap) window(from, to int, pts []classRun) []classRun {
	var raw []classRun
	for r := from; r <= to; r++ {
		lo, end, open := cm.runs[r].lo, cm.end(r), true
		for ; len(pts) > 0 && pts[0].lo.Compare(end) <= 0; pts = pts[1:] {
			if pts[0].lo != lo {
				raw = append(raw, classRun{lo: lo, class: cm.runs[r].class})
			}
			raw = append(raw, pts[0])
			if open = pts[0].lo != end; open {
				lo = pts[0].lo.Next()
			}
		}
		if open {
			raw = append(raw, classRun{lo: lo, class: cm.runs[r].class})
		}
	}
	merged := raw[:1]
	for _, p := range raw[1:] {
		if p.class != merged[len(merged)-1].class {
			merged = append(merged, p)
		}
	}
	return merged
}

// rebuildRuns recomputes every run from the networks part and the selector
// addresses, and sends the elements that change.
func (t *tiers) rebuildRuns(g *tierGroup, cm *classMap) {
	first, last := familyBounds(cm.fam)
	starts := map[netip.Addr]struct{}{first: {}}
	for _, n := range cm.net {
		starts[n.lo] = struct{}{}
	}
	for a := range cm.sel {
		starts[a] = struct{}{}
		if a != last {
			starts[a.Next()] = struct{}{}
		}
	}
	var runs []classRun
	for _, lo := range slices.SortedFunc(maps.Keys(starts), netip.Addr.Compare) {
		c := t.classAt(g, cm, lo)
		if n := len(runs); n > 0 && runs[n-1].class == c {
			continue
		}
		runs = append(runs, classRun{lo: lo, class: c})
	}
	old := cm.runs
	cm.runs = runs
	t.sendRuns(cm, old, last, runs, last)
}

// classSpan is a run with a class as the interval of its element.
type classSpan struct {
	lo, hi netip.Addr
	class  *tierClass
}

// appendSpans appends the spans of the runs with a class, in address order.
func appendSpans(out []classSpan, runs []classRun, last netip.Addr) []classSpan {
	for i, r := range runs {
		if r.class == nil {
			continue
		}
		hi := last
		if i+1 < len(runs) {
			hi = runs[i+1].lo.Prev()
		}
		out = append(out, classSpan{r.lo, hi, r.class})
	}
	return out
}

// sendRuns records (for finishClasses) the difference between the elements
// of two run lists covering the same addresses (each ending at its given
// last address). Their spans merge like sorted lists, in buffers reused
// from call to call (a policy change makes hundreds of small windows).
func (t *tiers) sendRuns(cm *classMap, old []classRun, oldLast netip.Addr, cur []classRun, curLast netip.Addr) {
	type span = classSpan
	del := func(s span) {
		t.sent = append(t.sent, sentElement{cm: cm, lo: s.lo, hi: s.hi, class: s.class})
		t.useClass(s.class, -1)
	}
	add := func(s span) {
		t.sent = append(t.sent, sentElement{cm: cm, lo: s.lo, hi: s.hi, class: s.class, add: true})
		t.useClass(s.class, +1)
	}
	t.spans[0] = appendSpans(t.spans[0][:0], old, oldLast)
	t.spans[1] = appendSpans(t.spans[1][:0], cur, curLast)
	was, now := t.spans[0], t.spans[1]
	for len(was) > 0 || len(now) > 0 {
		switch {
		case len(now) == 0 || (len(was) > 0 && was[0].lo.Less(now[0].lo)):
			del(was[0])
			was = was[1:]
		case len(was) == 0 || now[0].lo.Less(was[0].lo):
			add(now[0])
			now = now[1:]
		default: // the same start: kept, or deleted before its successor is added
			if was[0] != now[0] {
				del(was[0])
				add(now[0])
			}
			was, now = was[1:], now[1:]
		}
	}
}

// jumpsTo is the chain the element of cm for an interval jumps to in the
// desired state ("" for none).
func (t *tiers) jumpsTo(cm *classMap, lo, hi netip.Addr) string {
	s := t.w.set(cm.name)
	if e, ok := s.Elements.Lookup(classElement(lo, hi, nil)); ok && e.Verdict != nil {
		return e.Verdict.Chain
	}
	return ""
}

// classElement is the element of an address interval jumping to c's chain.
func classElement(lo, hi netip.Addr, c *tierClass) nft.Element {
	e := nft.Element{Key: []nft.Value{nft.AddrValue(lo)}}
	if hi != lo {
		e.KeyEnd = []nft.Value{nft.AddrValue(hi)}
	}
	if c != nil {
		e.Verdict = &nft.Verdict{Kind: nft.VerdictJump, Chain: c.name}
	}
	return e
}

// netRuns computes the networks part of a class map from the rules with
// networks peers or that failed to parse (the whole family): a sweep over
// the intervals' ends.
func netRuns(f Family, rules []*tierRule) []netRun {
	first, last := familyBounds(f)
	type event struct {
		at    netip.Addr
		id    string
		delta int
	}
	var events []event
	for _, r := range rules {
		if r.r.broken {
			events = append(events, event{first, r.id, 1})
			continue
		}
		blocks := slices.Clone(r.nodes)
		for _, p := range r.r.peers {
			blocks = append(blocks, p.networks...)
		}
		for _, n := range blocks {
			if familyOf(n.Addr()) != f {
				continue
			}
			events = append(events, event{n.Addr(), r.id, 1})
			if hi := prefixLast(n); hi != last {
				events = append(events, event{hi.Next(), r.id, -1})
			}
		}
	}
	slices.SortFunc(events, func(a, b event) int { return a.at.Compare(b.at) })
	count := map[string]int{}
	runs := []netRun{{lo: first}}
	for k := 0; k < len(events); {
		at := events[k].at
		for ; k < len(events) && events[k].at == at; k++ {
			if count[events[k].id] += events[k].delta; count[events[k].id] == 0 {
				delete(count, events[k].id)
			}
		}
		ids := slices.Sorted(maps.Keys(count))
		if n := len(runs); slices.Equal(runs[n-1].ids, ids) {
			continue
		} else if runs[n-1].lo == at {
			runs[n-1].ids = ids
			continue
		}
		runs = append(runs, netRun{lo: at, ids: ids})
	}
	return runs
}

// familyBounds are the first and last addresses of a family.
func familyBounds(f Family) (netip.Addr, netip.Addr) {
	if f == IPv6 {
		return netip.IPv6Unspecified(), netip.AddrFrom16([16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	return netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{0xff, 0xff, 0xff, 0xff})
}
