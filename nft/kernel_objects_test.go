package nft_test

// Named counters and limits and NFLOG log statements in the kernel, in
// throwaway network namespaces. Topology and addresses: kernel_packet_test.go
// (routed): pod a 198.18.0.10 / 2001:db8::10, pod b 198.18.0.11 /
// 2001:db8::11. Program (objectsProgram): b is isolated for ingress and
// allows tcp 8080 from a; what b's chain denies is counted in a named
// counter, logged to NFLOG group 100 under a named limit, and dropped by a
// rule with an anonymous counter.

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

const (
	denyCounter  = "default-deny/prod/web"
	allowCounter = "np/prod/allow-web/in"
	denyLimit    = "deny-log-100-200"
	denyPrefix   = "nftw deny in np"
	logGroup     = 100
)

var (
	objPodA = netip.MustParseAddr("198.18.0.10")
	objPodB = netip.MustParseAddr("198.18.0.11")
)

// objectsProgram is the program described at the top of the file, with a
// flow-log base chain beside it.
func objectsProgram() *nft.State {
	s := skeleton()
	for _, o := range []nft.Object{
		{Name: allowCounter, Comment: "prod/allow-web ingress", Counter: &nft.CounterObject{}},
		{Name: denyCounter, Counter: &nft.CounterObject{}},
		{Name: denyLimit, Comment: "deny log of the node", Limit: &nft.LimitObject{Rate: 100, Unit: nft.PerSecond, Burst: 200}},
		{Name: "flow-log-6-5", Limit: &nft.LimitObject{Rate: 6, Unit: nft.PerMinute, Burst: 5}},
	} {
		s.Objects[o.Name] = &o
	}
	addChain(s, nft.Chain{Name: "pol-in-b", Rules: []nft.Rule{{Exprs: []nft.Expr{
		nft.Cmp{Field: nft.FieldIPSaddr, Value: nft.AddrValue(objPodA)},
		nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(nft.ProtoTCP)},
		nft.Cmp{Field: nft.FieldTHDport, Value: nft.PortValue(8080)},
		nft.CounterRef{Name: allowCounter}, accept(),
	}}}})
	addChain(s, nft.Chain{Name: "pod-in-b", Rules: []nft.Rule{
		{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: "pol-in-b"}}},
		{Exprs: []nft.Expr{nft.CounterRef{Name: denyCounter}, nft.LimitRef{Name: denyLimit},
			nft.Log{Prefix: denyPrefix, Group: logGroup, NFLog: true}}},
		{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}},
	}})
	addChain(s, nft.Chain{Name: "flow-log",
		Base: &nft.BaseChain{Hook: nft.HookForward, Priority: nft.PriorityFilter + 2, Policy: nft.VerdictAccept},
		Rules: []nft.Rule{{Exprs: []nft.Expr{nft.MatchCtState{States: nft.CtNew}, nft.LimitRef{Name: "flow-log-6-5"},
			nft.Log{Prefix: "nftw allow - flow", Group: logGroup, NFLog: true}}}}})
	for _, m := range []struct {
		set string
		ip  netip.Addr
	}{{"ingress-v4", objPodB}, {"ingress-v6", netip.MustParseAddr("2001:db8::11")}} {
		e := nft.Element{Key: []nft.Value{nft.AddrValue(m.ip)}, Verdict: &nft.Verdict{Kind: nft.VerdictGoto, Chain: "pod-in-b"}}
		s.Sets[m.set].PutElements(e)
	}
	return s
}

// TestKernelObjectsPackets sends real packets through the program and reads
// the counters back three ways (Counters, Read, nft list), reconciles with
// the counts in place, and adds and removes objects one delta at a time.
func TestKernelObjectsPackets(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	ctx := context.Background()
	node := nfttest.NewNetNS(t)
	a := &nfttest.Pod{Name: "a", V4: objPodA, V6: netip.MustParseAddr("2001:db8::10")}
	b := &nfttest.Pod{Name: "b", V4: objPodB, V6: netip.MustParseAddr("2001:db8::11")}
	nfttest.WirePods(t, node, false, a, b)
	nfttest.Serve(t, b, []int{8080}, 0)
	k, err := nft.NewKernel(nft.WithTable(testTable), nft.WithNetNS(node.FD))
	if err != nil {
		t.Fatalf("NewKernel: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	fake := nft.NewFake(testTable)

	desired := objectsProgram()
	for _, dp := range []nft.Dataplane{k, fake} {
		if _, err := dp.Reconcile(ctx, desired); err != nil {
			t.Fatalf("%T.Reconcile: %v", dp, err)
		}
	}
	if ok, err := nfttest.Probe(a, "tcp", netip.AddrPortFrom(b.V4, 8080)); err != nil || !ok {
		t.Fatalf("a -> b tcp 8080: allowed=%v, %v; want allowed", ok, err)
	}
	// Denied: empty UDP datagrams, 28 bytes each (IPv4 and UDP headers),
	// each a new connection that reaches b's chain.
	const denied, size = 20, 28
	if err := nfttest.SprayUDP(a, b.V4, denied); err != nil {
		t.Fatal(err)
	}
	for range denied {
		p := nft.Packet{Hook: nft.HookForward, Src: a.V4, Dst: b.V4, Proto: nft.ProtoUDP, Dport: 1024, Len: size}
		if tr := fake.Trace(p); tr.Accepted() || !tr.LoggedWith(denyPrefix) {
			t.Fatalf("Fake.Trace of a denied datagram: %v, logged %+v", tr, tr.Logged)
		}
	}

	counters, err := k.Counters(ctx)
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	want := nft.CounterObject{Packets: denied, Bytes: denied * size}
	if got := counters[denyCounter]; got != want {
		t.Errorf("Counters()[%q] = %+v, want %+v", denyCounter, got, want)
	}
	if got := counters[allowCounter]; got.Packets != 1 || got.Bytes == 0 {
		t.Errorf("Counters()[%q] = %+v, want the one SYN of the allowed connection", allowCounter, got)
	}
	if len(counters) != 2 {
		t.Errorf("Counters() = %v, want the two named counters only", counters)
	}
	if fc, _ := fake.Counters(ctx); fc[denyCounter] != counters[denyCounter] {
		t.Errorf("the Fake counted %+v, the kernel %+v", fc[denyCounter], counters[denyCounter])
	}

	read, err := k.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if got := *read.Objects[denyCounter].Counter; got != want {
		t.Errorf("Read counter %q = %+v, want %+v", denyCounter, got, want)
	}
	if got, want := *read.Objects[denyLimit], *desired.Objects[denyLimit]; got.Comment != want.Comment || *got.Limit != *want.Limit {
		t.Errorf("Read limit %q = %+v %+v, want %+v %+v", denyLimit, got, got.Limit, want, want.Limit)
	}
	dropRule := read.Chains["pod-in-b"].Rules[2].Exprs[0]
	if got := dropRule.(nft.Counter); got != (nft.Counter{Packets: denied, Bytes: denied * size}) {
		t.Errorf("the drop rule's counter reads %+v, want %d packets", got, denied)
	}
	// `nftwarden dump` renders a read: the real values, as nft lists them.
	listed := nfttest.ListTable(t, node, testTable)
	dump := nft.Render(testTable, read)
	for _, line := range []string{"counter packets 20 bytes 560 drop", "\t\tpackets 20 bytes 560\n"} {
		if !strings.Contains(dump, line) || !strings.Contains(listed, line) {
			t.Errorf("%q missing from the dump or nft's listing:\n%s\n%s", line, dump, listed)
		}
	}
	if diff := cmp.Diff(nfttest.Normalize(listed), nfttest.Normalize(chainCommentRE.ReplaceAllString(dump, "$1"))); diff != "" {
		t.Errorf("Render(Read()) differs from nft list (-nft +render):\n%s", diff)
	}

	// The counts make no difference to a reconcile, and adding a counter
	// that exists keeps its counts.
	if tx, err := k.Reconcile(ctx, desired); err != nil || !tx.Empty() {
		t.Fatalf("Reconcile of the same state = %v, %v; want a no-op", tx, err)
	}
	var again nft.Transaction
	again.AddObject(*desired.Objects[denyCounter])
	if err := k.Apply(ctx, &again); err != nil {
		t.Fatalf("adding the counter again: %v", err)
	}
	if got, err := k.Counters(ctx); err != nil || got[denyCounter] != want {
		t.Errorf("after adding the counter again: %v, %v; want %s at %+v", got, err, denyCounter, want)
	}

	// One delta adds a counter and a rule that names it, the next removes
	// both; the other counters keep counting through both.
	more := objectsProgram()
	more.Objects["np/extra"] = &nft.Object{Name: "np/extra", Counter: &nft.CounterObject{}}
	more.Chains["pol-in-b"].Rules = append([]nft.Rule{{Exprs: []nft.Expr{nft.CounterRef{Name: "np/extra"}}}}, more.Chains["pol-in-b"].Rules...)
	for _, step := range []struct {
		name     string
		from, to *nft.State
		has      bool
	}{{"add", desired, more, true}, {"remove", more, desired, false}} {
		if err := k.Apply(ctx, nft.Diff(step.from, step.to, nil)); err != nil {
			t.Fatalf("%s: Apply: %v", step.name, err)
		}
		got, err := k.Counters(ctx)
		if err != nil {
			t.Fatalf("%s: Counters: %v", step.name, err)
		}
		if _, has := got["np/extra"]; has != step.has || got[denyCounter] != want {
			t.Errorf("%s: Counters() = %v, want np/extra present=%v and %s unchanged", step.name, got, step.has, denyCounter)
		}
		if tx, err := k.Reconcile(ctx, step.to); err != nil || !tx.Empty() {
			t.Errorf("%s: Reconcile after the delta = %v, %v; want a no-op", step.name, tx, err)
		}
	}
}

// TestKernelObjectSemantics applies the same transactions to a Kernel and a
// Fake holding the same table: both must refuse the same ones with the same
// sentinel and leave the same table.
func TestKernelObjectSemantics(t *testing.T) {
	ctx := context.Background()
	ns, k := newKernel(t)
	base := objectsProgram()
	limit := func(name string, rate uint64) nft.Object {
		return nft.Object{Name: name, Limit: &nft.LimitObject{Rate: rate, Unit: nft.PerSecond, Burst: 200}}
	}
	counter := func(name string) nft.Object { return nft.Object{Name: name, Counter: &nft.CounterObject{}} }
	for _, tc := range []struct {
		name string
		tx   func(*nft.Transaction)
		want error
	}{
		{"add identical", func(tx *nft.Transaction) { tx.AddObject(limit(denyLimit, 100)) }, nil},
		{"add identical counter", func(tx *nft.Transaction) { tx.AddObject(counter(denyCounter)) }, nil},
		{"add another definition", func(tx *nft.Transaction) { tx.AddObject(limit(denyLimit, 101)) }, nft.ErrExists},
		{"add another kind", func(tx *nft.Transaction) { tx.AddObject(counter(denyLimit)) }, nft.ErrExists},
		{"add twice differently in one batch", func(tx *nft.Transaction) { tx.AddObject(limit("new", 1)); tx.AddObject(limit("new", 2)) }, nft.ErrExists},
		{"delete missing", func(tx *nft.Transaction) { tx.DeleteObject("nope") }, nft.ErrNotFound},
		{"delete named counter", func(tx *nft.Transaction) { tx.DeleteObject(denyCounter) }, nft.ErrBusy},
		{"delete named limit", func(tx *nft.Transaction) { tx.DeleteObject(denyLimit) }, nft.ErrBusy},
		{"rule names a missing counter", func(tx *nft.Transaction) {
			tx.ReplaceRules("pol-in-b", []nft.Rule{{Exprs: []nft.Expr{nft.CounterRef{Name: "nope"}}}})
		}, nft.ErrNotFound},
		{"rule names a limit as a counter", func(tx *nft.Transaction) {
			tx.ReplaceRules("pol-in-b", []nft.Rule{{Exprs: []nft.Expr{nft.CounterRef{Name: denyLimit}}}})
		}, nft.ErrNotFound},
		{"delete after the rules go", func(tx *nft.Transaction) {
			tx.ReplaceRules("pod-in-b", nil)
			tx.DeleteObject(denyCounter)
			tx.DeleteObject(denyLimit)
		}, nil},
		{"delete, then add again", func(tx *nft.Transaction) {
			tx.AddObject(counter("x"))
			tx.DeleteObject("x")
			tx.AddObject(limit("x", 3))
		}, nil},
		{"add with names nft quotes", func(tx *nft.Transaction) {
			tx.AddObject(counter("a:b/c"))
			tx.AddObject(nft.Object{Name: "l:m", Comment: "with a colon", Limit: &nft.LimitObject{Rate: 1, Unit: nft.PerMinute, Burst: 5}})
			tx.ReplaceRules("pol-in-b", []nft.Rule{{Exprs: []nft.Expr{nft.CounterRef{Name: "a:b/c"}, nft.LimitRef{Name: "l:m"}, nft.Log{NFLog: true}}}})
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := nft.NewFake(testTable)
			for _, dp := range []nft.Dataplane{k, fake} {
				if _, err := dp.Reconcile(ctx, base); err != nil {
					t.Fatalf("%T.Reconcile: %v", dp, err)
				}
			}
			var tx nft.Transaction
			tc.tx(&tx)
			kerr, ferr := k.Apply(ctx, &tx), fake.Apply(ctx, &tx)
			for _, e := range []struct {
				who string
				err error
			}{{"Kernel", kerr}, {"Fake", ferr}} {
				if (e.err == nil) != (tc.want == nil) || (tc.want != nil && !errors.Is(e.err, tc.want)) {
					t.Errorf("%s.Apply = %v, want %v", e.who, e.err, tc.want)
				}
			}
			listed := nfttest.ListTable(t, ns, testTable)
			if diff := cmp.Diff(nfttest.Normalize(listed), nfttest.Normalize(chainCommentRE.ReplaceAllString(fake.Dump(), "$1"))); diff != "" {
				t.Errorf("the kernel's table differs from the Fake's (-kernel +fake):\n%s", diff)
			}
			read, err := k.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fakeRead, _ := fake.Read(ctx)
			if d := nft.Diff(read, fakeRead, nil); !d.Empty() {
				t.Errorf("Diff(Kernel.Read, Fake.Read) is not empty:\n%s", d)
			}
			if !maps.EqualFunc(read.Objects, fakeRead.Objects, func(a, b *nft.Object) bool { return a.Comment == b.Comment }) {
				t.Errorf("object comments differ: kernel %v, fake %v", read.Objects, fakeRead.Objects)
			}
		})
	}
}

// TestKernelCountersBesideABatch: Counters answers while a batch holds the
// Kernel (it does not wait for it), and it is no change and no full read
// for the tamper check: Untouched stays true.
func TestKernelCountersBesideABatch(t *testing.T) {
	ctx := context.Background()
	_, k := newKernel(t)
	if got, err := k.Counters(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Counters of a missing table = %v, %v; want none", got, err)
	}
	if _, err := k.Reconcile(ctx, objectsProgram()); err != nil {
		t.Fatal(err)
	}
	watch(t, k)
	if !k.Untouched() {
		t.Fatal("not untouched with a watch running after a read")
	}
	release := k.HoldLock()
	type answer struct {
		counters map[string]nft.CounterObject
		err      error
	}
	done := make(chan answer, 1)
	go func() {
		c, err := k.Counters(ctx)
		done <- answer{c, err}
	}()
	var got answer
	select {
	case got = <-done:
	case <-time.After(30 * time.Second): // a deadlock, not a measure of speed
		release()
		t.Fatal("Counters waited for the batch in flight")
	}
	release()
	want := map[string]nft.CounterObject{denyCounter: {}, allowCounter: {}}
	if got.err != nil || !maps.Equal(got.counters, want) {
		t.Errorf("Counters = %v, %v; want %v", got.counters, got.err, want)
	}
	if !k.Untouched() {
		t.Error("Counters made the table touched")
	}
}
