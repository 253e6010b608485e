package nft

// State.Apply's atomicity. Fixtures and IP plan: fake_test.go.

import (
	"errors"
	"testing"
)

// TestStateApplyIsAtomic applies, to fxProgram, transactions that make one kind
// of change (or several) and then fail: the state must read exactly as before,
// and must still take the same changes without the failing operation.
func TestStateApplyIsAtomic(t *testing.T) {
	missing := fxElem(fxAddr("198.18.0.99"))
	for _, tc := range []struct {
		name    string
		changes func(tx *Transaction)
		fail    func(tx *Transaction) // the failing last operation(s)
		want    error
	}{
		{"new chain", func(tx *Transaction) {
			tx.AddChain(Chain{Name: "pod-in-new"})
			tx.ReplaceRules("pod-in-new", []Rule{fxRule(fxDrop())})
		}, func(tx *Transaction) { tx.DeleteElements("peer-v4-web", missing) }, ErrNotFound},
		{"replaced rules", func(tx *Transaction) {
			tx.ReplaceRules("pod-in-web", []Rule{fxRule(fxDrop())})
		}, func(tx *Transaction) { tx.DeleteChain("pod-in-nothing") }, ErrNotFound},
		{"deleted chain", func(tx *Transaction) {
			tx.DeleteElements("ingress-v4", fxVmapElem(fxAddr("198.18.0.30"), fxGoto("pod-in-db")))
			tx.DeleteElements("ingress-v6", fxVmapElem(fxAddr("2001:db8::30"), fxGoto("pod-in-db")))
			tx.ReplaceRules("pod-in-db", nil)
			tx.DeleteChain("pod-in-db")
		}, func(tx *Transaction) { tx.DeleteSet("peer-v4-frontend") }, ErrBusy},
		{"a chain jumped to after another chain's deletion in the batch", func(tx *Transaction) {
			tx.DeleteElements("ingress-v4", fxVmapElem(fxAddr("198.18.0.30"), fxGoto("pod-in-db")))
			tx.DeleteElements("ingress-v6", fxVmapElem(fxAddr("2001:db8::30"), fxGoto("pod-in-db")))
			tx.ReplaceRules("pod-in-db", nil)
			tx.DeleteChain("pod-in-db")
			tx.AddChain(Chain{Name: "pod-in-new"})
			tx.AddElements("ingress-v4", fxVmapElem(fxAddr("198.18.0.31"), fxGoto("pod-in-new")))
		}, func(tx *Transaction) { tx.DeleteChain("pod-in-new") }, ErrBusy},
		{"new set and elements", func(tx *Transaction) {
			tx.AddSet(Set{Name: "peer-v4-new", Key: []KeyType{TypeIPv4Addr}})
			tx.AddElements("peer-v4-new", fxElem(fxAddr("198.18.0.40")))
		}, func(tx *Transaction) {
			tx.AddElements("cidr-v4-external", fxPrefix("198.19.0.0/16")) // overlaps
		}, ErrExists},
		{"deleted set", func(tx *Transaction) {
			tx.ReplaceRules("pol-eg-frontend-egress", nil)
			tx.DeleteSet("peer-v4-web")
		}, func(tx *Transaction) { tx.AddElements("peer-v4-web", missing) }, ErrNotFound},
		{"elements of one operation before the failing one", func(tx *Transaction) {}, func(tx *Transaction) {
			tx.DeleteElements("peer-v4-frontend", fxElem(fxAddr("198.18.0.20")), missing)
		}, ErrNotFound},
		{"added elements, then a conflicting verdict", func(tx *Transaction) {
			tx.AddElements("peer-v6-web", fxElem(fxAddr("2001:db8::b")))
		}, func(tx *Transaction) {
			tx.AddElements("ingress-v4",
				fxVmapElem(fxAddr("198.18.0.31"), fxGoto("pod-in-db")),
				fxVmapElem(fxAddr("198.18.0.10"), fxGoto("pod-in-db"))) // web's address, another verdict
		}, ErrExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fxProgram()
			before := Render("t", s)
			tx := &Transaction{}
			tc.changes(tx)
			ok := len(tx.Ops)
			tc.fail(tx)
			err := s.Apply(tx)
			var opErr *OpError
			if !errors.As(err, &opErr) || opErr.Index != len(tx.Ops)-1 || !errors.Is(err, tc.want) {
				t.Fatalf("Apply = %v, want an *OpError for operation %d wrapping %v", err, len(tx.Ops)-1, tc.want)
			}
			if after := Render("t", s); after != before {
				t.Fatalf("a failed transaction changed the state:\n%s", lineDiff(before, after))
			}
			good := &Transaction{Ops: tx.Ops[:ok]}
			want := fxProgram()
			if err := want.Apply(good); err != nil {
				t.Fatalf("the changes alone: %v", err)
			}
			if err := s.Apply(good); err != nil || Render("t", s) != Render("t", want) {
				t.Fatalf("after the failure the state does not take the same changes (%v)", err)
			}
		})
	}
}

// TestStateApplyCountsJumpsAcrossBatches: the count of references that
// makes a chain busy (State.jumps) follows rules and verdict-map elements
// from batch to batch once counted, and a failed batch leaves no trace in it.
func TestStateApplyCountsJumpsAcrossBatches(t *testing.T) {
	s := fxProgram()
	jumpTo := func(addr, chain string) Element { return fxVmapElem(fxAddr(addr), fxGoto(chain)) }
	// count makes the batch count the references first (after a failed
	// batch they are not counted): a free chain created and deleted.
	count := func(tx *Transaction) {
		tx.AddChain(Chain{Name: "pod-in-free"})
		tx.DeleteChain("pod-in-free")
	}
	for i, step := range []struct {
		name string
		tx   func(tx *Transaction)
		want error
	}{
		{"a free chain deleted: the references are counted", count, nil},
		{"an element jumps to a new chain", func(tx *Transaction) {
			tx.AddChain(Chain{Name: "pod-in-new"})
			tx.AddElements("ingress-v4", jumpTo("198.18.0.31", "pod-in-new"))
		}, nil},
		{"so it is busy", func(tx *Transaction) { tx.DeleteChain("pod-in-new") }, ErrBusy},
		{"a second element, then a failure", func(tx *Transaction) {
			tx.AddElements("ingress-v4", jumpTo("198.18.0.32", "pod-in-new"))
			tx.DeleteElements("ingress-v4", jumpTo("198.18.0.99", "pod-in-new"))
		}, ErrNotFound},
		{"its one element deleted, it is free", func(tx *Transaction) {
			count(tx)
			tx.DeleteElements("ingress-v4", jumpTo("198.18.0.31", "pod-in-new"))
			tx.DeleteChain("pod-in-new")
		}, nil},
		{"a rule jumps to a new chain", func(tx *Transaction) {
			tx.AddChain(Chain{Name: "pod-in-a"})
			tx.AddChain(Chain{Name: "pod-in-b"})
			tx.ReplaceRules("pod-in-a", []Rule{fxRule(fxGoto("pod-in-b"))})
		}, nil},
		{"so it is busy too", func(tx *Transaction) { tx.DeleteChain("pod-in-b") }, ErrBusy},
		{"the rule gone, it is free", func(tx *Transaction) {
			count(tx)
			tx.ReplaceRules("pod-in-a", nil)
			tx.DeleteChain("pod-in-b")
		}, nil},
		{"a verdict map deleted with its elements frees their chains", func(tx *Transaction) {
			count(tx)
			tx.AddChain(Chain{Name: "pod-in-c"})
			tx.AddSet(Set{Name: "vm", Key: []KeyType{TypeIPv4Addr}, VerdictMap: true})
			tx.AddElements("vm", jumpTo("198.18.0.33", "pod-in-c"))
			tx.DeleteSet("vm")
			tx.DeleteChain("pod-in-c")
		}, nil},
	} {
		tx := &Transaction{}
		step.tx(tx)
		if err := s.Apply(tx); !errors.Is(err, step.want) || (err == nil) != (step.want == nil) {
			t.Fatalf("step %d (%s): Apply = %v, want %v", i, step.name, err, step.want)
		}
	}
}

// TestStateApplyOrdersRangesAcrossBatches: the order of an interval set's
// elements that the overlap check uses (State.ranges) follows additions and
// deletions from batch to batch once made, and a failed batch leaves no
// trace in it.
func TestStateApplyOrdersRangesAcrossBatches(t *testing.T) {
	s := fxProgram()
	const set = "cidr-v4-external"
	for i, step := range []struct {
		name string
		tx   func(tx *Transaction)
		want error
	}{
		{"a range: the set is ordered", func(tx *Transaction) { tx.AddElements(set, fxPrefix("198.18.64.0/24")) }, nil},
		{"one overlapping it", func(tx *Transaction) { tx.AddElements(set, fxPrefix("198.18.64.128/25")) }, ErrExists},
		{"it deleted, the other fits", func(tx *Transaction) {
			tx.AddElements(set, fxPrefix("198.18.70.0/24")) // ordered again after the failure
			tx.DeleteElements(set, fxPrefix("198.18.64.0/24"))
			tx.AddElements(set, fxPrefix("198.18.64.128/25"))
		}, nil},
		{"a range added by a batch that fails", func(tx *Transaction) {
			tx.AddElements(set, fxPrefix("198.18.65.0/24"))
			tx.DeleteElements(set, fxPrefix("198.18.66.0/24"))
		}, ErrNotFound},
		{"so one overlapping it fits", func(tx *Transaction) { tx.AddElements(set, fxPrefix("198.18.65.0/25")) }, nil},
		{"the set deleted and made again is empty", func(tx *Transaction) {
			tx.ReplaceRules("pol-in-allow-web", nil) // the rules that use it
			tx.DeleteSet(set)
			tx.AddSet(Set{Name: set, Key: []KeyType{TypeIPv4Addr}, Interval: true})
			tx.AddElements(set, fxPrefix("198.18.65.0/24"))
		}, nil},
	} {
		tx := &Transaction{}
		step.tx(tx)
		if err := s.Apply(tx); !errors.Is(err, step.want) || (err == nil) != (step.want == nil) {
			t.Fatalf("step %d (%s): Apply = %v, want %v", i, step.name, err, step.want)
		}
	}
}
