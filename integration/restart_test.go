package integration

// Daemon restarts must not open a window: the table stays while the daemon is down,
// whatever ended it, and the new daemon converges it in place.
//
// Two nodes (topology of helpers_test.go plus x/e):
//
//	node 0: x/a (app=a, the protected pod), x/e (role=client), y/c       <- restarted
//	node 1: x/b (role=client), y/d, and 3,000 API-only pods in namespace bulk-<id>
//	        (addresses from cluster.UnroutedAddrs, 198.18.224.0/19 and 2001:db8:ff::/64)
//
// x/a admits only role=client pods of x and every pod of the namespaces labelled
// bulk-<id>=on. Eight probe loops run the whole time: allowed (x/e, same node; x/b,
// across nodes) and denied (y/c, same node; y/d, across nodes), each TCP and UDP,
// alternating IPv4 and IPv6; a TCP and a UDP session x/b -> x/a cross the restarting
// node. The daemon of node 0 is restarted NFTW_RESTARTS times (default 20), in turn by
// SIGTERM, by SIGKILL, and by SIGKILL a random moment after flipping bulk-<id>'s label,
// which adds or removes 3,000 pods (6,000 set elements) in one transaction: the kill
// lands within the time from the write to the end of that transaction (calibrated
// first), before or after the commit. After
// each restart the kernel's table must equal the desired one; after each of those
// kills the kernel must hold all of the bulk pods or none of them (the transaction is
// atomic).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// bulkPods is the size of the peer set that a namespace relabel adds or removes.
const bulkPods = 3000

var (
	unroutedV4 = netip.MustParsePrefix("198.18.224.0/19")
	unroutedV6 = netip.MustParsePrefix("2001:db8:ff::/64")
)

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

func TestIntegrationRestarts(t *testing.T) {
	restarts := envInt(t, "NFTW_RESTARTS", 20)
	env := cluster.StartForTest(t, controlPlane(t), cluster.Options{Nodes: 2})
	tp := newTopology(t, env)
	ctx := testCtx(t)
	client := map[string]string{"role": "client"}
	e, err := env.AddPod(ctx, cluster.PodSpec{Namespace: tp.x, Name: "e", Node: env.Nodes[0], Labels: map[string]string{"app": "e", "role": "client"}, Ports: agentPorts})
	must(t, err)
	must(t, env.SetPodLabels(ctx, tp.b, map[string]string{"app": "b", "role": "client"}))

	bulkNS, bulkKey := env.Name("bulk"), "bulk-"+suffix(env)
	must(t, env.CreateNamespace(ctx, bulkNS, map[string]string{bulkKey: "on"}))
	start := time.Now()
	must(t, parallel(ctx, bulkPods, 16, func(ctx context.Context, i int) error {
		v4, v6 := cluster.UnroutedAddrs(i)
		_, err := env.AddAPIPod(ctx, cluster.PodSpec{Namespace: bulkNS, Name: fmt.Sprintf("p%d", i), Node: env.Nodes[1],
			Labels: app("bulk"), IPv4: v4, IPv6: v6})
		return err
	}))
	t.Logf("%d API-only pods created in %s", bulkPods, time.Since(start).Round(time.Millisecond))

	startDaemons(t, env)
	must(t, env.ApplyPolicy(ctx, policy(tp.x, "a-from-clients", selecting(app("a")),
		ingress(from(peers(podPeer(client), nsPeer(map[string]string{bulkKey: "on"})))))))
	pods := append([]*cluster.Pod{e}, tp.all...)
	want := cluster.NewReachability(pods, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(tp.b, tp.a, true)
	want.Expect(e, tp.a, true)
	tp.expect(t, want, tcp80v4, udp53v6)
	node := tp.a.Node
	must(t, node.WaitConverged(ctx, converge))
	kernel, err := node.DumpKernel(ctx)
	must(t, err)
	if n := addrsInTable(kernel, unroutedV4); n != bulkPods {
		t.Fatalf("the kernel holds %d of the %d bulk pods' IPv4 addresses", n, bulkPods)
	}

	// How long the daemon takes from the relabel to the end of its transaction: kills
	// are drawn from that window.
	bulk := "on"
	flip := func() {
		if bulk == "on" {
			bulk = "off"
		} else {
			bulk = "on"
		}
		must(t, env.SetNamespaceLabels(ctx, bulkNS, map[string]string{bulkKey: bulk}))
	}
	var window time.Duration
	for range 2 {
		before := programmedElements(t, node)
		written := time.Now()
		flip()
		for {
			if n := programmedElements(t, node); n-before >= bulkPods || before-n >= bulkPods {
				break
			}
			if time.Since(written) > converge {
				t.Fatalf("the relabel of %s was not applied within %s", bulkNS, converge)
			}
			time.Sleep(2 * time.Millisecond)
		}
		window = max(window, time.Since(written))
	}
	t.Logf("relabel to applied (%d pods, %d elements): %s", bulkPods, 2*bulkPods, window.Round(time.Millisecond))

	var sessions []*cluster.Session
	for _, f := range []cluster.Flow{tcp80v4, udp53v4} {
		s, err := env.OpenSession(ctx, tp.b, tp.a, f)
		must(t, err)
		defer s.Close()
		sessions = append(sessions, s)
	}
	pr := startProber(ctx, env, []probePair{
		{"allowed same node TCP", e, tp.a, tcp80v4, true},
		{"allowed same node UDP", e, tp.a, udp53v4, true},
		{"allowed across nodes TCP", tp.b, tp.a, tcp80v4, true},
		{"allowed across nodes UDP", tp.b, tp.a, udp53v4, true},
		{"denied same node TCP", tp.c, tp.a, tcp80v4, false},
		{"denied same node UDP", tp.c, tp.a, udp53v4, false},
		{"denied across nodes TCP", tp.d, tp.a, tcp80v4, false},
		{"denied across nodes UDP", tp.d, tp.a, udp53v4, false},
	})
	time.Sleep(500 * time.Millisecond)

	modes := []string{"SIGTERM", "SIGKILL", "SIGKILL in a transaction"}
	var ready, converged durations
	byMode := map[string]int{}
	var killDelays durations
	appliedBeforeKill := 0
	// Kills are drawn from [0, killWithin]: shorter after a kill that came too late
	// (the transaction was in), longer after one that came early, so that they spread
	// over both sides of the commit.
	killWithin := window
	began := time.Now()
	for i := range restarts {
		mode := modes[i%len(modes)]
		byMode[mode]++
		switch mode {
		case "SIGTERM":
			node.StopDaemon()
		case "SIGKILL":
			must(t, node.KillDaemon())
		default:
			delay := time.Duration(rand.Int64N(int64(killWithin) + 1))
			flip()
			time.Sleep(delay)
			must(t, node.KillDaemon())
			killDelays = append(killDelays, delay)
			kernel, err := node.DumpKernel(ctx)
			must(t, err)
			n4, n6 := addrsInTable(kernel, unroutedV4), addrsInTable(kernel, unroutedV6)
			applied := (bulk == "on") == (n4 == bulkPods)
			if (n4 != 0 && n4 != bulkPods) || (n6 != 0 && n6 != bulkPods) || (n4 == 0) != (n6 == 0) {
				t.Errorf("restart %d: killed %s after the relabel, the kernel holds %d IPv4 and %d IPv6 of the %d bulk pods: a partial transaction",
					i+1, delay, n4, n6, bulkPods)
			}
			if applied {
				appliedBeforeKill++
				killWithin = killWithin * 7 / 10
			} else {
				killWithin = min(window, killWithin*13/10)
			}
		}
		// The rules must hold with no daemon at all; the first time for longer.
		pause := 200 * time.Millisecond
		if i == 0 {
			pause = 2 * time.Second
		}
		time.Sleep(pause)
		started := time.Now()
		must(t, node.StartDaemon())
		must(t, node.WaitDaemonReady(time.Minute))
		ready = append(ready, time.Since(started))
		must(t, node.WaitConverged(ctx, converge))
		converged = append(converged, time.Since(started))
	}
	elapsed := time.Since(began)
	time.Sleep(500 * time.Millisecond)
	probes := pr.stop(t)
	for _, s := range sessions {
		if broken, _ := s.Broken(); broken {
			t.Errorf("%s: the established flow did not survive the restarts", s)
		}
		t.Logf("%s", s)
	}
	must(t, env.Nodes[1].WaitConverged(ctx, converge))

	t.Logf("%d restarts in %s (%v), %d probes", restarts, elapsed.Round(time.Millisecond), byMode, probes)
	t.Logf("start to ready: %s; start to kernel equal to desired: %s", ready, converged)
	if len(killDelays) > 0 {
		t.Logf("kills %s after a relabel of %d pods (window %s): the transaction was applied before %d of %d kills",
			killDelays, bulkPods, window.Round(time.Millisecond), appliedBeforeKill, len(killDelays))
	}
}

// programmedElements reads the daemon's nftwarden_programmed_elements.
func programmedElements(t *testing.T, n *cluster.Node) int {
	t.Helper()
	body, err := n.DaemonGet(t.Context(), "/metrics")
	must(t, err)
	v, err := metricValue(body, "nftwarden_programmed_elements")
	must(t, err)
	return int(v)
}
