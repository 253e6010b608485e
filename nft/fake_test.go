package nft

// Fixtures shared by the Fake, Render, Trace and Diff tests. Helper names start
// with "fx" so they do not collide with other test files of the package.
//
// IP plan (test ranges only):
//
//	198.18.0.10   2001:db8::a    pod prod/web       isolated for ingress (pod-in-web)
//	198.18.0.20   2001:db8::20   pod prod/frontend  isolated for egress (pod-eg-frontend)
//	198.18.0.21   2001:db8::21   pod prod/frontend-2 (not isolated)
//	198.18.0.30   2001:db8::30   pod prod/db        isolated for ingress, no policy allows
//	198.19.0.0/16 except 198.19.1.0/24          ipBlock "external" (v4)
//	2001:db8:100::/48 except 2001:db8:100:1::/64 ipBlock "external" (v6)
//
// Policies: prod/allow-web lets frontend pods (TCP 80, TCP 8000-8080, all UDP), the
// external ipBlock (any port) and anyone to web's named port http (TCP 8080) into
// web; prod/frontend-egress lets frontend talk to web on TCP 80 only.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func fxAddr(s string) Value { return AddrValue(netip.MustParseAddr(s)) }

// fxRange is the [from, to] element of a one-component interval set, a plain
// key when from == to (the canonical form, as the kernel stores it).
func fxRange(from, to Value) Element {
	if bytes.Equal(from, to) {
		return Element{Key: []Value{from}}
	}
	return Element{Key: []Value{from}, KeyEnd: []Value{to}}
}

// fxPrefix is the element of a one-component interval set covering prefix p.
func fxPrefix(p string) Element {
	pr := netip.MustParsePrefix(p)
	return fxRange(AddrValue(pr.Masked().Addr()), AddrValue(lastAddr(pr)))
}

func fxElem(vals ...Value) Element { return Element{Key: vals} }

func fxVmapElem(key Value, v Verdict) Element {
	return Element{Key: []Value{key}, Verdict: &v}
}

// fxPorts is a `proto . port-range` element of a concatenated interval set.
func fxPorts(proto uint8, from, to uint16) Element {
	if from == to {
		return Element{Key: []Value{ProtoValue(proto), PortValue(from)}}
	}
	return Element{
		Key:    []Value{ProtoValue(proto), PortValue(from)},
		KeyEnd: []Value{ProtoValue(proto), PortValue(to)},
	}
}

// fxSet builds a set with its elements; tweaks set flags and comments.
func fxSet(name string, key []KeyType, elems []Element, tweaks ...func(*Set)) *Set {
	s := &Set{Name: name, Key: key}
	for _, t := range tweaks {
		t(s)
	}
	for _, e := range elems {
		s.PutElements(e)
	}
	return s
}

func fxInterval(s *Set) { s.Interval = true }
func fxVmap(s *Set)     { s.VerdictMap = true }
func fxComment(c string) func(*Set) {
	return func(s *Set) { s.Comment = c }
}

func fxRule(exprs ...Expr) Rule { return Rule{Exprs: exprs} }

func fxAccept() Verdict           { return Verdict{Kind: VerdictAccept} }
func fxDrop() Verdict             { return Verdict{Kind: VerdictDrop} }
func fxJump(chain string) Verdict { return Verdict{Kind: VerdictJump, Chain: chain} }
func fxGoto(chain string) Verdict { return Verdict{Kind: VerdictGoto, Chain: chain} }

func fxAdd(s *State, sets ...*Set) {
	for _, set := range sets {
		s.Sets[set.Name] = set
	}
}

func fxAddChains(s *State, chains ...*Chain) {
	for _, c := range chains {
		s.Chains[c.Name] = c
	}
}

// fxSkeleton is the fixed part of the program (PROGRAM.md): the two base chains
// and the four dispatch maps, empty.
func fxSkeleton() *State {
	s := NewState()
	// peer4 and peer6 are the fields of the other end of the pod's
	// connections: a mid-stream TCP segment picked up as new is dropped when
	// it comes from a pod isolated for ingress or goes to one isolated for
	// egress.
	base := func(name, dir string, prio int, addr4, addr6, peer4, peer6 Field) *Chain {
		pickup := func(f Field, m string) Rule {
			return fxRule(MatchCtState{States: CtNew}, MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask, Neq: true},
				Lookup{Fields: []Field{f}, Set: m}, fxDrop())
		}
		return &Chain{
			Name: name,
			Base: &BaseChain{Hook: HookForward, Priority: prio, Policy: VerdictAccept},
			Rules: []Rule{
				fxRule(MatchCtState{States: CtEstablished | CtRelated}, fxAccept()),
				fxRule(MatchCtState{States: CtInvalid}, fxDrop()),
				pickup(peer4, dir+"-v4"),
				pickup(peer6, dir+"-v6"),
				fxRule(VerdictMapLookup{Fields: []Field{addr4}, Map: dir + "-v4"}),
				fxRule(VerdictMapLookup{Fields: []Field{addr6}, Map: dir + "-v6"}),
			},
		}
	}
	fxAddChains(s,
		base("egress", "egress", PriorityFilter, FieldIPSaddr, FieldIP6Saddr, FieldIPDaddr, FieldIP6Daddr),
		base("ingress", "ingress", PriorityFilter+1, FieldIPDaddr, FieldIP6Daddr, FieldIPSaddr, FieldIP6Saddr),
	)
	fxAdd(s,
		fxSet("egress-v4", []KeyType{TypeIPv4Addr}, nil, fxVmap),
		fxSet("egress-v6", []KeyType{TypeIPv6Addr}, nil, fxVmap),
		fxSet("ingress-v4", []KeyType{TypeIPv4Addr}, nil, fxVmap),
		fxSet("ingress-v6", []KeyType{TypeIPv6Addr}, nil, fxVmap),
	)
	return s
}

// fxProgram is a complete program for the IP plan above.
func fxProgram() *State {
	s := fxSkeleton()
	v4, v6 := []KeyType{TypeIPv4Addr}, []KeyType{TypeIPv6Addr}
	portsKey := []KeyType{TypeInetProto, TypeInetService}
	fxAdd(s,
		fxSet("peer-v4-frontend", v4, []Element{fxElem(fxAddr("198.18.0.20")), fxElem(fxAddr("198.18.0.21"))},
			fxComment("prod: app=frontend")),
		fxSet("peer-v6-frontend", v6, []Element{fxElem(fxAddr("2001:db8::20")), fxElem(fxAddr("2001:db8::21"))},
			fxComment("prod: app=frontend")),
		fxSet("peer-v4-web", v4, []Element{fxElem(fxAddr("198.18.0.10"))}, fxComment("prod: app=web")),
		fxSet("peer-v6-web", v6, []Element{fxElem(fxAddr("2001:db8::a"))}, fxComment("prod: app=web")),
		fxSet("cidr-v4-external", v4, []Element{
			fxRange(fxAddr("198.19.0.0"), fxAddr("198.19.0.255")),
			fxPrefix("198.19.2.0/23"),
			fxPrefix("198.19.4.0/22"),
			fxPrefix("198.19.8.0/21"),
			fxPrefix("198.19.16.0/20"),
			fxPrefix("198.19.32.0/19"),
			fxPrefix("198.19.64.0/18"),
			fxPrefix("198.19.128.0/17"),
		}, fxInterval, fxComment("198.19.0.0/16 except 198.19.1.0/24")),
		fxSet("cidr-v6-external", v6, []Element{
			fxPrefix("2001:db8:100::/64"),
			fxRange(fxAddr("2001:db8:100:2::"), fxAddr("2001:db8:100:ffff:ffff:ffff:ffff:ffff")),
		}, fxInterval, fxComment("2001:db8:100::/48 except 2001:db8:100:1::/64")),
		fxSet("ports-web", portsKey, []Element{
			fxPorts(ProtoTCP, 80, 80), fxPorts(ProtoTCP, 8000, 8080), fxPorts(ProtoUDP, 0, 65535),
		}, fxInterval),
		fxSet("ports-http", portsKey, []Element{fxPorts(ProtoTCP, 80, 80)}, fxInterval),
		fxSet("named-v4-http", []KeyType{TypeIPv4Addr, TypeInetProto, TypeInetService}, []Element{
			fxElem(fxAddr("198.18.0.10"), ProtoValue(ProtoTCP), PortValue(8080)),
		}, fxComment("prod/allow-web port http")),
		fxSet("named-v6-http", []KeyType{TypeIPv6Addr, TypeInetProto, TypeInetService}, []Element{
			fxElem(fxAddr("2001:db8::a"), ProtoValue(ProtoTCP), PortValue(8080)),
		}, fxComment("prod/allow-web port http")),
	)
	s.Sets["ingress-v4"] = fxSet("ingress-v4", v4, []Element{
		fxVmapElem(fxAddr("198.18.0.10"), fxGoto("pod-in-web")),
		fxVmapElem(fxAddr("198.18.0.30"), fxGoto("pod-in-db")),
	}, fxVmap)
	s.Sets["ingress-v6"] = fxSet("ingress-v6", v6, []Element{
		fxVmapElem(fxAddr("2001:db8::a"), fxGoto("pod-in-web")),
		fxVmapElem(fxAddr("2001:db8::30"), fxGoto("pod-in-db")),
	}, fxVmap)
	s.Sets["egress-v4"] = fxSet("egress-v4", v4, []Element{
		fxVmapElem(fxAddr("198.18.0.20"), fxGoto("pod-eg-frontend")),
	}, fxVmap)
	s.Sets["egress-v6"] = fxSet("egress-v6", v6, []Element{
		fxVmapElem(fxAddr("2001:db8::20"), fxGoto("pod-eg-frontend")),
	}, fxVmap)

	ports := []Field{FieldL4Proto, FieldTHDport}
	fxAddChains(s,
		&Chain{Name: "pod-in-web", Comment: "prod/web ingress", Rules: []Rule{
			fxRule(fxJump("pol-in-allow-web")),
			fxRule(Counter{}, fxDrop()),
		}},
		&Chain{Name: "pod-in-db", Comment: "prod/db ingress", Rules: []Rule{
			fxRule(Counter{}, fxDrop()),
		}},
		&Chain{Name: "pod-eg-frontend", Comment: "prod/frontend egress", Rules: []Rule{
			fxRule(fxJump("pol-eg-frontend-egress")),
			fxRule(Counter{}, fxDrop()),
		}},
		&Chain{Name: "pol-in-allow-web", Comment: "prod/allow-web ingress rule list", Rules: []Rule{
			fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "peer-v4-frontend"}, Lookup{Fields: ports, Set: "ports-web"}, fxAccept()),
			fxRule(Lookup{Fields: []Field{FieldIP6Saddr}, Set: "peer-v6-frontend"}, Lookup{Fields: ports, Set: "ports-web"}, fxAccept()),
			fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "cidr-v4-external"}, fxAccept()),
			fxRule(Lookup{Fields: []Field{FieldIP6Saddr}, Set: "cidr-v6-external"}, fxAccept()),
			{Exprs: []Expr{Lookup{Fields: []Field{FieldIPDaddr, FieldL4Proto, FieldTHDport}, Set: "named-v4-http"}, fxAccept()},
				Comment: "rule 2: port http"},
			{Exprs: []Expr{Lookup{Fields: []Field{FieldIP6Daddr, FieldL4Proto, FieldTHDport}, Set: "named-v6-http"}, fxAccept()},
				Comment: "rule 2: port http"},
		}},
		&Chain{Name: "pol-eg-frontend-egress", Comment: "prod/frontend-egress egress rule list", Rules: []Rule{
			fxRule(Lookup{Fields: []Field{FieldIPDaddr}, Set: "peer-v4-web"}, Lookup{Fields: ports, Set: "ports-http"}, fxAccept()),
			fxRule(Lookup{Fields: []Field{FieldIP6Daddr}, Set: "peer-v6-web"}, Lookup{Fields: ports, Set: "ports-http"}, fxAccept()),
		}},
	)
	return s
}

func TestFakeLifecycle(t *testing.T) {
	ctx := context.Background()
	f := NewFake("t")
	if _, err := f.Read(ctx); !IsNotFound(err) {
		t.Fatalf("Read before the first Apply: got %v, want ErrNotFound", err)
	}
	if got := f.Dump(); got != "" {
		t.Fatalf("Dump of a missing table = %q, want empty", got)
	}

	want := fxProgram()
	tx, err := f.Reconcile(ctx, want)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if tx.Empty() {
		t.Fatal("first Reconcile sent nothing")
	}
	got, err := f.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !Diff(got, want, nil).Empty() {
		t.Fatalf("table differs from desired after Reconcile:\n%s", Render("t", got))
	}
	if f.Dump() != Render("t", want) {
		t.Fatalf("Dump differs from Render of the desired state")
	}
	if n := len(f.Transactions()); n != 1 {
		t.Fatalf("history has %d transactions, want 1", n)
	}
	if f.Operations() != tx.Size() {
		t.Fatalf("Operations() = %d, want %d", f.Operations(), tx.Size())
	}

	// A no-op reconcile sends nothing.
	f.ResetHistory()
	tx, err = f.Reconcile(ctx, want)
	if err != nil || !tx.Empty() {
		t.Fatalf("second Reconcile = %v, %v; want empty transaction", tx, err)
	}
	if f.Operations() != 0 || len(f.Transactions()) != 0 {
		t.Fatalf("no-op Reconcile recorded %d ops in %d transactions", f.Operations(), len(f.Transactions()))
	}

	// Read returns a copy: changing it does not change the table.
	got.Sets["peer-v4-web"].Elements.Clear()
	delete(got.Chains, "pod-in-db")
	again, _ := f.Read(ctx)
	if !Diff(again, want, nil).Empty() {
		t.Fatal("mutating the result of Read changed the table")
	}

	if err := f.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if _, err := f.Read(ctx); !IsNotFound(err) {
		t.Fatalf("Read after Cleanup: got %v, want ErrNotFound", err)
	}
	if err := f.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup of a missing table: %v", err)
	}
}

func TestFakeApplyIsAtomic(t *testing.T) {
	ctx := context.Background()
	f := NewFake("t")
	if _, err := f.Reconcile(ctx, fxProgram()); err != nil {
		t.Fatal(err)
	}
	before := f.Dump()
	f.ResetHistory()

	tx := &Transaction{}
	tx.AddElements("peer-v4-web", fxElem(fxAddr("198.18.0.11")))    // valid
	tx.DeleteElements("peer-v4-web", fxElem(fxAddr("198.18.0.99"))) // missing: fails
	err := f.Apply(ctx, tx)
	var opErr *OpError
	if !errors.As(err, &opErr) || opErr.Index != 1 || opErr.Op.Kind != OpDeleteElements {
		t.Fatalf("Apply error = %v, want an *OpError for operation 1 (delete elements)", err)
	}
	if !IsNotFound(err) {
		t.Fatalf("Apply error %v does not wrap ErrNotFound", err)
	}
	if f.Dump() != before {
		t.Fatal("a failed transaction changed the table")
	}
	if f.Operations() != 0 || len(f.Transactions()) != 0 {
		t.Fatal("a failed transaction was recorded")
	}
}

func TestFakeFailNext(t *testing.T) {
	ctx := context.Background()
	f := NewFake("t")
	injected := errors.New("netlink: injected")
	f.FailNext(injected)
	if _, err := f.Reconcile(ctx, fxProgram()); !errors.Is(err, injected) {
		t.Fatalf("Reconcile after FailNext: got %v, want the injected error", err)
	}
	if _, err := f.Read(ctx); !IsNotFound(err) {
		t.Fatalf("failed first Reconcile created the table: %v", err)
	}
	if _, err := f.Reconcile(ctx, fxProgram()); err != nil {
		t.Fatalf("the failure lasted beyond one call: %v", err)
	}

	// An empty transaction fails too: the kernel would reject the batch.
	f.FailNext(injected)
	if err := f.Apply(ctx, &Transaction{}); !errors.Is(err, injected) {
		t.Fatalf("Apply after FailNext: got %v", err)
	}
	f.FailNext(injected)
	f.FailNext(nil)
	if err := f.Apply(ctx, &Transaction{}); err != nil {
		t.Fatalf("FailNext(nil) did not cancel: %v", err)
	}
}

func TestFakeReconcileRepairsDrift(t *testing.T) {
	ctx := context.Background()
	f := NewFake("t")
	want := fxProgram()
	if _, err := f.Reconcile(ctx, want); err != nil {
		t.Fatal(err)
	}
	// Someone deletes an element and flushes a policy chain behind our back.
	f.Mutate(func(s *State) {
		s.Sets["peer-v4-frontend"].Elements.DeleteID(ElementID(s.Sets["peer-v4-frontend"], fxElem(fxAddr("198.18.0.21"))))
		s.Chains["pol-eg-frontend-egress"].Rules = nil
	})
	tx, err := f.Reconcile(ctx, want)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	// One element back, one chain's two rules inserted back.
	if got := tx.Size(); got != 1+2 {
		t.Fatalf("repair transaction has size %d, want 3:\n%+v", got, tx.Ops)
	}
	if f.Dump() != Render("t", want) {
		t.Fatal("table not repaired")
	}
}

func TestFakeContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := NewFake("t")
	if err := f.Apply(ctx, &Transaction{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply: %v", err)
	}
	if _, err := f.Reconcile(ctx, NewState()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Reconcile: %v", err)
	}
	if _, err := f.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read: %v", err)
	}
	if err := f.Cleanup(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Cleanup: %v", err)
	}
}

func TestFakeHistoryIsACopy(t *testing.T) {
	ctx := context.Background()
	f := NewFake("t")
	tx := &Transaction{}
	tx.AddSet(Set{Name: "s", Key: []KeyType{TypeIPv4Addr}})
	if err := f.Apply(ctx, tx); err != nil {
		t.Fatal(err)
	}
	tx.AddElements("s", fxElem(fxAddr("198.18.0.1"))) // caller reuses its transaction
	if got := f.Transactions()[0]; len(got.Ops) != 1 {
		t.Fatalf("recorded transaction changed with the caller's: %d ops", len(got.Ops))
	}
}

// TestFakeIntervalChecks: the kernel refuses overlapping ranges in interval sets
// (EEXIST) but accepts an identical element again and adjacent ranges. The
// expectations were checked against Linux 6.x through Kernel in a netns.
func TestFakeIntervalChecks(t *testing.T) {
	v4 := []KeyType{TypeIPv4Addr}
	ports := []KeyType{TypeInetProto, TypeInetService}
	r := func(from, to string) Element { return fxRange(fxAddr(from), fxAddr(to)) }
	many := func(n int) []Element { // n disjoint /32 ranges in 198.18.1.0/24
		var out []Element
		for i := range n {
			a := fmt.Sprintf("198.18.1.%d", 2*i)
			out = append(out, r(a, a))
		}
		return out
	}
	many2 := func(n int) []Element { // n disjoint ranges in 198.18.2.0/24
		var out []Element
		for i := range n {
			out = append(out, r(fmt.Sprintf("198.18.2.%d", 10*i), fmt.Sprintf("198.18.2.%d", 10*i+5)))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		key  []KeyType
		txs  [][]Element // one transaction each
		want error       // of the last transaction; the earlier ones succeed
	}{
		{"partial overlap", v4, [][]Element{{r("198.18.0.0", "198.18.0.9")}, {r("198.18.0.5", "198.18.0.20")}}, ErrExists},
		{"overlap within one batch", v4, [][]Element{{r("198.18.0.0", "198.18.0.9"), r("198.18.0.5", "198.18.0.20")}}, ErrExists},
		{"contained", v4, [][]Element{{r("198.18.0.0", "198.18.0.9")}, {r("198.18.0.2", "198.18.0.3")}}, ErrExists},
		{"single value inside a range", v4, [][]Element{{r("198.18.0.0", "198.18.0.9")}, {fxElem(fxAddr("198.18.0.5"))}}, ErrExists},
		{"same start, longer", v4, [][]Element{{r("198.18.0.0", "198.18.0.9")}, {r("198.18.0.0", "198.18.0.19")}}, ErrExists},
		{"adjacent", v4, [][]Element{{r("198.18.0.0", "198.18.0.9")}, {r("198.18.0.10", "198.18.0.20")}}, nil},
		{"identical again", v4, [][]Element{{r("198.18.0.0", "198.18.0.9")}, {r("198.18.0.0", "198.18.0.9")}}, nil},
		{"many disjoint", v4, [][]Element{many(40), {r("198.18.1.1", "198.18.1.1")}}, nil},
		{"many with one overlap", v4, [][]Element{append(many(40), r("198.18.1.10", "198.18.1.11"))}, ErrExists},
		{"many then overlap", v4, [][]Element{many(40), append(many(40), r("198.18.1.77", "198.18.1.78"))}, ErrExists},
		{"many new, one overlaps what the set holds", v4, [][]Element{many(40), append(many2(10), r("198.18.1.3", "198.18.1.4"))}, ErrExists},
		{"many new, disjoint from what the set holds", v4, [][]Element{many(40), many2(10)}, nil},
		{"reversed range", v4, [][]Element{{r("198.18.0.9", "198.18.0.1")}}, ErrInvalid},
		{"ports overlap", ports, [][]Element{{fxPorts(ProtoTCP, 80, 80)}, {fxPorts(ProtoTCP, 80, 90)}}, ErrExists},
		{"ports partial overlap", ports, [][]Element{{fxPorts(ProtoTCP, 80, 85)}, {fxPorts(ProtoTCP, 83, 90)}}, ErrExists},
		{"ports other protocol", ports, [][]Element{{fxPorts(ProtoTCP, 80, 80)}, {fxPorts(ProtoUDP, 80, 90)}}, nil},
		{"ports identical", ports, [][]Element{{fxPorts(ProtoTCP, 80, 85)}, {fxPorts(ProtoTCP, 80, 85)}}, nil},
		{"ports reversed", ports, [][]Element{{fxPorts(ProtoTCP, 90, 80)}}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := NewFake("t")
			tx := &Transaction{}
			tx.AddSet(Set{Name: "s", Key: tc.key, Interval: true})
			if err := f.Apply(ctx, tx); err != nil {
				t.Fatal(err)
			}
			var err error
			for i, elems := range tc.txs {
				tx := &Transaction{}
				tx.AddElements("s", elems...)
				err = f.Apply(ctx, tx)
				if i < len(tc.txs)-1 && err != nil {
					t.Fatalf("transaction %d: %v", i, err)
				}
			}
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("Apply: %v", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Apply: got %v, want %v", err, tc.want)
			}
			var opErr *OpError
			if tc.want != nil && (!errors.As(err, &opErr) || opErr.Op.Kind != OpAddElements) {
				t.Fatalf("error %v does not name the add elements operation", err)
			}
		})
	}
}

// TestFakeOpErrorIndex: the failing operation's index is its index in the whole
// transaction.
func TestFakeOpErrorIndex(t *testing.T) {
	tx := &Transaction{}
	tx.AddSet(Set{Name: "s", Key: []KeyType{TypeIPv4Addr}})
	tx.AddElements("s", fxElem(fxAddr("198.18.0.1")))
	tx.DeleteChain("missing")
	err := NewFake("t").Apply(context.Background(), tx)
	var opErr *OpError
	if !errors.As(err, &opErr) || opErr.Index != 2 || !IsNotFound(err) {
		t.Fatalf("got %v, want an *OpError at index 2 wrapping ErrNotFound", err)
	}
}

// TestFakeCanonicalRanges: a range whose ends are equal is stored as a single
// value, as the kernel does, and both forms name the same element.
func TestFakeCanonicalRanges(t *testing.T) {
	ctx := context.Background()
	f := NewFake("t")
	tx := &Transaction{}
	tx.AddSet(Set{Name: "p", Key: []KeyType{TypeInetProto, TypeInetService}, Interval: true})
	degenerate := Element{Key: []Value{ProtoValue(ProtoTCP), PortValue(80)}, KeyEnd: []Value{ProtoValue(ProtoTCP), PortValue(80)}}
	tx.AddElements("p", degenerate)
	if err := f.Apply(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if degenerate.KeyEnd == nil {
		t.Fatal("Apply changed the caller's element")
	}
	got, _ := f.Read(ctx)
	want := fxPorts(ProtoTCP, 80, 80)
	if !got.Sets["p"].Elements.Contains(want) || got.Sets["p"].Elements.Len() != 1 {
		t.Fatalf("stored %v, want the single value tcp . 80", got.Sets["p"].Elements)
	}
	// Both forms delete it.
	del := &Transaction{}
	del.DeleteElements("p", degenerate)
	if err := f.Apply(ctx, del); err != nil {
		t.Fatalf("delete by the range form: %v", err)
	}
}

// TestFakeUntouched follows Untouched through the events that set and clear
// it, as Kernel's with its monitor running (TestKernelUntouched).
func TestFakeUntouched(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	f := NewFake("t")
	var refused Transaction
	refused.DeleteChain("nope")
	for i, step := range []struct {
		do   func() error
		want bool
	}{
		{func() error { return nil }, false}, // nothing read yet
		{func() error { _, err := f.Read(ctx); return ignore(err, ErrNotFound) }, true},
		{func() error { _, err := f.Reconcile(ctx, fxProgram()); return err }, true},
		{func() error { return f.Apply(ctx, &Transaction{}) }, true},
		{func() error { f.Mutate(func(s *State) { s.Chains["pol-eg-frontend-egress"].Rules = nil }); return nil }, false},
		{func() error { _, err := f.Reconcile(ctx, fxProgram()); return err }, true},
		{func() error { return ignore(f.Apply(ctx, &refused), ErrNotFound) }, false},
		{func() error { _, err := f.Read(ctx); return err }, true},
		{func() error { f.MarkTouched(); return nil }, false},
		{func() error { _, err := f.Reconcile(ctx, fxProgram()); return err }, true},
		{func() error {
			f.FailNext(ErrBusy)
			_, err := f.Reconcile(ctx, fxProgram())
			return ignore(err, ErrBusy)
		}, false},
		{func() error { _, err := f.Reconcile(ctx, fxProgram()); return err }, true},
		{func() error { return ignore(f.Apply(cancelled, &Transaction{}), context.Canceled) }, false},
		{func() error { _, err := f.Reconcile(ctx, fxProgram()); return err }, true},
		{func() error { return f.Cleanup(ctx) }, true}, // an own write
	} {
		if err := step.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := f.Untouched(); got != step.want {
			t.Fatalf("after step %d: Untouched = %v, want %v", i, got, step.want)
		}
	}
}

// ignore returns nil when err wraps want, and an error naming the mismatch
// otherwise (also when err is nil).
func ignore(err, want error) error {
	if errors.Is(err, want) {
		return nil
	}
	return fmt.Errorf("got %v, want %v", err, want)
}

// TestFakeBlockApply: a blocked Apply waits without holding the table: Read and
// Dump answer meanwhile with the table as it was; once released the Apply
// goes through. A blocked Reconcile gives up when its context ends, as a
// failed batch.
func TestFakeBlockApply(t *testing.T) {
	ctx := context.Background()
	f := NewFake("t")
	if _, err := f.Reconcile(ctx, fxProgram()); err != nil {
		t.Fatal(err)
	}
	before := f.Dump()
	entered, release := f.BlockApply()
	tx := &Transaction{}
	tx.AddElements("peer-v4-web", fxElem(fxAddr("198.18.0.11")))
	applied := make(chan error, 1)
	go func() { applied <- f.Apply(ctx, tx) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Apply did not start waiting")
	}
	if _, err := f.Read(ctx); err != nil || f.Dump() != before {
		t.Fatalf("during the blocked Apply: Read error %v, table changed: %v", err, f.Dump() != before)
	}
	release()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatalf("released Apply: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply did not return after release")
	}
	if len(f.Transactions()) != 2 {
		t.Fatalf("%d transactions recorded, want the reconcile and the released apply", len(f.Transactions()))
	}

	_, release = f.BlockApply()
	defer release()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := f.Reconcile(cctx, fxProgram()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked Reconcile past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if f.Untouched() {
		t.Fatal("a failed Reconcile left the table Untouched")
	}
}
