package integration

// Churn with address reuse: pods come and go at about 100 per second, and each new pod
// takes the address of one just deleted, with other labels, on the same node or on the
// other one. The verdict for a packet must always be the one of the pod that holds its
// address now.
//
// Two nodes, one namespace churn-<id>:
//
//	node 0: server (real; admits only app=allowed), slots s0, s1 (real)
//	node 1: slots s2, s3 (real)
//	API-only pods on both nodes, on 96 addresses ("lanes") taken from the top of both
//	nodes' ranges: each new one replaces the pod that held its lane, alternately on
//	the lane's node and on the other node, labels alternately app=allowed and
//	app=denied.
//
// Meanwhile each real slot is replaced again and again (cluster.Env.ReplacePod): the
// pod is deleted, and a new pod with the same addresses and the opposite label is
// created on the same node, its namespace prepared beforehand so that its status
// follows the deletion closely. As soon as its status is written, it probes the server (TCP over IPv4 and UDP over IPv6 at
// once). A denied holder that gets through is a stale allow: it fails the test. An
// allowed holder that does not is a false deny (the first packets of a pod not yet
// programmed, which first-packet isolation addresses): it is counted and reported.
// At the end the kernel's table equals the desired one on both nodes, and every slot
// gets its verdict.
//
// NFTW_CHURN_PODS changes the number of pods created (default 1,000).

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

const (
	churnRate  = 100 // pods created per second
	churnLanes = 48  // API-only addresses per node
	churnSlots = 2   // real re-addressed pods per node
)

// churnLane is an address pair that API-only pods take in turn.
type churnLane struct {
	home   *cluster.Node // the node whose range the addresses are from
	v4, v6 netip.Addr

	mu     sync.Mutex // a slow turn may still run when the lane comes round again
	holder *cluster.Pod
	turns  int
}

// churnOutcome counts the verdicts of the probes right after a replacement.
type churnOutcome struct {
	mu                        sync.Mutex
	probes, staleAllows       int
	falseDenies, replacements int
	stale                     []string
	takeover, readyToProbe    durations
}

func (o *churnOutcome) record(holder *cluster.Pod, allowed bool, f cluster.Flow, reachable bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.probes++
	switch {
	case reachable && !allowed:
		o.staleAllows++
		if len(o.stale) < 10 {
			o.stale = append(o.stale, fmt.Sprintf("%s (%s %s) reached the server over %s at %s, %s after the previous holder's deletion",
				holder, holder.IPv4, holder.IPv6, f, time.Now().Format("15:04:05.000"), holder.TakeoverGap.Round(time.Millisecond)))
		}
	case !reachable && allowed:
		o.falseDenies++
	}
}

func TestIntegrationChurn(t *testing.T) {
	total := envInt(t, "NFTW_CHURN_PODS", 1000)
	env := cluster.StartForTest(t, controlPlane(t), cluster.Options{Nodes: 2})
	ctx := testCtx(t)
	ns := env.Name("churn")
	must(t, env.CreateNamespace(ctx, ns, nil))
	label := func(allowed bool) map[string]string {
		if allowed {
			return app("allowed")
		}
		return app("denied")
	}
	server, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ns, Name: "server", Node: env.Nodes[0], Labels: app("server"), Ports: agentPorts})
	must(t, err)
	type slot struct {
		pod     *cluster.Pod
		allowed bool
	}
	var slots []*slot
	for i := range 2 * churnSlots {
		allowed := i%2 == 0
		p, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ns, Name: fmt.Sprintf("s%d-0", i), Node: env.Nodes[i/churnSlots],
			Labels: label(allowed), Ports: agentPorts})
		must(t, err)
		slots = append(slots, &slot{p, allowed})
	}
	var lanes []*churnLane
	for _, n := range env.Nodes {
		for k := range churnLanes {
			v4, v6 := n.PodAddrs(250 - k)
			lanes = append(lanes, &churnLane{home: n, v4: v4, v6: v6})
		}
	}
	startDaemons(t, env)
	must(t, env.ApplyPolicy(ctx, policy(ns, "server-from-allowed", selecting(app("server")), ingress(from(peers(podPeer(app("allowed"))))))))
	for _, f := range []cluster.Flow{tcp80v4, udp53v6} {
		for _, s := range slots {
			waitVerdict(t, env, s.pod, server, f, s.allowed)
		}
	}

	var created atomic.Int64
	churnCtx, stopChurn := context.WithCancel(ctx)
	defer stopChurn()
	out := &churnOutcome{}

	// Each real slot is replaced again and again until the API-only churn ends.
	var wg sync.WaitGroup
	var slotErr, apiErr firstErr
	for i, s := range slots {
		wg.Go(func() {
			for turn := 1; churnCtx.Err() == nil && slotErr.get() == nil; turn++ {
				allowed := !s.allowed
				p, err := env.ReplacePod(ctx, s.pod, cluster.PodSpec{Namespace: ns, Name: fmt.Sprintf("s%d-%d", i, turn),
					Labels: label(allowed), Ports: agentPorts})
				if err != nil {
					slotErr.set(err)
					return
				}
				written := time.Now()
				s.pod, s.allowed = p, allowed
				created.Add(1)
				var probes sync.WaitGroup
				for _, f := range []cluster.Flow{tcp80v4, udp53v6} {
					probes.Go(func() {
						ok, err := env.Probe(ctx, p, server, f)
						if err != nil {
							slotErr.set(err)
							return
						}
						out.record(p, allowed, f, ok)
					})
				}
				probes.Wait()
				out.mu.Lock()
				out.replacements++
				out.readyToProbe = append(out.readyToProbe, time.Since(written))
				out.takeover = append(out.takeover, p.TakeoverGap)
				out.mu.Unlock()
			}
		})
	}

	// The API-only churn: a token every 1/churnRate s; each takes a lane, deletes its
	// holder and creates the next one there.
	tokens := make(chan int)
	var laneMu sync.Mutex
	nextLane := 0
	start := time.Now()
	var workers sync.WaitGroup
	for range 16 {
		workers.Go(func() {
			for n := range tokens {
				laneMu.Lock()
				l := lanes[nextLane%len(lanes)]
				nextLane++
				laneMu.Unlock()
				if err := churnLaneTurn(ctx, env, ns, l, n, label(n%2 == 0)); err != nil {
					apiErr.set(err)
				}
			}
		})
	}
	tick := time.NewTicker(time.Second / churnRate)
	for n := 0; created.Load() < int64(total) && apiErr.get() == nil && slotErr.get() == nil; n++ {
		<-tick.C
		tokens <- n
		created.Add(1)
	}
	tick.Stop()
	close(tokens)
	workers.Wait()
	elapsed := time.Since(start)
	stopChurn()
	wg.Wait()
	if err := apiErr.get(); err != nil {
		t.Fatalf("API-only churn: %v", err)
	}
	if err := slotErr.get(); err != nil {
		t.Fatalf("replacing real pods: %v", err)
	}
	// The last holders go too.
	must(t, parallel(ctx, len(lanes), 8, func(ctx context.Context, i int) error {
		if p := lanes[i].holder; p != nil {
			return env.DeletePod(ctx, p)
		}
		return nil
	}))

	for _, n := range env.Nodes {
		must(t, n.WaitConverged(ctx, converge))
	}
	for _, s := range slots {
		for _, f := range []cluster.Flow{tcp80v4, udp53v6} {
			ok, err := env.Probe(ctx, s.pod, server, f)
			must(t, err)
			if ok != s.allowed {
				t.Errorf("after the churn: %s (app allowed: %v) -> server over %s: reachable %v", s.pod, s.allowed, f, ok)
			}
		}
	}

	t.Logf("%d pods created (%d real replacements) in %s: %.0f pods/s, each also deleted; %d API-only addresses reused %d times",
		created.Load(), out.replacements, elapsed.Round(time.Millisecond), float64(created.Load())/elapsed.Seconds(), len(lanes), created.Load()-int64(out.replacements)-int64(len(lanes)))
	t.Logf("real replacements: old pod deleted to new pod's status written: %s", out.takeover)
	t.Logf("probes right after a replacement: %d; status written to verdict: %s", out.probes, out.readyToProbe)
	t.Logf("stale allows (a denied holder got through): %d; false denies (an allowed holder not yet programmed): %d", out.staleAllows, out.falseDenies)
	if out.staleAllows > 0 {
		t.Errorf("%d stale allows, want none:\n  %s", out.staleAllows, strings.Join(out.stale, "\n  "))
	}
	if out.replacements < 2*len(slots) {
		t.Errorf("only %d real replacements during the churn", out.replacements)
	}
}

// churnLaneTurn deletes the lane's holder and creates pod number n on its addresses:
// on the lane's node every other turn, on another node in between.
func churnLaneTurn(ctx context.Context, env *cluster.Env, ns string, l *churnLane, n int, labels map[string]string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder != nil {
		if err := env.DeletePod(ctx, l.holder); err != nil {
			return err
		}
	}
	node := l.home
	if l.turns%2 == 1 {
		for _, m := range env.Nodes {
			if m != l.home {
				node = m
			}
		}
	}
	l.turns++
	p, err := env.AddAPIPod(ctx, cluster.PodSpec{Namespace: ns, Name: fmt.Sprintf("c%d", n), Node: node, Labels: labels, IPv4: l.v4, IPv6: l.v6})
	l.holder = p
	return err
}

// waitVerdict probes until from -> to over f is reachable as wanted, for at most
// converge.
func waitVerdict(t *testing.T, env *cluster.Env, from, to *cluster.Pod, f cluster.Flow, reachable bool) {
	t.Helper()
	deadline := time.Now().Add(converge)
	for {
		ok, err := env.Probe(t.Context(), from, to, f)
		must(t, err)
		if ok == reachable {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s -> %s over %s: reachable %v after %s, want %v", from, to, f, ok, converge, reachable)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
