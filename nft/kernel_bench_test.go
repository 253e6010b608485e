package nft_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// nodeState builds a node program shaped as the engine compiles one
// (enforcer/PROGRAM.md) with the given number of policy chains and about ten
// times as many peer-set elements: policies/10 peer groups of 100 IPv4 pod
// addresses each (on a dual-stack node also an IPv6 set, left empty so that
// the element count stays the same), each with a peer chain that matches its
// sets and accepts, and policies/10 local pods each dispatching to ten policy
// chains. A policy chain matches its two ports (tcp 80 and a range; short
// port lists are comparisons, not sets) and jumps to its group's peer chain.
// On a node whose pods are IPv4 only, the engine leaves the IPv6 sets and
// rules out. The ten policies of a group allow the same ports, unless
// distinctPorts gives every policy a range of its own.
func nodeState(policies int, dualStack, distinctPorts bool) *nft.State {
	s := skeleton()
	groups := max(policies/10, 1)
	next := binary.BigEndian.Uint32(netip.MustParseAddr("198.18.0.0").AsSlice())
	ip := func() nft.Value {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], next)
		next++
		return b[:]
	}
	for g := range groups {
		peers := make([]nft.Element, 100)
		for i := range peers {
			peers[i] = nft.Element{Key: []nft.Value{ip()}}
		}
		addSet(s, nft.Set{Name: fmt.Sprintf("peer-v4-%05d", g), Key: []nft.KeyType{nft.TypeIPv4Addr},
			Comment: fmt.Sprintf("ns%d: app=g%d", g, g)}, peers...)
		if dualStack {
			addSet(s, nft.Set{Name: fmt.Sprintf("peer-v6-%05d", g), Key: []nft.KeyType{nft.TypeIPv6Addr}})
		}
	}
	for g := range groups {
		rules := []nft.Rule{{Exprs: []nft.Expr{nft.Lookup{Fields: []nft.Field{nft.FieldIPSaddr}, Set: fmt.Sprintf("peer-v4-%05d", g)}, accept()}}}
		if dualStack {
			rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.Lookup{Fields: []nft.Field{nft.FieldIP6Saddr}, Set: fmt.Sprintf("peer-v6-%05d", g)}, accept()}})
		}
		addChain(s, nft.Chain{Name: fmt.Sprintf("from-%05d", g), Rules: rules})
	}
	tcp := nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(nft.ProtoTCP)}
	for p := range policies {
		g := p % groups
		c := g
		if distinctPorts {
			c = p
		}
		jump := nft.Verdict{Kind: nft.VerdictJump, Chain: fmt.Sprintf("from-%05d", g)}
		rules := []nft.Rule{
			{Exprs: []nft.Expr{tcp, nft.Cmp{Field: nft.FieldTHDport, Value: nft.PortValue(80)}, jump}},
			{Exprs: []nft.Expr{tcp, nft.Range{Field: nft.FieldTHDport, From: nft.PortValue(uint16(8000 + c%1000)), To: nft.PortValue(uint16(8100 + c%1000))}, jump}},
		}
		addChain(s, nft.Chain{Name: fmt.Sprintf("pol-in-%05d", p), Comment: fmt.Sprintf("ns%d/pol%d ingress rule list", g, p), Rules: rules})
	}
	vmap := s.Sets["ingress-v4"]
	for pod := range groups {
		name := fmt.Sprintf("pod-in-%05d", pod)
		var rules []nft.Rule
		for j := range min(10, policies) {
			rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump,
				Chain: fmt.Sprintf("pol-in-%05d", (pod*10+j)%policies)}}})
		}
		rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}})
		addChain(s, nft.Chain{Name: name, Rules: rules})
		e := nft.Element{Key: []nft.Value{ip()}, Verdict: &nft.Verdict{Kind: nft.VerdictGoto, Chain: name}}
		vmap.PutElements(e)
	}
	return s
}

func countElements(s *nft.State) int {
	n := 0
	for _, set := range s.Sets {
		n += set.Elements.Len()
	}
	return n
}

var benchSizes = []int{100, 1_000, 10_000}

// watchModes are the two sides of the benchmarks that show what a running
// change monitor (Kernel.WatchChanges) costs: the kernel then builds a
// notification for every element, rule, chain and set of a batch, except for
// the Kernel's large batches, which it sends unwatched (mute.go). Medians of
// 5 interleaved runs on the 2-CPU test VM under load, CPU ms off/on: node
// program of 10,000 policies 510/500 (dual-stack), 469/473 (IPv4);
// 100,000 elements 152/149; one-element delta at 10,000 policies 238/221 µs
// per change, the monitor's reading included.
var watchModes = []string{"off", "on"}

// benchWatch starts a change monitor on k when mode is "on" and returns a
// function that waits until the monitor has read all that is queued, so that
// its CPU time counts where it belongs (without a monitor it does nothing).
// The wait makes a change from another socket (a set added and deleted in
// one batch, which also creates the table when missing) and waits for its
// report: the kernel delivers notifications in commit order. A report of
// lost notifications fails the benchmark.
func benchWatch(b *testing.B, ns *nfttest.NetNS, k *nft.Kernel, mode string) (drain func()) {
	if mode == "off" {
		return func() {}
	}
	reports, _ := watch(b, k)
	other, err := nft.NewKernel(nft.WithTable(k.Table()), nft.WithNetNS(ns.FD))
	if err != nil {
		b.Fatalf("NewKernel: %v", err)
	}
	b.Cleanup(func() { _ = other.Close() })
	var marker nft.Transaction
	marker.AddSet(nft.Set{Name: "bench-drain", Key: []nft.KeyType{nft.TypeIPv4Addr}})
	marker.DeleteSet("bench-drain")
	return func() {
		if err := other.Apply(context.Background(), &marker); err != nil {
			b.Fatalf("drain marker: %v", err)
		}
		for {
			c := nextChange(b, reports)
			if c.Lost {
				b.Fatalf("the monitor lost notifications: %v", c)
			}
			if strings.Contains(c.What, "bench-drain") {
				return
			}
		}
	}
}

// BenchmarkKernelProgram programs a whole node state into an empty table (one
// batch), the cost of a first start, for a single-stack (IPv4) node and a
// dual-stack one, and for a dual-stack node whose policies all allow port
// lists of their own (no peer chain shared).
func BenchmarkKernelProgram(b *testing.B) {
	for _, policies := range benchSizes {
		for _, v := range []struct {
			name           string
			dual, distinct bool
		}{{"ipv4", false, false}, {"dual", true, false}, {"dual-distinct-ports", true, true}} {
			for _, watch := range watchModes {
				benchKernelProgram(b, nodeState(policies, v.dual, v.distinct), fmt.Sprintf("policies=%d/stack=%s", policies, v.name), watch)
			}
		}
	}
}

func benchKernelProgram(b *testing.B, st *nft.State, name, watch string) {
	b.Run(fmt.Sprintf("%s/elements=%d/watch=%s", name, countElements(st), watch), func(b *testing.B) {
		ns, k := newKernel(b)
		drain := benchWatch(b, ns, k, watch)
		ctx := context.Background()
		tx := nft.Diff(nil, st, nil)
		var user, sys time.Duration
		b.ResetTimer()
		for range b.N {
			u0, s0 := nfttest.CPUTimes(b)
			if err := k.Apply(ctx, tx); err != nil {
				b.Fatalf("Apply: %v", err)
			}
			drain()
			b.StopTimer()
			u1, s1 := nfttest.CPUTimes(b)
			user, sys = user+u1-u0, sys+s1-s0
			if err := k.Cleanup(ctx); err != nil {
				b.Fatalf("Cleanup: %v", err)
			}
			drain()
			b.StartTimer()
		}
		b.ReportMetric(float64(tx.Size()), "ops/batch")
		b.ReportMetric(float64((user+sys).Milliseconds())/float64(b.N), "cpu-ms/op")
		b.ReportMetric(float64(sys.Milliseconds())/float64(b.N), "sys-ms/op")
	})
}

// BenchmarkKernelElements programs one set of 100,000 IPv4 addresses in one
// batch: the floor of getting that many elements into the kernel, which the
// program benchmarks are read against (the machine's speed varies from run to
// run; the ratio to the floor measured beside them does much less).
func BenchmarkKernelElements(b *testing.B) {
	s := nft.NewState()
	elems := make([]nft.Element, 100_000)
	base := binary.BigEndian.Uint32(netip.MustParseAddr("198.18.0.0").AsSlice())
	for i := range elems {
		v := make(nft.Value, 4)
		binary.BigEndian.PutUint32(v, base+uint32(i))
		elems[i] = nft.Element{Key: []nft.Value{v}}
	}
	addSet(s, nft.Set{Name: "peers", Key: []nft.KeyType{nft.TypeIPv4Addr}}, elems...)
	tx := nft.Diff(nil, s, nil)
	for _, watch := range watchModes {
		b.Run("watch="+watch, func(b *testing.B) {
			ns, k := newKernel(b)
			drain := benchWatch(b, ns, k, watch)
			ctx := context.Background()
			var cpu time.Duration
			b.ResetTimer()
			for range b.N {
				c0 := nfttest.CPUTime(b)
				if err := k.Apply(ctx, tx); err != nil {
					b.Fatalf("Apply: %v", err)
				}
				drain()
				b.StopTimer()
				cpu += nfttest.CPUTime(b) - c0
				if err := k.Cleanup(ctx); err != nil {
					b.Fatalf("Cleanup: %v", err)
				}
				drain()
				b.StartTimer()
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

// BenchmarkKernelDelta measures one small transaction (one element added to a
// peer set, one removed) with a whole node state loaded: the steady-state cost
// of a pod change, as latency and as CPU time per change (with a change
// monitor running, its reading counts too).
func BenchmarkKernelDelta(b *testing.B) {
	for _, policies := range benchSizes {
		st := nodeState(policies, true, false)
		for _, watch := range watchModes {
			benchKernelDelta(b, st, policies, watch)
		}
	}
}

func benchKernelDelta(b *testing.B, st *nft.State, policies int, watch string) {
	set := fmt.Sprintf("peer-v4-%05d", max(policies/10, 1)-1)
	benchKernelDeltaOn(b, fmt.Sprintf("policies=%d/elements=%d/watch=%s", policies, countElements(st), watch), st, set, watch)
}

// benchKernelDeltaOn measures one-element deltas on set of st (see
// BenchmarkKernelDelta).
func benchKernelDeltaOn(b *testing.B, name string, st *nft.State, set, watch string) {
	b.Run(name, func(b *testing.B) {
		ns, k := newKernel(b)
		ctx := context.Background()
		applyState(b, k, st)
		drain := benchWatch(b, ns, k, watch)
		// The set created last: the kernel finds a set by a walk over
		// the table's sets in creation order, so this is the slowest.
		a := nft.Element{Key: []nft.Value{addr("198.19.200.1")}}
		c := nft.Element{Key: []nft.Value{addr("198.19.200.2")}}
		var first nft.Transaction
		first.AddElements(set, a)
		if err := k.Apply(ctx, &first); err != nil {
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, b.N)
		drain()
		u0, s0 := nfttest.CPUTimes(b)
		b.ResetTimer()
		for i := range b.N {
			var tx nft.Transaction
			if i%2 == 0 {
				tx.DeleteElements(set, a)
				tx.AddElements(set, c)
			} else {
				tx.DeleteElements(set, c)
				tx.AddElements(set, a)
			}
			start := time.Now()
			if err := k.Apply(ctx, &tx); err != nil {
				b.Fatalf("Apply: %v", err)
			}
			lat = append(lat, time.Since(start))
		}
		drain()
		b.StopTimer()
		u1, s1 := nfttest.CPUTimes(b)
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64((u1-u0+s1-s0).Microseconds())/float64(b.N), "cpu-µs/op")
		b.ReportMetric(float64((s1-s0).Microseconds())/float64(b.N), "sys-µs/op")
	})
}

// BenchmarkKernelDeltaFloor is what the kernel alone makes a one-element
// delta (BenchmarkKernelDelta's transaction) cost: in a table holding only
// the set, and in tables that hold only what the 10,000-policy node has more
// of, 2,002 sets (the kernel finds the set of each element message by a walk
// over the table's sets, from the oldest, and this set is the last) or
// 12,003 chains (every commit walks all chains of all tables to publish
// their rule blobs, nf_tables_commit). sys-µs/op is the kernel's share.
func BenchmarkKernelDeltaFloor(b *testing.B) {
	peers := func(s *nft.State, name string) {
		elems := make([]nft.Element, 100)
		for i := range elems {
			elems[i] = nft.Element{Key: []nft.Value{nft.AddrValue(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))}}
		}
		addSet(s, nft.Set{Name: name, Key: []nft.KeyType{nft.TypeIPv4Addr}}, elems...)
	}
	const set = "peer-v4-last"
	minimal := nft.NewState()
	peers(minimal, set)
	sets := nft.NewState()
	for i := range 2001 {
		addSet(sets, nft.Set{Name: fmt.Sprintf("other-%05d", i), Key: []nft.KeyType{nft.TypeIPv4Addr}})
	}
	peers(sets, set)
	chains := nft.NewState()
	peers(chains, set)
	for i := range 12003 {
		addChain(chains, nft.Chain{Name: fmt.Sprintf("chain-%05d", i)})
	}
	for _, v := range []struct {
		name string
		st   *nft.State
	}{{"minimal", minimal}, {"sets=2002", sets}, {"chains=12003", chains}} {
		benchKernelDeltaOn(b, v.name, v.st, set, "off")
	}
}

// BenchmarkKernelReconcileNoop measures a Reconcile that finds nothing to do:
// listing the whole table and diffing it (a restart against the table the
// previous run left, and the periodic safety net). CPU time is the process's
// (getrusage), so the garbage collector's work and the kernel's (sys-ms) for
// the dumps count too. floor-cpu-ms is the floor measured beside it: the
// same netlink requests with their answers read but not decoded (ListRaw).
func BenchmarkKernelReconcileNoop(b *testing.B) {
	for _, policies := range benchSizes {
		st := nodeState(policies, true, false)
		b.Run(fmt.Sprintf("policies=%d/elements=%d", policies, countElements(st)), func(b *testing.B) {
			_, k := newKernel(b)
			ctx := context.Background()
			applyState(b, k, st)
			u0, s0 := nfttest.CPUTimes(b)
			b.ResetTimer()
			for range b.N {
				tx, err := k.Reconcile(ctx, st)
				if err != nil {
					b.Fatalf("Reconcile: %v", err)
				}
				if !tx.Empty() {
					b.Fatalf("no-op Reconcile sent %d operations", tx.Size())
				}
			}
			b.StopTimer()
			u1, s1 := nfttest.CPUTimes(b)
			b.ReportMetric(float64((u1-u0+s1-s0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64((s1-s0).Microseconds())/1000/float64(b.N), "sys-ms/op")
			// The floor beside it: the same requests, their answers
			// read but not decoded.
			u0, s0 = nfttest.CPUTimes(b)
			for range b.N {
				if _, err := k.ListRaw(); err != nil {
					b.Fatalf("ListRaw: %v", err)
				}
			}
			u1, s1 = nfttest.CPUTimes(b)
			b.ReportMetric(float64((u1-u0+s1-s0).Microseconds())/1000/float64(b.N), "floor-cpu-ms/op")
			b.ReportMetric(float64((s1-s0).Microseconds())/1000/float64(b.N), "floor-sys-ms/op")
		})
	}
}

// BenchmarkKernelWatchLatency measures how soon a foreign change is
// reported: from the start of another socket's one-element batch (a second
// Kernel of the same table) until the report reaches the caller, next to how
// long that batch takes by itself (the kernel queues the notifications
// before the batch's sendmsg returns).
func BenchmarkKernelWatchLatency(b *testing.B) {
	ns, k := newKernel(b)
	applyState(b, k, program())
	reports, _ := watch(b, k)
	other, err := nft.NewKernel(nft.WithTable(testTable), nft.WithNetNS(ns.FD))
	if err != nil {
		b.Fatalf("NewKernel: %v", err)
	}
	b.Cleanup(func() { _ = other.Close() })
	ctx := context.Background()
	e := v4("198.18.0.99")
	reported := make([]time.Duration, 0, b.N)
	applied := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		var tx nft.Transaction
		if i%2 == 0 {
			tx.AddElements("peer-v4-web", e)
		} else {
			tx.DeleteElements("peer-v4-web", e)
		}
		start := time.Now()
		if err := other.Apply(ctx, &tx); err != nil {
			b.Fatalf("Apply: %v", err)
		}
		applied = append(applied, time.Since(start))
		if c := nextChange(b, reports); c.Lost {
			b.Fatalf("reported %v", c)
		}
		reported = append(reported, time.Since(start))
	}
	b.StopTimer()
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"report", reported}, {"batch", applied}} {
		slices.Sort(m.d)
		b.ReportMetric(float64(m.d[len(m.d)/2].Microseconds()), m.name+"-p50-µs")
		b.ReportMetric(float64(m.d[len(m.d)*99/100].Microseconds()), m.name+"-p99-µs")
	}
}
