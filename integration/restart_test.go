package integration

// A daemon restart must not open a window: the table stays while the daemon is down,
// and the new daemon converges it in place. Probes run the whole time.

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

func TestIntegrationDaemonRestart(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-b", selecting(app("a")), ingress(from(peers(podPeer(app("b"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(tp.b, tp.a, true)
	tp.expect(t, want, tcp80v4)

	// Probe a blocked flow (y/c -> x/a, same node) and an allowed one (x/b -> x/a,
	// across nodes) without pause while x/a's node restarts its daemon.
	var leaked, broken, probes atomic.Int64
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, pair := range []struct {
		from    *cluster.Pod
		allowed bool
	}{{tp.c, false}, {tp.b, true}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pctx.Err() == nil {
				ok, err := tp.env.Probe(pctx, pair.from, tp.a, tcp80v4)
				if err != nil {
					continue // the probe was cut by the end of the test
				}
				probes.Add(1)
				switch {
				case ok && !pair.allowed:
					leaked.Add(1)
				case !ok && pair.allowed:
					broken.Add(1)
				}
				select { // a short pause keeps the loop from eating the CPU
				case <-pctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}

	node := tp.a.Node
	time.Sleep(500 * time.Millisecond)
	node.StopDaemon()
	time.Sleep(2 * time.Second) // the rules must hold with no daemon at all
	must(t, node.StartDaemon())
	must(t, node.WaitDaemonReady(60*time.Second))
	time.Sleep(time.Second)
	stop()
	wg.Wait()

	t.Logf("%d probes during the restart", probes.Load())
	if probes.Load() < 4 {
		t.Fatalf("only %d probes ran", probes.Load())
	}
	if n := leaked.Load(); n > 0 {
		t.Errorf("%d probes of a blocked flow got through during the restart", n)
	}
	if n := broken.Load(); n > 0 {
		t.Errorf("%d probes of an allowed flow failed during the restart", n)
	}
	tp.expect(t, want, tcp80v4, tcp80v6)
}
