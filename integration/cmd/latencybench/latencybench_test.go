package main

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftwarden/nftwarden/integration/cluster"
	"github.com/nftwarden/nftwarden/podwatch/podwatchtest"
)

// TestPlan: the measured node hosts the asked number of pods, at most one
// per namespace, with every app label (so every kind of policy selects a
// local pod); the pods the label writes flip and those the namespace writes
// watch are remote, of zone a where needed, and apart.
func TestPlan(t *testing.T) {
	for _, tc := range []struct{ pods, policies, local int }{
		{10000, 1000, 100},
		{100000, 10000, 100},
		{2000, 200, 7},
	} {
		t.Run(fmt.Sprint(tc.pods), func(t *testing.T) {
			p, err := newPlan(tc.pods, 100, tc.policies, tc.local, 100, "measured")
			if err != nil {
				t.Fatal(err)
			}
			local, apps := 0, map[string]bool{}
			perNS := map[int]int{}
			for i := range tc.pods {
				if p.nodeOf(i) == "measured" {
					local++
					perNS[i/100]++
					apps[podwatchtest.Pod(podwatchtest.NamespaceName(i/100), i, "").Labels["app.kubernetes.io/name"]] = true
				}
			}
			if local != tc.local || len(perNS) != tc.local {
				t.Errorf("%d local pods in %d namespaces, want %d in as many", local, len(perNS), tc.local)
			}
			if want := min(tc.local, 10); len(apps) != want {
				t.Errorf("local pods have %d app labels, want %d", len(apps), want)
			}
			flipped := map[int]bool{}
			for _, i := range p.remotePods(p.ofEnv("staging")) {
				flipped[i] = true
				if p.nodeOf(i) == "measured" || env(i/100) != "staging" {
					t.Fatalf("label pod %d: on %s, namespace env %s", i, p.nodeOf(i), env(i/100))
				}
			}
			for _, j := range p.ofEnv("prod") {
				i := p.zoneAPod(j)
				if flipped[i] || i%2 != 0 || i/100 != j || p.nodeOf(i) == "measured" {
					t.Errorf("namespace %d watches pod %d (flipped %v, node %s)", j, i, flipped[i], p.nodeOf(i))
				}
			}
		})
	}
	for _, bad := range [][4]int{{10000, 999, 100, 100}, {10000, 1000, 101, 100}, {10050, 1000, 100, 100}, {10000, 1000, 100, 15}} {
		if _, err := newPlan(bad[0], bad[3], bad[1], bad[2], 100, "measured"); err == nil {
			t.Errorf("newPlan(pods %d, per namespace %d, policies %d, local %d) accepted", bad[0], bad[3], bad[1], bad[2])
		}
	}
}

func TestQuantiles(t *testing.T) {
	var ds []time.Duration
	for k := 100; k >= 1; k-- {
		ds = append(ds, time.Duration(k)*time.Millisecond)
	}
	if got, want := quantilesOf(ds, ms), (quantiles{P50: 50, P90: 90, P99: 99, Max: 100}); got != want {
		t.Errorf("quantiles of 1..100 ms = %+v, want %+v", got, want)
	}
	if got := quantilesOf([]int{7}, func(n int) float64 { return float64(n) }); got != (quantiles{7, 7, 7, 7}) {
		t.Errorf("quantiles of one value = %+v", got)
	}
}

// TestTrackerMatches: a batch carries the writes in flight whose change it
// holds and that were sent before it ended; other batches are counted.
func TestTrackerMatches(t *testing.T) {
	tr := newTracker(nil)
	t0 := time.Now()
	a, b := elementChange(1, true), elementChange(2, false)
	flight := func(c cluster.NFTChange, sent time.Time) *inFlight {
		f := &inFlight{change: c, s: &sample{sent: sent}, done: make(chan struct{})}
		tr.pending = append(tr.pending, f)
		return f
	}
	fa := flight(a, t0)
	fb := flight(b, t0.Add(time.Second))
	elem := func(typ uint8, c cluster.NFTChange) cluster.NFTMessage {
		return cluster.NFTMessage{Type: typ, Attrs: append([]byte("set\x00"), c.Needle...)}
	}
	// Ends before b was sent, holds both: carries a only.
	tr.batch(&cluster.NFTBatch{End: t0.Add(time.Millisecond), Messages: []cluster.NFTMessage{
		elem(unix.NFT_MSG_NEWSETELEM, a), elem(unix.NFT_MSG_DELSETELEM, b)}})
	// Holds b added, not deleted: another batch.
	tr.batch(&cluster.NFTBatch{End: t0.Add(2 * time.Second), Messages: []cluster.NFTMessage{elem(unix.NFT_MSG_NEWSETELEM, b)}})
	tr.batch(&cluster.NFTBatch{End: t0.Add(3 * time.Second), Messages: []cluster.NFTMessage{
		elem(unix.NFT_MSG_DELSETELEM, b), elem(unix.NFT_MSG_NEWSETELEM, a), elem(unix.NFT_MSG_NEWSETELEM, a)}})
	select {
	case <-fa.done:
	default:
		t.Fatal("write a not carried")
	}
	select {
	case <-fb.done:
	default:
		t.Fatal("write b not carried")
	}
	if fa.s.batch != 1 || fa.s.messages != 2 || fb.s.batch != 3 || fb.s.messages != 3 || !fb.s.inKernel.Equal(t0.Add(3*time.Second)) {
		t.Errorf("a in batch %d (%d messages), b in batch %d (%d messages, at %v); want 1 (2), 3 (3, at +3s)",
			fa.s.batch, fa.s.messages, fb.s.batch, fb.s.messages, fb.s.inKernel.Sub(t0))
	}
	if others := tr.takeOthers(); len(others) != 1 || others[0] != 1 || len(tr.pending) != 0 {
		t.Errorf("other batches %v, pending %d; want [1], 0", others, len(tr.pending))
	}
}

func TestCountsOf(t *testing.T) {
	body := []byte(`# HELP nftwarden_events_total Informer notifications queued, by object kind.
nftwarden_events_total{kind="Pod"} 12
nftwarden_events_total{kind="Namespace"} 3
nftwarden_events_total_other 100
nftwarden_syncs_total{mode="delta",result="success"} 7
nftwarden_syncs_total{mode="full",result="success"} 2
`)
	c, err := countsOf(body)
	if err != nil || c != (daemonCounts{events: 15, syncs: 9}) {
		t.Errorf("countsOf = %+v, %v; want 15 events, 9 syncs", c, err)
	}
	if _, err := countsOf([]byte("nftwarden_events_total{kind=\"Pod\"} 1\n")); err == nil {
		t.Error("countsOf accepted metrics without syncs")
	}
	var p phase
	p.N = 4
	p.perWrite(daemonCounts{events: 10, syncs: 1}, daemonCounts{events: 18, syncs: 9})
	if p.EventsPerWrite != 2 || p.FlushesPerWrite != 2 {
		t.Errorf("per write: %v events, %v syncs; want 2, 2", p.EventsPerWrite, p.FlushesPerWrite)
	}
}

// TestBusyPodSelector: the busy pod's selector matches the local pod of its
// namespace and no other pod of the cluster's namespace, at both sizes.
func TestBusyPodSelector(t *testing.T) {
	for _, tc := range []struct{ pods, policies int }{{10000, 1000}, {100000, 10000}} {
		p, err := newPlan(tc.pods, 100, tc.policies, 100, 100, "measured")
		if err != nil {
			t.Fatal(err)
		}
		w := newWriter(p, nil, 1, 2000)
		j, sel := w.busyPod()
		var matched []int
		for r := range p.perNS {
			i := j*p.perNS + r
			labels := podwatchtest.Pod(podwatchtest.NamespaceName(j), i, "").Labels
			if labels["app.kubernetes.io/name"] == sel["app.kubernetes.io/name"] && labels["pod-template-hash"] == sel["pod-template-hash"] {
				matched = append(matched, i)
			}
		}
		if len(matched) != 1 || p.nodeOf(matched[0]) != "measured" {
			t.Errorf("%d pods: busy selector %v matches pods %v of namespace %d, want its one local pod", tc.pods, sel, matched, j)
		}
	}
}

// TestAPIWatchStamp: a write's event is the first of its object at or after
// its request; events before it (what prepare did) are not its.
func TestAPIWatchStamp(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	w := &apiWatch{events: map[string][]time.Time{
		"pods/ns/a": {at(1), at(5), at(9)},
		"pods/ns/b": {at(2)},
	}}
	writes := []write{{object: "pods/ns/a"}, {object: "pods/ns/a"}, {object: "pods/ns/b"}}
	samples := []*sample{{sent: at(3)}, {sent: at(5)}, {sent: at(0)}}
	if err := stamp(t.Context(), w, nil, writes, samples, time.Second); err != nil {
		t.Fatal(err)
	}
	for k, want := range []time.Time{at(5), at(5), at(2)} {
		if !samples[k].delivered.Equal(want) {
			t.Errorf("write %d delivered at +%v, want +%v", k, samples[k].delivered.Sub(t0), want.Sub(t0))
		}
	}
	if err := stamp(t.Context(), w, nil, writes[2:], []*sample{{sent: at(3)}}, 10*time.Millisecond); err == nil {
		t.Error("stamp found an event of pods/ns/b after its last one")
	}
}
