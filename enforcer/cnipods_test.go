package enforcer_test

// IP plan: the base world of semantics_test.go (node-a's engine, the base
// policies of incremental_test.go), and pods that the CNI path brings up on
// node-a:
//
//	198.18.1.40, 2001:db8:1::40   prod/web2 (app=web: isolated for ingress by prod/web)
//	198.18.1.41                   prod/web2's address in a status that disagrees
//	198.18.1.42                   prod/web2's address in a new sandbox
//	198.18.1.50                   prod/cli2 (app=cli: a peer prod/web admits)
//	198.18.2.40                   prod/far, a pod of node-b
//	198.19.1.5                    a host outside the cluster that no policy admits

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

var (
	web2v4, web2v6 = netip.MustParseAddr("198.18.1.40"), netip.MustParseAddr("2001:db8:1::40")
	web2Status     = netip.MustParseAddr("198.18.1.41")
	web2New        = netip.MustParseAddr("198.18.1.42")
	cli2v4         = netip.MustParseAddr("198.18.1.50")
	outsider       = netip.MustParseAddr("198.19.1.5")
	prodWeb        = netip.MustParseAddr("198.18.1.10")
)

// recordedLogs keeps the messages an engine logs, for the tests that count
// warnings.
type recordedLogs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *recordedLogs) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordedLogs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *recordedLogs) WithGroup(string) slog.Handler            { return l }
func (l *recordedLogs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

// count returns how many messages contain s.
func (l *recordedLogs) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// cniWorld is node-a's engine over dp with the base world and policies,
// flushed, logging into logs.
type cniWorld struct {
	t    *testing.T
	e    *enforcer.Engine
	f    *nft.Fake
	logs *recordedLogs
}

func newCNIWorld(t *testing.T, dp nft.Dataplane, f *nft.Fake) *cniWorld {
	t.Helper()
	logs := &recordedLogs{}
	e := loadBaseLogging(t, dp, slog.New(logs))
	return &cniWorld{t: t, e: e, f: f, logs: logs}
}

func newFakeCNIWorld(t *testing.T) *cniWorld {
	f := nft.NewFake(nft.DefaultTable)
	return newCNIWorld(t, f, f)
}

// web2 is the pod prod/web2 of node-a as the API server has it (no status
// IPs unless a tweak adds them).
func web2(tweaks ...podTweak) *enforcer.Pod {
	return enforcer.NewPod(mkPod("prod", "web2", append([]podTweak{podLabels("app", "web")}, tweaks...)...))
}

func (w *cniWorld) start(p *enforcer.Pod, addrs ...netip.Addr) {
	w.t.Helper()
	if _, err := w.e.StartPod(context.Background(), p, addrs); err != nil {
		w.t.Fatalf("StartPod %s/%s %v: %v", p.Namespace(), p.Name(), addrs, err)
	}
}

func (w *cniWorld) stop(ns, name string, addrs ...netip.Addr) {
	w.t.Helper()
	if _, err := w.e.StopPod(context.Background(), ns, name, addrs); err != nil {
		w.t.Fatalf("StopPod %s/%s %v: %v", ns, name, addrs, err)
	}
}

func (w *cniWorld) upsert(p *enforcer.Pod) {
	w.t.Helper()
	if err := w.e.UpsertParsedPod(p); err != nil {
		w.t.Fatalf("upsert %s/%s: %v", p.Namespace(), p.Name(), err)
	}
	if _, err := w.e.Flush(context.Background()); err != nil {
		w.t.Fatal(err)
	}
}

// traced reports whether the first packet of a TCP connection from src to
// dst:port gets through the Fake's table, and checks that Decide agrees.
func (w *cniWorld) traced(src, dst netip.Addr, port uint16) bool {
	w.t.Helper()
	fl := enforcer.Flow{Src: src, Dst: dst, Protocol: corev1.ProtocolTCP, Port: port}
	ok, path := enforcer.TraceFlow(w.f, fl)
	if d := w.e.Decide(fl); d.Allowed != ok {
		w.t.Errorf("%v -> %v:%d: traced %v (%s), Decide %v (%s)", src, dst, port, ok, path, d.Allowed, d.Reason)
	}
	return ok
}

// TestCNIPodAddresses: the addresses the engine gives a local pod across
// StartPod, status upserts, StopPod and DeletePod, and that the compiled
// table (traced in the Fake) uses exactly those.
func TestCNIPodAddresses(t *testing.T) {
	label := podLabels("app", "web", "rev", "2") // a change that keeps the status as it was
	cases := []struct {
		name  string
		steps func(w *cniWorld)
		want  []netip.Addr // the pod's addresses at the end
		// mismatches is how many "the status wins" warnings were logged.
		mismatches int
	}{
		{
			name: "announced addresses are the pod's",
			steps: func(w *cniWorld) {
				w.start(web2(), web2v4, web2v6)
			},
			want: []netip.Addr{web2v4, web2v6},
		},
		{
			name: "a status without IPs keeps the announced addresses",
			steps: func(w *cniWorld) {
				w.start(web2(), web2v4)
				w.upsert(web2(label))
			},
			want: []netip.Addr{web2v4},
		},
		{
			name: "a status with the announced IPs ends the announcement quietly",
			steps: func(w *cniWorld) {
				w.start(web2(), web2v4)
				w.upsert(web2(podIPs("198.18.1.40")))
				w.upsert(web2(label)) // no IPs: nothing announced any more
			},
			want: nil,
		},
		{
			name: "a status with other IPs wins, logged once",
			steps: func(w *cniWorld) {
				w.start(web2(), web2v4)
				w.upsert(web2(podIPs("198.18.1.41")))
				w.upsert(web2(podIPs("198.18.1.41"), label))
			},
			want:       []netip.Addr{web2Status},
			mismatches: 1,
		},
		{
			name: "StartPod with a status that disagrees: the status wins",
			steps: func(w *cniWorld) {
				w.start(web2(podIPs("198.18.1.41")), web2v4)
			},
			want:       []netip.Addr{web2Status},
			mismatches: 1,
		},
		{
			name: "StopPod removes the addresses the status still lists",
			steps: func(w *cniWorld) {
				w.upsert(web2(podIPs("198.18.1.41")))
				w.stop("prod", "web2")
				w.upsert(web2(podIPs("198.18.1.41"), label))
			},
			want: nil,
		},
		{
			name: "StopPod of an announced pod",
			steps: func(w *cniWorld) {
				w.start(web2(), web2v4, web2v6)
				w.stop("prod", "web2", web2v4, web2v6)
				w.upsert(web2(label))
			},
			want: nil,
		},
		{
			name: "StopPod is idempotent, unknown pods and addresses included",
			steps: func(w *cniWorld) {
				w.start(web2(), web2v4)
				w.stop("prod", "web2")
				w.stop("prod", "web2")
				w.stop("prod", "web2", web2New)
				w.stop("prod", "nosuchpod", web2v4)
				w.stop("prod", "cli", web2v4) // a pod of node-b: not released here
			},
			want: nil,
		},
		{
			name: "StopPod of one address keeps the other",
			steps: func(w *cniWorld) {
				w.upsert(web2(podIPs("198.18.1.40", "2001:db8:1::40")))
				w.stop("prod", "web2", web2v6)
				w.upsert(web2(podIPs("198.18.1.40", "2001:db8:1::40"), label))
			},
			want: []netip.Addr{web2v4},
		},
		{
			name: "a status with a new address ends the release",
			steps: func(w *cniWorld) {
				w.upsert(web2(podIPs("198.18.1.41")))
				w.stop("prod", "web2")
				w.upsert(web2(podIPs("198.18.1.42")))
				// A later sandbox given the old address again has it.
				w.upsert(web2(podIPs("198.18.1.41")))
			},
			want: []netip.Addr{web2Status},
		},
		{
			name: "StartPod ends the release",
			steps: func(w *cniWorld) {
				w.upsert(web2(podIPs("198.18.1.40")))
				w.stop("prod", "web2")
				w.start(web2(podIPs("198.18.1.40")), web2v4)
			},
			want: []netip.Addr{web2v4},
		},
		{
			name: "DeletePod forgets the announcement",
			steps: func(w *cniWorld) {
				w.start(web2(), web2v4)
				w.e.DeletePod("prod", "web2")
				w.upsert(web2())
			},
			want: nil,
		},
		{
			name: "DeletePod forgets the release",
			steps: func(w *cniWorld) {
				w.upsert(web2(podIPs("198.18.1.41")))
				w.stop("prod", "web2")
				w.e.DeletePod("prod", "web2")
				w.upsert(web2(podIPs("198.18.1.41")))
			},
			want: []netip.Addr{web2Status},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newFakeCNIWorld(t)
			tc.steps(w)
			got, _ := w.e.PodIPs("prod", "web2")
			if !slices.Equal(got, tc.want) {
				t.Fatalf("addresses %v, want %v", got, tc.want)
			}
			if n := w.logs.count("the status wins"); n != tc.mismatches {
				t.Errorf("%d mismatch warnings, want %d", n, tc.mismatches)
			}
			// The pod is isolated for ingress (prod/web selects app=web):
			// the outsider is dropped at exactly its addresses, prod/cli
			// (node-b) admitted.
			for _, a := range []netip.Addr{web2v4, web2v6, web2Status, web2New} {
				isPods := slices.Contains(tc.want, a)
				from := outsider
				if a.Is6() {
					from = netip.MustParseAddr("2001:db8:ff::5")
				}
				if got := w.traced(from, a, 80); got == isPods {
					t.Errorf("outsider -> %v:80 traced %v; the address is the pod's: %v", a, got, isPods)
				}
			}
			for _, a := range tc.want {
				if a.Is4() && !w.traced(netip.MustParseAddr("198.18.2.10"), a, 80) {
					t.Errorf("prod/cli -> %v:80 dropped, prod/web admits it", a)
				}
			}
			checkProgrammed(t, w.f, w.e)
		})
	}
}

// TestStartPodPeerSets: an announced address is in the peer sets of the
// groups its pod belongs to, so policies that admit the pod admit it before
// its status arrives, and leaves them at StopPod.
func TestStartPodPeerSets(t *testing.T) {
	w := newFakeCNIWorld(t)
	cli2 := enforcer.NewPod(mkPod("prod", "cli2", podLabels("app", "cli")))
	if w.traced(cli2v4, prodWeb, 80) {
		t.Fatal("prod/cli2 reaches prod/web before it is started: the address is in no peer set yet, which this test needs")
	}
	w.start(cli2, cli2v4)
	if !w.traced(cli2v4, prodWeb, 80) {
		t.Fatal("prod/cli2 -> prod/web:80 dropped after StartPod: the announced address is not in app=cli's peer set")
	}
	w.stop("prod", "cli2")
	if w.traced(cli2v4, prodWeb, 80) {
		t.Fatal("prod/cli2 -> prod/web:80 allowed after StopPod")
	}
}

// TestStartPodRefuses: what StartPod, StopPod and PodProgrammed refuse, and
// that a refusal changes nothing.
func TestStartPodRefuses(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		pod   *enforcer.Pod
		addrs []netip.Addr
		want  string
	}{
		{"nil pod", nil, []netip.Addr{web2v4}, "nil pod"},
		{"unparsed pod", &enforcer.Pod{}, []netip.Addr{web2v4}, "use NewPod"},
		{"pod of another node", enforcer.NewPod(mkPod("prod", "far", onNode("node-b"))), []netip.Addr{netip.MustParseAddr("198.18.2.40")}, "not this node"},
		{"hostNetwork pod", web2(hostNet()), []netip.Addr{web2v4}, "hostNetwork"},
		{"finished pod", web2(phase(corev1.PodFailed)), []netip.Addr{web2v4}, "finished"},
		{"no addresses", web2(), nil, "no addresses"},
		{"invalid address", web2(), []netip.Addr{{}}, "not a pod address"},
		{"unspecified address", web2(), []netip.Addr{netip.IPv4Unspecified()}, "not a pod address"},
		{"loopback address", web2(), []netip.Addr{netip.MustParseAddr("::1")}, "not a pod address"},
		{"zoned address", web2(), []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}, "not a pod address"},
	}
	w := newFakeCNIWorld(t)
	before := w.f.Operations()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.e.StartPod(ctx, tc.pod, tc.addrs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("StartPod: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, ok := w.e.PodIPs("prod", "web2"); ok {
		t.Error("a refused StartPod stored the pod")
	}
	if _, err := w.e.StopPod(ctx, "prod", "web2", []netip.Addr{{}}); err == nil {
		t.Error("StopPod took an invalid address")
	}
	if w.f.Operations() != before {
		t.Errorf("refusals sent %d operations", w.f.Operations()-before)
	}

	t.Run("model-only engine", func(t *testing.T) {
		e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.StartPod(ctx, web2(), []netip.Addr{web2v4}); !errors.Is(err, enforcer.ErrNoDataplane) {
			t.Errorf("StartPod: %v, want ErrNoDataplane", err)
		}
		if _, err := e.StopPod(ctx, "prod", "web2", nil); !errors.Is(err, enforcer.ErrNoDataplane) {
			t.Errorf("StopPod: %v, want ErrNoDataplane", err)
		}
	})
}

// TestCNIBeforeFirstSync: before the first successful Flush or Reconcile
// the API refuses with ErrNotSynced and changes nothing; after it, it works.
func TestCNIBeforeFirstSync(t *testing.T) {
	ctx := context.Background()
	f := nft.NewFake(nft.DefaultTable)
	e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Dataplane: f, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	loadBaseWorld(e)
	if _, err := e.StartPod(ctx, web2(), []netip.Addr{web2v4}); !errors.Is(err, enforcer.ErrNotSynced) {
		t.Errorf("StartPod: %v, want ErrNotSynced", err)
	}
	if _, err := e.StopPod(ctx, "prod", "web", nil); !errors.Is(err, enforcer.ErrNotSynced) {
		t.Errorf("StopPod: %v, want ErrNotSynced", err)
	}
	if err := e.PodProgrammed("prod", "web", nil); !errors.Is(err, enforcer.ErrNotSynced) {
		t.Errorf("PodProgrammed: %v, want ErrNotSynced", err)
	}
	if len(f.Transactions()) != 0 {
		t.Fatal("the refused calls reached the dataplane")
	}
	if ips, _ := e.PodIPs("prod", "web"); len(ips) != 2 {
		t.Fatalf("StopPod before the first sync released addresses: %v", ips)
	}
	// A first reconcile that fails does not count.
	f.FailNext(errNetlink)
	if _, err := e.Flush(ctx); err == nil {
		t.Fatal("the failing first flush succeeded")
	}
	if _, err := e.StartPod(ctx, web2(), []netip.Addr{web2v4}); !errors.Is(err, enforcer.ErrNotSynced) {
		t.Errorf("StartPod after a failed first flush: %v, want ErrNotSynced", err)
	}
	if _, err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.StartPod(ctx, web2(), []netip.Addr{web2v4}); err != nil {
		t.Fatalf("StartPod after the first sync: %v", err)
	}
	if err := e.PodProgrammed("prod", "web2", []netip.Addr{web2v4}); err != nil {
		t.Fatalf("PodProgrammed after StartPod: %v", err)
	}
}

// TestPodProgrammed: what PodProgrammed says before and after a flush, after
// a failed one, and of pods and addresses it cannot vouch for.
func TestPodProgrammed(t *testing.T) {
	ctx := context.Background()
	dp := &flakyDataplane{Fake: nft.NewFake(nft.DefaultTable)}
	w := newCNIWorld(t, dp, dp.Fake)
	e := w.e
	check := func(step, ns, name string, addrs []netip.Addr, want string) {
		t.Helper()
		err := e.PodProgrammed(ns, name, addrs)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: PodProgrammed(%s/%s, %v): %v, want nil", step, ns, name, addrs, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: PodProgrammed(%s/%s, %v): %v, want an error with %q", step, ns, name, addrs, err, want)
		}
	}
	// The base world, flushed.
	check("base", "prod", "web", []netip.Addr{prodWeb}, "")
	check("base", "prod", "web", nil, "")
	check("base", "prod", "web", []netip.Addr{web2v4}, "does not have address 198.18.1.40")
	check("base", "prod", "nosuchpod", nil, "not in the model")
	check("base", "prod", "cli", nil, "not this node")
	check("base", "other", "host", nil, "hostNetwork")
	check("base", "other", "done", nil, "finished")
	check("base", "other", "noip", nil, "no address")
	check("base", "prod", "web", []netip.Addr{{}}, "not a pod address")

	// An upsert not flushed yet.
	if err := e.UpsertParsedPod(web2(podIPs("198.18.1.40"))); err != nil {
		t.Fatal(err)
	}
	check("upserted", "prod", "web2", []netip.Addr{web2v4}, "not programmed yet")
	if _, err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check("flushed", "prod", "web2", []netip.Addr{web2v4}, "")

	// A change whose flush fails is not programmed until a flush succeeds.
	if err := e.UpsertParsedPod(web2(podIPs("198.18.1.40", "2001:db8:1::40"))); err != nil {
		t.Fatal(err)
	}
	dp.set(func(d *flakyDataplane) { d.failures = 1 })
	if _, err := e.Flush(ctx); !errors.Is(err, errNetlink) {
		t.Fatalf("flush: %v, want the dataplane's failure", err)
	}
	check("failed flush", "prod", "web2", []netip.Addr{web2v4}, "not programmed yet")
	if _, err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check("reconciled", "prod", "web2", []netip.Addr{web2v4}, "")

	// StartPod returns the failure of its batch, and the pod is not
	// programmed; the next StartPod reconciles.
	dp.set(func(d *flakyDataplane) { d.failures = 1 })
	cli2 := enforcer.NewPod(mkPod("prod", "cli2", podLabels("app", "cli")))
	if _, err := e.StartPod(ctx, cli2, []netip.Addr{cli2v4}); !errors.Is(err, errNetlink) {
		t.Fatalf("StartPod over a failing dataplane: %v, want its failure", err)
	}
	check("failed StartPod", "prod", "cli2", []netip.Addr{cli2v4}, "not programmed yet")
	// The model has the pod (Decide admits it); the table does not.
	if ok, _ := enforcer.TraceFlow(dp.Fake, enforcer.Flow{Src: cli2v4, Dst: prodWeb, Protocol: corev1.ProtocolTCP, Port: 80}); ok {
		t.Error("prod/cli2 admitted although its batch failed")
	}
	res, err := e.StartPod(ctx, cli2, []netip.Addr{cli2v4})
	if err != nil || !res.Full {
		t.Fatalf("StartPod after the failure: %+v, %v; want a full reconcile", res, err)
	}
	check("StartPod retried", "prod", "cli2", []netip.Addr{cli2v4}, "")
	if !w.traced(cli2v4, prodWeb, 80) {
		t.Error("prod/cli2 dropped after StartPod succeeded")
	}

	// A released pod has no address.
	w.stop("prod", "cli2")
	check("stopped", "prod", "cli2", []netip.Addr{cli2v4}, "no address")
	checkProgrammed(t, dp.Fake, e)
}

// TestStartPodWaitsWithinContext: while another caller's batch is in the
// dataplane, StartPod waits for its turn no longer than its context allows,
// and the change it made is carried by the next batch.
func TestStartPodWaitsWithinContext(t *testing.T) {
	w := newFakeCNIWorld(t)
	if err := w.e.UpsertParsedPod(web2(podIPs("198.18.1.41"))); err != nil {
		t.Fatal(err)
	}
	entered, release := w.f.BlockApply()
	defer release()
	flushed := make(chan error, 1)
	go func() {
		_, err := w.e.Flush(context.Background())
		flushed <- err
	}()
	receiveWithin(t, entered, "the held flush")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	cli2 := enforcer.NewPod(mkPod("prod", "cli2", podLabels("app", "cli")))
	if _, err := w.e.StartPod(ctx, cli2, []netip.Addr{cli2v4}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("StartPod behind a held batch: %v, want DeadlineExceeded", err)
	}
	if err := w.e.PodProgrammed("prod", "cli2", []netip.Addr{cli2v4}); err == nil {
		t.Fatal("PodProgrammed vouches for a pod whose batch never ran")
	}
	release()
	if err := receiveWithin(t, flushed, "the held flush"); err != nil {
		t.Fatal(err)
	}
	w.start(cli2, cli2v4)
	if err := w.e.PodProgrammed("prod", "cli2", []netip.Addr{cli2v4}); err != nil {
		t.Fatal(err)
	}
}

// TestStartPodConcurrent: StartPods, StopPods and a Flush loop at once
// (run with -race); each StartPod's return means its pod is in the table:
// the outsider is dropped at its address.
func TestStartPodConcurrent(t *testing.T) {
	w := newFakeCNIWorld(t)
	stopFlushing := flushLoop(t, w.e)
	const pods = 40
	var wg sync.WaitGroup
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "web-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			addr := netip.AddrFrom4([4]byte{198, 18, 1, byte(100 + i)})
			p := enforcer.NewPod(mkPod("prod", name, podLabels("app", "web")))
			if _, err := w.e.StartPod(context.Background(), p, []netip.Addr{addr}); err != nil {
				t.Errorf("StartPod %s: %v", name, err)
				return
			}
			fl := enforcer.Flow{Src: outsider, Dst: addr, Protocol: corev1.ProtocolTCP, Port: 80}
			if ok, path := enforcer.TraceFlow(w.f, fl); ok {
				t.Errorf("StartPod %s returned before its pod was in the table: %s", name, path)
			}
			if err := w.e.PodProgrammed("prod", name, []netip.Addr{addr}); err != nil {
				t.Errorf("PodProgrammed after StartPod: %v", err)
			}
			if i%4 == 0 {
				if _, err := w.e.StopPod(context.Background(), "prod", name, nil); err != nil {
					t.Errorf("StopPod %s: %v", name, err)
				}
				if ok, _ := enforcer.TraceFlow(w.f, fl); !ok {
					t.Errorf("StopPod %s returned before its address left the table", name)
				}
			}
		}()
	}
	wg.Wait()
	stopFlushing()
	checkProgrammed(t, w.f, w.e)
}

// flushLoop flushes e over and over, as a daemon's worker would beside the
// calls under test, until the returned function is called.
func flushLoop(t *testing.T, e *enforcer.Engine) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var loop sync.WaitGroup
	loop.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := e.Flush(context.Background()); err != nil {
				t.Errorf("flush loop: %v", err)
				return
			}
		}
	})
	return func() { close(done); loop.Wait() }
}
