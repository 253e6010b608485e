package nft

// Named objects (counters and limits) in transactions, Diff, the Fake's
// tracer and Render. IP plan: trace_test.go (198.18.0.1 -> 198.18.0.2).

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
)

func fxCounter(name string) Object { return Object{Name: name, Counter: &CounterObject{}} }

func fxLimit(name string, rate uint64, burst uint32) Object {
	return Object{Name: name, Limit: &LimitObject{Rate: rate, Unit: PerSecond, Burst: burst}}
}

// fxObjects is a state with a counter "hits", a limit "log-rate" and a
// forward base chain "base" whose rules name them.
func fxObjects(rules ...Rule) *State {
	s := fxState(nil, fxBase("base", 0, VerdictAccept, rules...))
	for _, o := range []Object{fxCounter("hits"), fxLimit("log-rate", 10, 20)} {
		s.Objects[o.Name] = &o
	}
	return s
}

func TestApplyObjects(t *testing.T) {
	named := fxRule(CounterRef{Name: "hits"}, LimitRef{Name: "log-rate"}, Log{Prefix: "p", Group: 3, NFLog: true}, fxDrop())
	replace := func(rules ...Rule) Op {
		return Op{Kind: OpReplaceRules, Name: "base", Chain: &Chain{Name: "base", Rules: rules}}
	}
	add := func(o Object) Op { return Op{Kind: OpAddObject, Name: o.Name, Object: &o} }
	del := func(name string) Op { return Op{Kind: OpDeleteObject, Name: name} }
	counted := fxCounter("hits")
	counted.Counter.Packets = 7
	for _, tc := range []struct {
		name  string
		start *State
		ops   []Op
		want  error // nil: success
	}{
		{"add new", fxObjects(), []Op{add(fxCounter("other"))}, nil},
		{"add identical is a no-op", fxObjects(), []Op{add(fxLimit("log-rate", 10, 20))}, nil},
		{"add identical with values and comment is a no-op", fxObjects(), []Op{add(counted), add(Object{Name: "hits", Comment: "c", Counter: &CounterObject{}})}, nil},
		{"add another definition", fxObjects(), []Op{add(fxLimit("log-rate", 10, 21))}, ErrExists},
		{"add another kind", fxObjects(), []Op{add(fxCounter("log-rate"))}, ErrExists},
		{"add without kind", fxObjects(), []Op{add(Object{Name: "x"})}, ErrInvalid},
		{"add two kinds", fxObjects(), []Op{add(Object{Name: "x", Counter: &CounterObject{}, Limit: &LimitObject{Rate: 1, Unit: PerSecond, Burst: 1}})}, ErrInvalid},
		{"add without name", fxObjects(), []Op{add(fxCounter(""))}, ErrInvalid},
		{"limit without burst", fxObjects(), []Op{add(fxLimit("x", 1, 0))}, ErrInvalid},
		{"limit without rate", fxObjects(), []Op{add(fxLimit("x", 0, 1))}, ErrInvalid},
		{"limit without unit", fxObjects(), []Op{add(Object{Name: "x", Limit: &LimitObject{Rate: 1, Burst: 1}})}, ErrInvalid},
		{"add without definition", fxObjects(), []Op{{Kind: OpAddObject, Name: "x"}}, ErrInvalid},
		{"delete unused", fxObjects(), []Op{del("hits"), del("log-rate")}, nil},
		{"delete missing", fxObjects(), []Op{del("nope")}, ErrNotFound},
		{"delete named by a rule", fxObjects(named), []Op{del("hits")}, ErrBusy},
		{"delete named limit", fxObjects(named), []Op{del("log-rate")}, ErrBusy},
		{"delete after the rule goes", fxObjects(named), []Op{replace(), del("hits"), del("log-rate")}, nil},
		{"delete before the rule goes", fxObjects(named), []Op{del("hits"), replace()}, ErrBusy},
		{"rule names a new object", fxObjects(), []Op{add(fxCounter("new")), replace(fxRule(CounterRef{Name: "new"}))}, nil},
		{"rule names a missing counter", fxObjects(), []Op{replace(fxRule(CounterRef{Name: "new"}))}, ErrNotFound},
		{"rule names a limit as a counter", fxObjects(), []Op{replace(fxRule(CounterRef{Name: "log-rate"}))}, ErrNotFound},
		{"rule names a counter as a limit", fxObjects(), []Op{replace(fxRule(LimitRef{Name: "hits"}))}, ErrNotFound},
		{"log prefix too long", fxObjects(), []Op{replace(fxRule(Log{Prefix: strings.Repeat("x", MaxLogPrefix+1)}))}, ErrInvalid},
		{"log prefix at the limit", fxObjects(), []Op{replace(fxRule(Log{Prefix: strings.Repeat("x", MaxLogPrefix)}))}, nil},
		{"log group without nflog", fxObjects(), []Op{replace(fxRule(Log{Group: 2}))}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.start
			before := Render("t", s)
			_ = s.objectNamed("") // count references first, so undo must keep them right
			err := s.Apply(&Transaction{Ops: tc.ops})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Apply = %v, want %v", err, tc.want)
			}
			if after := Render("t", s); after != before {
				t.Errorf("a failed Apply changed the state:\n%s", lineDiff(before, after))
			}
			// The counts survived the undo: the busy check still holds.
			if len(s.Chains["base"].Rules) > 0 && !s.objectNamed("hits") {
				t.Error("after the undo the counter no longer counts as named")
			}
		})
	}
}

func TestApplyObjectOwnsItsCopy(t *testing.T) {
	s := NewState()
	o := fxCounter("c")
	o.Counter.Packets = 9
	var tx Transaction
	tx.AddObject(o)
	o.Counter.Packets = 11 // the caller's copy changes afterwards
	if err := s.Apply(&tx); err != nil {
		t.Fatal(err)
	}
	if got := *s.Objects["c"].Counter; got != (CounterObject{}) {
		t.Errorf("a new counter holds %+v, want zero", got)
	}
	c := s.Clone()
	c.Objects["c"].Counter.Packets = 1
	if s.Objects["c"].Counter.Packets != 0 {
		t.Error("Clone shares the counter with its original")
	}
}

func TestDiffObjects(t *testing.T) {
	uses := func(names ...string) Rule {
		var exprs []Expr
		for _, n := range names {
			if strings.HasPrefix(n, "lim") {
				exprs = append(exprs, LimitRef{Name: n})
			} else {
				exprs = append(exprs, CounterRef{Name: n})
			}
		}
		return fxRule(append(exprs, fxDrop())...)
	}
	state := func(objs []Object, rules ...Rule) *State {
		s := fxState(nil, fxBase("base", 0, VerdictAccept, rules...))
		for _, o := range objs {
			s.Objects[o.Name] = &o
		}
		return s
	}
	withValues := fxCounter("cnt")
	withValues.Counter.Packets, withValues.Counter.Bytes = 5, 500
	commented := fxCounter("cnt")
	commented.Comment = "a comment"
	for _, tc := range []struct {
		name     string
		from, to *State
		scope    *Scope
		want     []string // the operations, as Format writes them (table t)
		wantErr  error    // what Apply of the diff to from returns
	}{
		{"no change", state([]Object{fxCounter("cnt")}, uses("cnt")), state([]Object{fxCounter("cnt")}, uses("cnt")), nil, nil, nil},
		{"counter values and comments are not compared", state([]Object{withValues}, uses("cnt")), state([]Object{commented}, uses("cnt")), nil, nil, nil},
		{"rule counter values are not compared", state(nil, fxRule(Counter{Packets: 3, Bytes: 180}, fxDrop())), state(nil, fxRule(Counter{}, fxDrop())), nil, nil, nil},
		{"objects come before the rules that name them",
			state(nil), state([]Object{fxCounter("cnt"), fxLimit("lim", 10, 20)}, uses("cnt", "lim")), nil,
			[]string{"add counter inet t cnt", "add limit inet t lim { rate 10/second burst 20 packets; }",
				`insert rule inet t base counter name "cnt" limit name "lim" drop`}, nil},
		{"objects go after the rules that named them",
			state([]Object{fxCounter("cnt"), fxLimit("lim", 10, 20)}, uses("cnt", "lim")), state(nil), nil,
			[]string{"flush chain inet t base", "delete counter inet t cnt", "delete limit inet t lim"}, nil},
		{"a changed limit nothing names is recreated",
			state([]Object{fxLimit("lim", 10, 20)}), state([]Object{fxLimit("lim", 10, 30)}), nil,
			[]string{"delete limit inet t lim", "add limit inet t lim { rate 10/second burst 30 packets; }"}, nil},
		{"a changed limit a rule names is an error",
			state([]Object{fxLimit("lim", 10, 20)}, uses("lim")), state([]Object{fxLimit("lim", 10, 30)}, uses("lim")), nil,
			[]string{"add limit inet t lim { rate 10/second burst 30 packets; }"}, ErrExists},
		{"scope: only marked objects",
			state(nil), state([]Object{fxCounter("cnt"), fxCounter("other")}), &Scope{Objects: map[string]bool{"cnt": true}},
			[]string{"add counter inet t cnt"}, nil},
		{"scope: a removed object",
			state([]Object{fxCounter("cnt"), fxCounter("other")}), state(nil), &Scope{Objects: map[string]bool{"other": true}},
			[]string{"delete counter inet t other"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := Diff(tc.from, tc.to, tc.scope)
			got := strings.Split(strings.TrimSpace(tx.Format("t")), "\n")[1:] // after "add table"
			if !slices.Equal(got, tc.want) {
				t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			s := tc.from.Clone()
			err := s.Apply(tx)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("Apply(Diff) = %v, want %v", err, tc.wantErr)
			}
			if err == nil && tc.scope == nil {
				if again := Diff(s, tc.to, nil); !again.Empty() {
					t.Errorf("Diff after Apply is not empty:\n%s", again)
				}
			}
		})
	}
}

func TestFakeTraceCountsAndLogs(t *testing.T) {
	ctx := context.Background()
	f := NewFake("t")
	src := Cmp{Field: FieldIPSaddr, Value: fxAddr("198.18.0.1")}
	want := fxObjects(
		// The counter before the address match counts every packet; the
		// limit always matches in the tracer.
		fxRule(CounterRef{Name: "hits"}, src, LimitRef{Name: "log-rate"}, Log{Prefix: "nftw deny in np", Group: 100, NFLog: true}, fxDrop()),
	)
	if _, err := f.Reconcile(ctx, want); err != nil {
		t.Fatal(err)
	}
	if !f.Untouched() {
		t.Fatal("not untouched after Reconcile")
	}
	denied := fxPacket("198.18.0.1", "198.18.0.2", ProtoTCP, 80)
	denied.Len = 60
	other := fxPacket("198.18.0.3", "198.18.0.2", ProtoTCP, 80)
	other.Len = 40
	r := f.Trace(denied)
	if r.Accepted() || !r.LoggedWith("nftw deny in np") || len(r.Logged) != 1 || r.Logged[0].Group != 100 || !r.Logged[0].NFLog {
		t.Errorf("denied packet: %v, logged %+v", r, r.Logged)
	}
	if !slices.Equal(r.Counted, []string{"hits"}) {
		t.Errorf("counted %v, want [hits]", r.Counted)
	}
	r = f.Trace(other)
	if !r.Accepted() || len(r.Logged) != 0 || !slices.Equal(r.Counted, []string{"hits"}) {
		t.Errorf("other packet: %v, logged %+v counted %v", r, r.Logged, r.Counted)
	}
	got, err := f.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]CounterObject{"hits": {Packets: 2, Bytes: 100}}; !maps.Equal(got, want) {
		t.Errorf("Counters = %v, want %v", got, want)
	}
	if !f.Untouched() {
		t.Error("tracing or reading counters made the table touched")
	}
	read, err := f.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := read.Objects["hits"].Counter; *c != (CounterObject{Packets: 2, Bytes: 100}) {
		t.Errorf("Read counter = %+v", *c)
	}
	if !strings.Contains(f.Dump(), "\t\tpackets 2 bytes 100\n") {
		t.Errorf("Dump does not show the counted values:\n%s", f.Dump())
	}
	// Counted values make no difference to a reconcile.
	if tx, err := f.Reconcile(ctx, want); err != nil || !tx.Empty() {
		t.Errorf("Reconcile of the same state = %v, %v; want a no-op", tx, err)
	}
	if got, err := NewFake("missing").Counters(ctx); err != nil || len(got) != 0 {
		t.Errorf("Counters of a missing table = %v, %v; want none", got, err)
	}
}
