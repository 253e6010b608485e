package enforcer

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
)

// TestWriterSnapshotUnchangedByLaterChanges: the snapshot a reconcile takes
// shares the sets' elements with the desired state (writer.snapshot); every
// change made after it, of any kind, leaves the snapshot as it was, and a
// set is copied once, at its first change; a journaled one never.
func TestWriterSnapshotUnchangedByLaterChanges(t *testing.T) {
	a1, a2, a3 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
	for _, tc := range []struct {
		name   string
		change func(w *writer)
		want   []netip.Addr // set "s" of the desired state after the change (nil: no set)
	}{
		{"add an element", func(w *writer) { w.addElement("s", addrElement(a3)) }, []netip.Addr{a1, a2, a3}},
		{"delete an element", func(w *writer) { w.delElement("s", addrElement(a1)) }, []netip.Addr{a2}},
		{"add then delete", func(w *writer) {
			w.addElement("s", addrElement(a3))
			w.delElement("s", addrElement(a2))
		}, []netip.Addr{a1, a3}},
		{"put the set again", func(w *writer) {
			w.putSet(nft.Set{Name: "s", Key: []nft.KeyType{nft.TypeIPv4Addr}}, 1)
			w.addElement("s", addrElement(a3))
		}, []netip.Addr{a3}},
		{"delete the set", func(w *writer) { w.deleteSet("s") }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriter()
			w.putSet(nft.Set{Name: "s", Key: []nft.KeyType{nft.TypeIPv4Addr}}, 2)
			w.addElement("s", addrElement(a1))
			w.addElement("s", addrElement(a2))
			snap := w.snapshot()
			tc.change(w)
			checkSetAddrs(t, "snapshot", snap, []netip.Addr{a1, a2})
			checkSetAddrs(t, "desired", w.desired, tc.want)
			if s := w.desired.Sets["s"]; s != nil {
				before := s.Elements
				w.addElement("s", addrElement(a2))
				if !w.desired.Sets["s"].Elements.Shares(before) {
					t.Error("a second change after the snapshot copied the set again")
				}
				checkSetAddrs(t, "snapshot after a second change", snap, []netip.Addr{a1, a2})
			}
		})
		// A journaled set (journal.go) is never copied: the snapshot's map
		// stays as it was until a Flush lands the changes it sent, and then
		// holds them, being the record of what the dataplane holds.
		t.Run(tc.name+", journaled", func(t *testing.T) {
			w := newWriter()
			w.journal("s")
			w.putSet(nft.Set{Name: "s", Key: []nft.KeyType{nft.TypeIPv4Addr}}, 2)
			w.addElement("s", addrElement(a1))
			w.addElement("s", addrElement(a2))
			snap := w.snapshot()
			shared := snap.Sets["s"].Elements
			tc.change(w)
			checkSetAddrs(t, "snapshot", snap, []netip.Addr{a1, a2})
			checkSetAddrs(t, "desired", w.withPending(w.desired.Clone()), tc.want)
			s := w.desired.Sets["s"]
			if s == nil || !s.Elements.Shares(shared) {
				return // put again or deleted: the new set is the writer's own
			}
			if w.hasElement("s", addrElement(a3)) != slices.Contains(tc.want, a3) {
				t.Errorf("hasElement(%v) disagrees with the desired state", a3)
			}
			// A Flush: the overlay in flight, then landed.
			w.freeze()
			w.addElement("s", addrElement(a1)) // a change while the batch is in flight
			checkSetAddrs(t, "snapshot while in flight", snap, []netip.Addr{a1, a2})
			w.land()
			checkSetAddrs(t, "snapshot after the flush", snap, tc.want)
			after := tc.want
			if !slices.Contains(after, a1) {
				after = append(slices.Clone(after), a1)
			}
			checkSetAddrs(t, "desired after the flush", w.withPending(w.desired.Clone()), after)
			if !w.desired.Sets["s"].Elements.Shares(shared) {
				t.Error("the journaled set was copied")
			}
		})
	}
}

func checkSetAddrs(t *testing.T, what string, st *nft.State, want []netip.Addr) {
	t.Helper()
	s := st.Sets["s"]
	if want == nil {
		if s != nil {
			t.Errorf("%s: set s still there with %d elements", what, s.Elements.Len())
		}
		return
	}
	if s == nil {
		t.Fatalf("%s: no set s", what)
	}
	if s.Elements.Len() != len(want) {
		t.Errorf("%s: %d elements, want %d", what, s.Elements.Len(), len(want))
	}
	for _, a := range want {
		if !s.Elements.Contains(addrElement(a)) {
			t.Errorf("%s: %v missing", what, a)
		}
	}
}

// TestWriterBacklog: while untracked, the changes to a journaled set the
// writer owns wait in a backlog (backlog.go); whatever reads the set sees
// exactly what the same changes made one by one give.
func TestWriterBacklog(t *testing.T) {
	a1, a2, a3 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
	put := func(w *writer) { w.putSet(nft.Set{Name: "s", Key: []nft.KeyType{nft.TypeIPv4Addr}}, 0) }
	add := func(a netip.Addr) func(w *writer) { return func(w *writer) { w.addElement("s", addrElement(a)) } }
	del := func(a netip.Addr) func(w *writer) { return func(w *writer) { w.delElement("s", addrElement(a)) } }
	addK := func(a netip.Addr) func(w *writer) { return func(w *writer) { w.addKey("s", nft.AddrTagKey(a, nil)) } }
	delK := func(a netip.Addr) func(w *writer) { return func(w *writer) { w.delKey("s", nft.AddrTagKey(a, nil)) } }
	// odd is an element that does not pack (an address of 16 bytes in a
	// set of IPv4 addresses: never from the engine).
	odd := nft.Element{Key: []nft.Value{nft.Value(netip.MustParseAddr("::ffff:198.18.0.9").AsSlice())}}
	addOdd := func(w *writer) { w.addElement("s", odd) }
	delOdd := func(w *writer) { w.delElement("s", odd) }
	// Enough changes for chunks of every size (backlogFirst doubling up to
	// backlogChunk, then more full ones), deletes landing after their adds.
	many, manyWant := []func(*writer){put}, []netip.Addr(nil)
	for i := range 3 * backlogChunk {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		many = append(many, add(a))
		if i%3 == 0 {
			many = append(many, del(a))
		} else {
			manyWant = append(manyWant, a)
		}
	}
	for _, tc := range []struct {
		name  string
		steps []func(w *writer)
		want  []netip.Addr // nil: no set
	}{
		{"many chunks", many, manyWant},
		{"adds", []func(*writer){put, add(a1), add(a2), add(a1)}, []netip.Addr{a1, a2}},
		{"add, delete, add again", []func(*writer){put, add(a1), add(a2), del(a1), add(a3), add(a1), del(a3)}, []netip.Addr{a1, a2}},
		{"delete what is absent", []func(*writer){put, del(a1), add(a2)}, []netip.Addr{a2}},
		{"put again drops the backlog", []func(*writer){put, add(a1), put, add(a2)}, []netip.Addr{a2}},
		{"delete the set drops the backlog", []func(*writer){put, add(a1), func(w *writer) { w.deleteSet("s") }}, nil},
		{"delete and put again", []func(*writer){put, add(a1), func(w *writer) { w.deleteSet("s") }, put, add(a3)}, []netip.Addr{a3}},
		{"by packed key", []func(*writer){put, addK(a1), add(a2), delK(a2), addK(a3), del(a1), addK(a1)}, []netip.Addr{a1, a3}},
		{"an element that does not pack lands the backlog first", []func(*writer){put, add(a1), addOdd, del(a1), addK(a3), delOdd, add(a2)}, []netip.Addr{a2, a3}},
		{"a read between the changes", []func(*writer){put, add(a1), add(a2), func(w *writer) {
			if !w.hasElement("s", addrElement(a2)) || w.hasElement("s", addrElement(a3)) {
				t.Error("hasElement disagrees with the changes made")
			}
		}, del(a2), add(a3)}, []netip.Addr{a1, a3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, ref := newWriter(), newWriter()
			w.journal("s")
			w.untracked = true
			for _, step := range tc.steps {
				step(w)
				step(ref)
			}
			if tc.want != nil && len(w.backlogs) == 0 {
				t.Error("no backlog: the changes went to the map one by one")
			}
			if w.hasElement("s", odd) != ref.hasElement("s", odd) || w.hasKey("s", nft.AddrTagKey(a1, nil)) != ref.hasElement("s", addrElement(a1)) {
				t.Error("hasElement or hasKey disagrees with the reference")
			}
			w.fillAll()
			if len(w.backlogs) != 0 {
				t.Error("backlogs left after fillAll")
			}
			checkSetAddrs(t, "reference", ref.desired, tc.want)
			checkSetAddrs(t, "filled", w.desired, tc.want)
			// Once a snapshot is taken the set is shared: no more backlog.
			w.untracked = false
			snap := w.snapshot()
			if tc.want != nil {
				w.addElement("s", addrElement(a3))
				if len(w.backlogs) != 0 {
					t.Error("a change after the snapshot went to a backlog")
				}
				checkSetAddrs(t, "snapshot", snap, tc.want)
			}
		})
	}
}
