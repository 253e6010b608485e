package daemon

// IP plan: the pod frontend/web comes up at 198.18.0.10 and
// 2001:db8:a::10 (its CNI result).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nftwarden/nftwarden/daemon/cniwire"
	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/podwatch"
)

// fakeCNIBackend answers as told and records what it was asked.
type fakeCNIBackend struct {
	mu    sync.Mutex
	calls []string
	// deadline is the context deadline of the last StartPod, left of now.
	deadline time.Duration
	err      error
	// block makes StartPod wait for its context.
	block bool
}

func (f *fakeCNIBackend) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.err
}

func (f *fakeCNIBackend) StartPod(ctx context.Context, ns, name, uid string, addrs []netip.Addr) (enforcer.FlushResult, error) {
	if d, ok := ctx.Deadline(); ok {
		f.mu.Lock()
		f.deadline = time.Until(d)
		f.mu.Unlock()
	}
	err := f.record(fmt.Sprintf("start %s/%s %s %v", ns, name, uid, addrs))
	if f.block {
		<-ctx.Done()
		return enforcer.FlushResult{}, fmt.Errorf("%w (%w)", podwatch.ErrNotReady, ctx.Err())
	}
	return enforcer.FlushResult{Duration: time.Millisecond}, err
}

func (f *fakeCNIBackend) StopPod(_ context.Context, ns, name string, addrs []netip.Addr) (enforcer.FlushResult, error) {
	return enforcer.FlushResult{Duration: time.Millisecond}, f.record(fmt.Sprintf("stop %s/%s %v", ns, name, addrs))
}

func (f *fakeCNIBackend) PodProgrammed(ns, name string, addrs []netip.Addr) error {
	return f.record(fmt.Sprintf("check %s/%s %v", ns, name, addrs))
}

func (f *fakeCNIBackend) snapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// unixClient is an HTTP client of the unix socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

// cniPost sends body to path over c and decodes the answer.
func cniPost(t *testing.T, c *http.Client, path string, body []byte) (int, cniwire.Response) {
	t.Helper()
	resp, err := c.Post("http://nftwarden"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var out cniwire.Response
	if resp.StatusCode != http.StatusMethodNotAllowed {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("decode the answer (%d): %v", resp.StatusCode, err)
		}
	}
	return resp.StatusCode, out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveCNI serves a CNI handler of backend on a socket in a new directory
// and returns a client of it.
func serveCNI(t *testing.T, backend cniBackend, reg prometheus.Registerer) (*http.Client, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "cni.sock")
	ln, err := listenCNISocket(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: newCNIHandler(backend, slog.New(slog.DiscardHandler), newCNIMetrics(reg))}
	var wg sync.WaitGroup
	fatal := make(chan error, 1)
	stop := serveHTTP(&wg, srv, ln, "the CNI socket", fatal)
	t.Cleanup(func() {
		stop()
		wg.Wait()
		select {
		case err := <-fatal:
			t.Error(err)
		default:
		}
	})
	return unixClient(path), path
}

var webReq = cniwire.Request{Namespace: "frontend", Name: "web", UID: "uid-1", ContainerID: "c0ffee",
	IPs: []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("2001:db8:a::10")}}

func tweakReq(f func(*cniwire.Request)) cniwire.Request {
	r := webReq
	f(&r)
	return r
}

func TestCNIHandler(t *testing.T) {
	notProgrammed := errors.New("enforcer: pod frontend/web: 198.18.0.10 not programmed")
	tests := []struct {
		name       string
		path       string
		body       []byte
		backendErr error
		wantStatus int
		wantRetry  bool
		wantCalls  []string
		wantResult string // of nftwarden_cni_requests_total
	}{
		{name: "ADD programs", path: cniwire.PathAdd, body: mustJSON(t, webReq), wantStatus: http.StatusOK,
			wantCalls: []string{"start frontend/web uid-1 [198.18.0.10 2001:db8:a::10]"}, wantResult: "success"},
		{name: "DEL", path: cniwire.PathDel, body: mustJSON(t, webReq), wantStatus: http.StatusOK,
			wantCalls: []string{"stop frontend/web [198.18.0.10 2001:db8:a::10]"}, wantResult: "success"},
		{name: "DEL without addresses", path: cniwire.PathDel, body: mustJSON(t, tweakReq(func(r *cniwire.Request) { r.IPs = nil })),
			wantStatus: http.StatusOK, wantCalls: []string{"stop frontend/web []"}, wantResult: "success"},
		{name: "CHECK programmed", path: cniwire.PathCheck, body: mustJSON(t, webReq), wantStatus: http.StatusOK,
			wantCalls: []string{"check frontend/web [198.18.0.10 2001:db8:a::10]"}, wantResult: "success"},
		{name: "CHECK not programmed", path: cniwire.PathCheck, body: mustJSON(t, webReq), backendErr: notProgrammed,
			wantStatus: http.StatusConflict, wantCalls: []string{"check frontend/web [198.18.0.10 2001:db8:a::10]"}, wantResult: "not_programmed"},
		{name: "CHECK before ready", path: cniwire.PathCheck, body: mustJSON(t, webReq), backendErr: podwatch.ErrNotReady,
			wantStatus: http.StatusServiceUnavailable, wantRetry: true, wantCalls: []string{"check frontend/web [198.18.0.10 2001:db8:a::10]"}, wantResult: "unavailable"},
		{name: "ADD of a pod the API server does not have", path: cniwire.PathAdd, body: mustJSON(t, webReq),
			backendErr: fmt.Errorf("%w: frontend/web", podwatch.ErrPodNotFound),
			wantStatus: http.StatusNotFound, wantCalls: []string{"start frontend/web uid-1 [198.18.0.10 2001:db8:a::10]"}, wantResult: "not_found"},
		{name: "ADD before ready", path: cniwire.PathAdd, body: mustJSON(t, webReq), backendErr: podwatch.ErrNotReady,
			wantStatus: http.StatusServiceUnavailable, wantRetry: true, wantCalls: []string{"start frontend/web uid-1 [198.18.0.10 2001:db8:a::10]"}, wantResult: "unavailable"},
		{name: "ADD whose kernel batch failed", path: cniwire.PathAdd, body: mustJSON(t, webReq), backendErr: fmt.Errorf("%w: netlink", podwatch.ErrFlushFailed),
			wantStatus: http.StatusServiceUnavailable, wantRetry: true, wantCalls: []string{"start frontend/web uid-1 [198.18.0.10 2001:db8:a::10]"}, wantResult: "unavailable"},
		{name: "ADD out of time", path: cniwire.PathAdd, body: mustJSON(t, webReq), backendErr: context.DeadlineExceeded,
			wantStatus: http.StatusServiceUnavailable, wantRetry: true, wantCalls: []string{"start frontend/web uid-1 [198.18.0.10 2001:db8:a::10]"}, wantResult: "unavailable"},
		{name: "ADD the engine refuses", path: cniwire.PathAdd, body: mustJSON(t, webReq), backendErr: errors.New("enforcer: pod frontend/web is on node-b, not node-a"),
			wantStatus: http.StatusUnprocessableEntity, wantCalls: []string{"start frontend/web uid-1 [198.18.0.10 2001:db8:a::10]"}, wantResult: "refused"},
		{name: "not JSON", path: cniwire.PathAdd, body: []byte("{nope"), wantStatus: http.StatusBadRequest, wantResult: "bad_request"},
		{name: "two requests", path: cniwire.PathAdd, body: append(mustJSON(t, webReq), mustJSON(t, webReq)...), wantStatus: http.StatusBadRequest, wantResult: "bad_request"},
		{name: "too large", path: cniwire.PathAdd, body: []byte(`{"namespace":"` + strings.Repeat("a", cniMaxBody) + `"}`), wantStatus: http.StatusBadRequest, wantResult: "bad_request"},
		{name: "no name", path: cniwire.PathAdd, body: mustJSON(t, tweakReq(func(r *cniwire.Request) { r.Name = "" })), wantStatus: http.StatusBadRequest, wantResult: "bad_request"},
		{name: "bad namespace", path: cniwire.PathAdd, body: mustJSON(t, tweakReq(func(r *cniwire.Request) { r.Namespace = "Front_End" })), wantStatus: http.StatusBadRequest, wantResult: "bad_request"},
		{name: "ADD without addresses", path: cniwire.PathAdd, body: mustJSON(t, tweakReq(func(r *cniwire.Request) { r.IPs = nil })), wantStatus: http.StatusBadRequest, wantResult: "bad_request"},
		{name: "bad address", path: cniwire.PathAdd, body: []byte(`{"namespace":"frontend","name":"web","ips":["198.18.0.300"]}`), wantStatus: http.StatusBadRequest, wantResult: "bad_request"},
		{name: "empty address", path: cniwire.PathAdd, body: []byte(`{"namespace":"frontend","name":"web","ips":[""]}`), wantStatus: http.StatusBadRequest, wantResult: "bad_request"},
		{name: "negative timeout", path: cniwire.PathAdd, body: mustJSON(t, tweakReq(func(r *cniwire.Request) { r.Timeout = -time.Second })), wantStatus: http.StatusBadRequest, wantResult: "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			backend := &fakeCNIBackend{err: tc.backendErr}
			reg := prometheus.NewRegistry()
			c, _ := serveCNI(t, backend, reg)
			status, resp := cniPost(t, c, tc.path, tc.body)
			if status != tc.wantStatus || resp.Retry != tc.wantRetry {
				t.Errorf("status %d retry %v (%q), want %d retry %v", status, resp.Retry, resp.Error, tc.wantStatus, tc.wantRetry)
			}
			if (status == http.StatusOK) != (resp.Error == "") {
				t.Errorf("status %d with error %q", status, resp.Error)
			}
			if got := backend.snapshot(); fmt.Sprint(got) != fmt.Sprint(tc.wantCalls) {
				t.Errorf("backend calls %q, want %q", got, tc.wantCalls)
			}
			if status == http.StatusOK && tc.path != cniwire.PathCheck && resp.Programmed <= 0 {
				t.Errorf("Programmed %v, want the time taken", resp.Programmed)
			}
			cmd := strings.TrimPrefix(tc.path, "/v1/cni/")
			if n := requestCount(t, reg, cmd, tc.wantResult); n != 1 {
				t.Errorf("nftwarden_cni_requests_total{command=%q,result=%q} = %v, want 1", cmd, tc.wantResult, n)
			}
		})
	}
}

// requestCount is the value of nftwarden_cni_requests_total{command,result}
// in reg.
func requestCount(t *testing.T, reg *prometheus.Registry, command, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "nftwarden_cni_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["command"] == command && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series command=%q result=%q", command, result)
	return 0
}

func TestCNIHandlerMethodAndPath(t *testing.T) {
	c, _ := serveCNI(t, &fakeCNIBackend{}, prometheus.NewRegistry())
	resp, err := c.Get("http://nftwarden" + cniwire.PathAdd)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %d, want 405", cniwire.PathAdd, resp.StatusCode)
	}
	resp, err = c.Post("http://nftwarden/v1/cni/frob", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST to an unknown path: %d, want 404", resp.StatusCode)
	}
}

// TestCNIHandlerDeadline: the backend gets the request's timeout less the
// margin, and a request that runs out of it is answered 503 before the
// plugin stops waiting.
func TestCNIHandlerDeadline(t *testing.T) {
	backend := &fakeCNIBackend{block: true}
	c, _ := serveCNI(t, backend, prometheus.NewRegistry())
	// Long enough that the reply margin (a tenth: 200 ms) covers a loaded
	// machine's scheduling delays between the budget's end and the answer.
	const timeout = 2 * time.Second
	start := time.Now()
	status, resp := cniPost(t, c, cniwire.PathAdd, mustJSON(t, tweakReq(func(r *cniwire.Request) { r.Timeout = timeout })))
	took := time.Since(start)
	if status != http.StatusServiceUnavailable || !resp.Retry {
		t.Errorf("status %d retry %v (%q), want 503 and retry", status, resp.Retry, resp.Error)
	}
	if took >= timeout {
		t.Errorf("answered after %v, not within the plugin's %v", took, timeout)
	}
	backend.mu.Lock()
	deadline := backend.deadline
	backend.mu.Unlock()
	if want := cniBudget(timeout); deadline > want || deadline < want-100*time.Millisecond {
		t.Errorf("backend's deadline %v from the call, want about %v", deadline, want)
	}
}

func TestCNIBudget(t *testing.T) {
	for _, tc := range []struct{ timeout, want time.Duration }{
		{0, cniDefaultTimeout - cniReplyMargin},
		{10 * time.Second, 9500 * time.Millisecond},
		{time.Second, 900 * time.Millisecond},
		{100 * time.Millisecond, 90 * time.Millisecond},
	} {
		if got := cniBudget(tc.timeout); got != tc.want {
			t.Errorf("cniBudget(%v) = %v, want %v", tc.timeout, got, tc.want)
		}
	}
}

func TestCNISocketListener(t *testing.T) {
	t.Run("modes", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "new", "cni.sock")
		ln, err := listenCNISocket(path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
		}
		di, err := os.Stat(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm() != 0o700 {
			t.Errorf("directory mode %v, want 0700", di.Mode().Perm())
		}
		if _, err := os.Lstat(path + cniSocketTmpSuffix); !os.IsNotExist(err) {
			t.Errorf("the temporary name is left: %v", err)
		}
	})
	t.Run("stale socket replaced", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cni.sock")
		old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		old.SetUnlinkOnClose(false)
		old.Close() // a daemon that is gone
		ln, err := listenCNISocket(path)
		if err != nil {
			t.Fatalf("listen over a stale socket: %v", err)
		}
		defer ln.Close()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("dial the new socket: %v", err)
		}
		c.Close()
	})
	t.Run("live socket refuses a second daemon", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cni.sock")
		first, err := listenCNISocket(path)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if second, err := listenCNISocket(path); err == nil || !strings.Contains(err.Error(), "another nftwarden daemon") {
			if second != nil {
				second.Close()
			}
			t.Fatalf("second listen = %v, want the socket in use", err)
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("the first daemon's socket is gone: %v", err)
		}
		c.Close()
	})
	t.Run("not a socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cni.sock")
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if ln, err := listenCNISocket(path); err == nil || !strings.Contains(err.Error(), "is not a socket") {
			if ln != nil {
				ln.Close()
			}
			t.Fatalf("listen = %v, want not a socket", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "x" {
			t.Error("the file was changed")
		}
	})
	t.Run("close removes the socket, not a successor's", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cni.sock")
		ln, err := listenCNISocket(path)
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("socket left after Close: %v", err)
		}
		a, err := listenCNISocket(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		b, err := listenCNISocket(path)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		a.Close()
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("closing the old listener removed its successor's socket: %v", err)
		}
	})
}

// TestCNIRequestLogged: a failure is logged at warning with the pod and the
// container; a success at debug.
func TestCNIRequestLogged(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	backend := &fakeCNIBackend{}
	path := filepath.Join(t.TempDir(), "cni.sock")
	ln, err := listenCNISocket(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: newCNIHandler(backend, log, newCNIMetrics(prometheus.NewRegistry()))}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer serveHTTP(&wg, srv, ln, "the CNI socket", make(chan error, 1))()
	c := unixClient(path)
	cniPost(t, c, cniwire.PathAdd, mustJSON(t, webReq))
	backend.mu.Lock()
	backend.err = errors.New("refused")
	backend.mu.Unlock()
	cniPost(t, c, cniwire.PathAdd, mustJSON(t, webReq))
	out := logs.String()
	for _, want := range []string{
		`level=DEBUG msg="CNI request" component=cni command=add status=200`,
		`level=WARN msg="CNI request failed" component=cni command=add status=422`,
		"pod=frontend/web container=c0ffee",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// nopCNIBackend programs nothing, at once.
type nopCNIBackend struct{}

func (nopCNIBackend) StartPod(context.Context, string, string, string, []netip.Addr) (enforcer.FlushResult, error) {
	return enforcer.FlushResult{}, nil
}
func (nopCNIBackend) StopPod(context.Context, string, string, []netip.Addr) (enforcer.FlushResult, error) {
	return enforcer.FlushResult{}, nil
}
func (nopCNIBackend) PodProgrammed(string, string, []netip.Addr) error { return nil }

// BenchmarkCNISocketAdd is what the socket adds to an ADD: a connection,
// the request and the answer over the unix socket, the checks, the metrics
// and the log, around a backend that takes no time (the engine's share is
// enforcer's BenchmarkStartPod). Each ADD opens its own connection, as the
// plugin's process does.
func BenchmarkCNISocketAdd(b *testing.B) {
	path := filepath.Join(b.TempDir(), "cni.sock")
	ln, err := listenCNISocket(path)
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: newCNIHandler(nopCNIBackend{}, slog.New(slog.DiscardHandler), newCNIMetrics(prometheus.NewRegistry()))}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer serveHTTP(&wg, srv, ln, "the CNI socket", make(chan error, 1))()
	body, err := json.Marshal(webReq)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c := unixClient(path)
		c.Transport.(*http.Transport).DisableKeepAlives = true
		resp, err := c.Post("http://nftwarden"+cniwire.PathAdd, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		resp.Body.Close()
	}
}
