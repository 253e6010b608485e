package enforcer_test

// IP plan: pods cli-<i> at 198.18.3.<i> (and 2001:db8:3::<i>) on node-b,
// web at 198.18.1.10 on node-a.

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// TestJournaledSetsUnderConcurrentReconciles: pod changes that move
// addresses in and out of the shared tagged sets (journaled, not copied,
// after each reconcile's snapshot) while Flushes and full Reconciles run
// beside them leave the dataplane, the engine's record and the desired
// state equal, and the verdicts those of Decide. Run it with -race: the
// reconcile reads its snapshot's maps without the compiler's lock.
func TestJournaledSetsUnderConcurrentReconciles(t *testing.T) {
	c := newCluster(t, "node-a")
	e, f := c.engines["node-a"], c.fakes["node-a"]
	loadBase(t, c, mkPolicy("prod", "web", selecting(sel("app", "web")),
		ingress(peers(nsPodPeer(sel(), sel("app", "cli")))), ingress(peers(podPeer(sel("app", "cli"))), namedPort(TCP, "http"))))
	ctx := context.Background()
	pod := func(i int, app string) error {
		return e.UpsertPod(mkPod("prod", fmt.Sprintf("cli-%d", i), podLabels("app", app), onNode("node-b"),
			podIPs(fmt.Sprintf("198.18.3.%d", i), fmt.Sprintf("2001:db8:3::%d", i)), containerPort("http", TCP, 8080)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() {
		for i := range 300 {
			app := "cli"
			if i%3 == 0 {
				app = "other"
			}
			if err := pod(1+i%40, app); err != nil {
				errs <- err
				return
			}
			if i%5 == 0 {
				if _, err := e.Flush(ctx); err != nil {
					errs <- err
					return
				}
			}
		}
	})
	wg.Go(func() {
		for range 30 {
			f.MarkTouched() // a full reconcile, with a snapshot, not a trusting flush
			if res, err := e.Reconcile(ctx); err != nil || !res.ReadDataplane {
				errs <- fmt.Errorf("reconcile: %+v, %v; want one that reads the dataplane", res, err)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.flush()
	got, _ := f.Read(ctx)
	if tx := nft.Diff(got, e.Desired(), nil); !tx.Empty() {
		t.Fatalf("the dataplane differs from the desired state by %d operations:\n%s", tx.Size(), tx)
	}
	if tx := nft.Diff(e.Programmed(), e.Desired(), nil); !tx.Empty() {
		t.Fatalf("the engine's record differs from the desired state by %d operations:\n%s", tx.Size(), tx)
	}
	if res, err := e.Reconcile(ctx); err != nil || res.Operations != 0 {
		t.Errorf("a reconcile after the last flush: %+v, %v; want nothing to do", res, err)
	}
	for i := 1; i <= 40; i++ {
		for _, src := range []string{fmt.Sprintf("198.18.3.%d", i), fmt.Sprintf("2001:db8:3::%d", i)} {
			dst := "prod/web"
			if src[0] == '2' {
				dst += "@6"
			}
			fl := enforcer.Flow{Src: c.endpoint(src), Dst: c.endpoint(dst), Protocol: TCP, Port: 8080}
			c.checkFlow(src, dst, TCP, 8080, e.Decide(fl).Allowed)
		}
	}
}
