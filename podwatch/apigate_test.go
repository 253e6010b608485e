package podwatch

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// flakyServer answers 200 on every path while up; while down it answers 503
// (an API server without etcd) or drops the connection (a load balancer with
// no backend), depending on drop.
type flakyServer struct {
	*httptest.Server
	down, drop atomic.Bool
	probes     atomic.Int32
	served     atomic.Int32
}

func newFlakyServer(t *testing.T) *flakyServer {
	s := &flakyServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			s.probes.Add(1)
		}
		if s.down.Load() {
			if s.drop.Load() {
				if hj, ok := rw.(http.Hijacker); ok {
					if c, _, err := hj.Hijack(); err == nil {
						c.Close()
						return
					}
				}
			}
			rw.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		s.served.Add(1)
		_, _ = rw.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return s
}

func gatedClient(g *APIGate) *http.Client {
	// Keep-alives off: every request dials, like a client after an outage.
	return &http.Client{Transport: g.Wrap(&http.Transport{DisableKeepAlives: true})}
}

func TestAPIGateHoldsReadsThroughAnOutage(t *testing.T) {
	for _, drop := range []bool{false, true} {
		name := map[bool]string{false: "503", true: "dropped connections"}[drop]
		t.Run(name, func(t *testing.T) {
			srv := newFlakyServer(t)
			srv.drop.Store(drop)
			g := NewAPIGate(APIGateOptions{
				MinProbeInterval: 10 * time.Millisecond, MaxProbeInterval: 40 * time.Millisecond,
				Logger: testLogger(t),
			})
			defer g.Close()
			hc := gatedClient(g)

			srv.down.Store(true)
			done := make(chan error, 3)
			for range 3 {
				go func() {
					resp, err := hc.Get(srv.URL + "/api/v1/pods")
					if err == nil {
						if resp.StatusCode != http.StatusOK {
							err = errors.New(resp.Status)
						}
						resp.Body.Close()
					}
					done <- err
				}()
			}
			eventually(t, "gate closed", func() bool { return !g.Up() })
			eventually(t, "probing", func() bool { return srv.probes.Load() >= 3 })
			select {
			case err := <-done:
				t.Fatalf("a read returned during the outage: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			srv.down.Store(false)
			for range 3 {
				if err := <-done; err != nil {
					t.Errorf("read after the outage: %v", err)
				}
			}
			if !g.Up() || g.Outages() != 1 {
				t.Errorf("Up() = %v, Outages() = %d; want true, 1", g.Up(), g.Outages())
			}
			// Reads that find the gate closed wait without trying: only
			// those that went out before it closed fail.
			if n := g.Failures(); n < 1 || n > 3 {
				t.Errorf("Failures() = %d, want 1 to 3", n)
			}
		})
	}
}

// TestAPIGateProbesAreBounded: during an outage one probe runs at a time, and
// its interval grows to MaxProbeInterval whatever the number of held reads.
func TestAPIGateProbesAreBounded(t *testing.T) {
	srv := newFlakyServer(t)
	g := NewAPIGate(APIGateOptions{MinProbeInterval: 5 * time.Millisecond, MaxProbeInterval: 50 * time.Millisecond, Logger: testLogger(t)})
	defer g.Close()
	hc := gatedClient(g)
	srv.down.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 20 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/namespaces", nil)
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	const outage = 500 * time.Millisecond
	time.Sleep(outage)
	// 5, 10, 20, 40, then every 40-50 ms: about 13 in 500 ms; 20 held reads
	// probing on their own would make hundreds.
	if n := srv.probes.Load(); n > 20 {
		t.Errorf("%d probes in %v with 20 held reads, want at most 20", n, outage)
	}
	cancel()
}

func TestAPIGatePassesWritesAndCancellations(t *testing.T) {
	srv := newFlakyServer(t)
	g := NewAPIGate(APIGateOptions{Logger: testLogger(t)})
	defer g.Close()
	hc := gatedClient(g)
	srv.down.Store(true)

	// A write is not held: its error (here the 503) comes back at once.
	resp, err := hc.Post(srv.URL+"/api/v1/namespaces", "application/json", nil)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST answered %s, want the server's 503", resp.Status)
	}
	if g.Up() {
		t.Error("gate still up after a 503")
	}

	// A held read whose caller gives up returns the caller's error.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/pods", nil)
	if _, err := hc.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("held read with an expiring context: err = %v, want context.DeadlineExceeded", err)
	}
}

// TestAPIGateClose: Close releases held reads, which then fail as they would
// without the gate.
func TestAPIGateClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	g := NewAPIGate(APIGateOptions{Logger: testLogger(t)})
	hc := gatedClient(g)
	done := make(chan error, 1)
	go func() {
		_, err := hc.Get("http://" + addr + "/api")
		done <- err
	}()
	eventually(t, "gate closed", func() bool { return !g.Up() })
	g.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("read to a closed port succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("held read not released by Close")
	}
}

// TestAPIGateRetriesAFailingReadSlowly: a read that keeps failing while the
// server answers its probes (the path or the server fails that one request)
// is retried with a growing pause, not in a loop.
func TestAPIGateRetriesAFailingReadSlowly(t *testing.T) {
	var tries atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			return // up
		}
		tries.Add(1)
		rw.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	g := NewAPIGate(APIGateOptions{MinProbeInterval: 10 * time.Millisecond, MaxProbeInterval: 100 * time.Millisecond, Logger: testLogger(t)})
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/pods", nil)
	if _, err := gatedClient(g).Do(req); err == nil {
		t.Fatal("a read the server always refuses succeeded")
	}
	// Pauses of 10, 20, 40, 80, 100, 100... ms: about 8 tries in 500 ms; a
	// loop would make hundreds.
	if n := tries.Load(); n < 2 || n > 15 {
		t.Errorf("%d tries in 500 ms, want a handful", n)
	}
}

// TestAPIGateWaitsForReadiness: a restarted API server serves before it lets
// anyone in (403 until its authorizer has loaded the RBAC bindings). A held
// read goes out only once /readyz answers 200, so it never meets that 403
// (which would send its informer into client-go's backoff); a server that
// never shows /readyz to the client is taken as up after the grace period.
func TestAPIGateWaitsForReadiness(t *testing.T) {
	for _, tc := range []struct {
		name      string
		readyzFor time.Duration // /readyz answers 403 this long after the return, then 200 (0: never)
	}{
		{name: "authorizer warming up", readyzFor: 300 * time.Millisecond},
		{name: "readiness never shown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var down atomic.Bool
			var back atomic.Int64 // when the server returned (UnixNano)
			var forbidden atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				if down.Load() {
					rw.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				warming := time.Since(time.Unix(0, back.Load())) < 300*time.Millisecond
				if r.URL.Path == "/readyz" && (tc.readyzFor == 0 || warming) {
					rw.WriteHeader(http.StatusForbidden)
					return
				}
				if warming {
					forbidden.Add(1)
					rw.WriteHeader(http.StatusForbidden)
					return
				}
				_, _ = rw.Write([]byte("ok"))
			}))
			defer srv.Close()
			g := NewAPIGate(APIGateOptions{MinProbeInterval: 10 * time.Millisecond, MaxProbeInterval: 20 * time.Millisecond,
				HiddenReadinessGrace: 500 * time.Millisecond, Logger: testLogger(t)})
			defer g.Close()
			down.Store(true)
			done := make(chan int, 1)
			go func() {
				resp, err := gatedClient(g).Get(srv.URL + "/api/v1/pods")
				if err != nil {
					done <- 0
					return
				}
				resp.Body.Close()
				done <- resp.StatusCode
			}()
			eventually(t, "gate closed", func() bool { return !g.Up() })
			back.Store(time.Now().UnixNano())
			down.Store(false)
			if code := <-done; code != http.StatusOK {
				t.Errorf("held read answered %d, want 200 (it went out while the server still denied everyone)", code)
			}
			if n := forbidden.Load(); n != 0 {
				t.Errorf("%d reads let out while the server denied them", n)
			}
		})
	}
}

// TestAPIGateExpiresHeldWatches: a watch held through an outage is answered
// 410 Expired after ExpireHeldWatchesAfter, which client-go reads as a watch
// from a resource version the server no longer has (its informer relists);
// a list stays held until the server is back.
func TestAPIGateExpiresHeldWatches(t *testing.T) {
	srv := newFlakyServer(t)
	g := NewAPIGate(APIGateOptions{MinProbeInterval: 10 * time.Millisecond, MaxProbeInterval: 20 * time.Millisecond,
		ExpireHeldWatchesAfter: 100 * time.Millisecond, Logger: testLogger(t)})
	defer g.Close()
	cfg := &rest.Config{Host: srv.URL}
	cfg.Wrap(g.Wrap)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.down.Store(true)
	// The first read fails at the server and closes the gate.
	listed := make(chan error, 1)
	go func() {
		_, err := client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
		listed <- err
	}()
	eventually(t, "gate closed", func() bool { return !g.Up() })
	_, err = client.CoreV1().Pods("").Watch(context.Background(), metav1.ListOptions{ResourceVersion: "42"})
	if !apierrors.IsResourceExpired(err) {
		t.Errorf("held watch: err = %v, want a 410 Expired client-go recognises", err)
	}
	// A streaming list (a watch from the current state) is held like a list:
	// refused, the reflector would ask again at once.
	streamed := make(chan error, 1)
	go func() {
		w, err := client.CoreV1().Pods("").Watch(context.Background(), metav1.ListOptions{SendInitialEvents: new(true),
			ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, AllowWatchBookmarks: true})
		if w != nil {
			w.Stop()
		}
		streamed <- err
	}()
	select {
	case err := <-listed:
		t.Fatalf("the list returned during the outage: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	select {
	case err := <-streamed:
		t.Fatalf("the streaming list returned during the outage: %v", err)
	default:
	}
	srv.down.Store(false)
	// The fake server answers "ok", which is no PodList: a decoding error
	// proves the list went out to the server.
	if err := <-listed; err == nil || apierrors.IsResourceExpired(err) {
		t.Errorf("list after the outage: err = %v, want the server's (undecodable) answer", err)
	}
	if err := <-streamed; apierrors.IsResourceExpired(err) {
		t.Errorf("streaming list after the outage: err = %v, want it sent to the server", err)
	}
}
