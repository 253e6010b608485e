package podwatch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of APIGateOptions.
const (
	DefaultMinProbeInterval = 100 * time.Millisecond
	DefaultMaxProbeInterval = 500 * time.Millisecond
	DefaultOutageLogEvery   = 10 * time.Second
	// DefaultExpireHeldWatchesAfter: longer than a blip of the network, in
	// which a resumed watch costs the server less than a relist; shorter than
	// any restart of the API server.
	DefaultExpireHeldWatchesAfter = 5 * time.Second
	// probeTimeout lets a probe's connect see the first SYN retransmission
	// (1 s), so that a server that returns just after a probe began is
	// found by that probe.
	probeTimeout = 1500 * time.Millisecond
)

// APIGate holds the API client's reads while the API server is unreachable and
// lets them through as soon as it answers again. Install it with
// rest.Config.Wrap(gate.Wrap) before building the clientset.
//
// Why: client-go's reflectors back off after every failed list or watch (0.8 s
// doubling to 30 s, with up to 100% jitter, reset only after two quiet
// minutes), so after an outage of a minute an informer may sleep most of a
// minute after the server is back before it relists, and every change made
// meanwhile waits that long to be enforced. A read held here does not fail, so
// it never feeds that backoff: it goes out again within one probe interval of
// the server's return. Meanwhile one probe of /readyz runs at a time, at most
// once per MaxProbeInterval once the outage lasts: the gate neither spins nor
// lets each waiting informer knock on its own.
//
// Only reads without a body (GET, HEAD) are held and retried; other requests
// pass through and report their errors as usual. A read fails the gate when
// the transport fails (connection refused or reset, TLS or timeout errors: the
// server or the path to it is down) or the server answers 502 or 503 (a load
// balancer without backends, an API server without etcd). Requests cancelled
// by their caller are not failures.
type APIGate struct {
	opts APIGateOptions
	up   atomic.Bool
	// Counters for metrics: failed requests and outages since creation.
	failuresTotal, outagesTotal atomic.Uint64

	mu       sync.Mutex
	open     chan struct{} // closed while the server is taken to be up
	since    time.Time     // start of the current outage; zero while up
	failures int           // failed requests of the current outage
	lastLog  time.Time
	probing  bool
	delay    time.Duration // next wait between probes
	closed   bool
	stop     chan struct{}
}

// APIGateOptions configure an APIGate. The zero value is usable.
type APIGateOptions struct {
	// MinProbeInterval is the wait after the first failed probe of an
	// outage; it doubles up to MaxProbeInterval (with jitter), which bounds
	// the time from the server's return to the held reads going out. The
	// first probe runs at once. Defaults: DefaultMinProbeInterval,
	// DefaultMaxProbeInterval.
	MinProbeInterval, MaxProbeInterval time.Duration
	// OutageLogEvery is the interval between two "still unreachable" log
	// lines (default DefaultOutageLogEvery).
	OutageLogEvery time.Duration
	// HiddenReadinessGrace: probes that find the server serving but not
	// showing its readiness (401, 403, 404) open the gate only after this
	// long (default DefaultHiddenReadinessGrace).
	HiddenReadinessGrace time.Duration
	// ExpireHeldWatchesAfter: a watch held this long into an outage is
	// answered 410 Expired, so that its informer relists at the server's
	// return instead of waiting out client-go's backoff after the server
	// refuses the stale watch (see expiredWatch). Default
	// DefaultExpireHeldWatchesAfter.
	ExpireHeldWatchesAfter time.Duration
	// Logger is optional; nil means slog.Default().
	Logger *slog.Logger
}

// NewAPIGate returns an open gate: the server is taken to be up until a
// request fails.
func NewAPIGate(opts APIGateOptions) *APIGate {
	if opts.MinProbeInterval <= 0 {
		opts.MinProbeInterval = DefaultMinProbeInterval
	}
	if opts.MaxProbeInterval <= 0 {
		opts.MaxProbeInterval = DefaultMaxProbeInterval
	}
	opts.MaxProbeInterval = max(opts.MaxProbeInterval, opts.MinProbeInterval)
	if opts.ExpireHeldWatchesAfter <= 0 {
		opts.ExpireHeldWatchesAfter = DefaultExpireHeldWatchesAfter
	}
	if opts.HiddenReadinessGrace <= 0 {
		opts.HiddenReadinessGrace = DefaultHiddenReadinessGrace
	}
	if opts.OutageLogEvery <= 0 {
		opts.OutageLogEvery = DefaultOutageLogEvery
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	g := &APIGate{opts: opts, open: make(chan struct{}), delay: opts.MinProbeInterval, stop: make(chan struct{})}
	close(g.open)
	g.up.Store(true)
	return g
}

// Up reports whether the API server is taken to be reachable (no failed
// request since the last successful answer or probe).
func (g *APIGate) Up() bool { return g.up.Load() }

// Failures counts the requests that failed because the server was
// unreachable (transport errors, 502, 503) since the gate was created.
func (g *APIGate) Failures() uint64 { return g.failuresTotal.Load() }

// Outages counts the outages the gate has seen begin.
func (g *APIGate) Outages() uint64 { return g.outagesTotal.Load() }

// Close stops a running probe and opens the gate for good: held reads go out
// and fail or succeed as they would without it.
func (g *APIGate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	g.closed = true
	close(g.stop)
	if !g.since.IsZero() {
		close(g.open)
	}
}

// Wrap returns rt with the gate in front of it (a transport.WrapperFunc).
func (g *APIGate) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) { return g.roundTrip(rt, req) })
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (g *APIGate) roundTrip(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	held := (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody)
	// retry is the pause before sending a held read again that failed although
	// the probe found the server up (a request the path or the server keeps
	// failing): it doubles up to MaxProbeInterval, so that such a read is
	// retried at most about once per interval instead of in a loop.
	var retry time.Duration
	for attempt := 0; ; attempt++ {
		if held {
			expired, err := g.wait(req.Context(), isWatch(req))
			if err != nil {
				return nil, fmt.Errorf("waiting for the API server to answer again: %w", err)
			}
			if expired {
				return expiredWatch(req), nil
			}
			if attempt > 1 {
				retry = min(max(2*retry, g.opts.MinProbeInterval), g.opts.MaxProbeInterval)
				select {
				case <-req.Context().Done():
					return nil, fmt.Errorf("waiting to retry a read of the API server: %w", req.Context().Err())
				case <-time.After(retry):
				}
			}
		}
		resp, err := rt.RoundTrip(req)
		cause := failure(req, resp, err)
		if cause == nil {
			g.succeeded()
			return resp, err
		}
		g.failed(rt, req, cause)
		if !held || g.isClosed() {
			return resp, err
		}
		if resp != nil {
			// Drain so that the connection can be reused, then try again.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
	}
}

// failure says why a round trip counts as "the server is unreachable", or nil.
func failure(req *http.Request, resp *http.Response, err error) error {
	switch {
	case err != nil && req.Context().Err() != nil:
		return nil // cancelled by the caller (a closed watch, shutdown)
	case err != nil:
		return err
	case resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusServiceUnavailable:
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// wait blocks while the gate is closed. A watch held there for longer than
// ExpireHeldWatchesAfter into the outage returns expired instead (see
// expiredWatch).
func (g *APIGate) wait(ctx context.Context, watch bool) (expired bool, err error) {
	g.mu.Lock()
	open, since := g.open, g.since
	g.mu.Unlock()
	var expire <-chan time.Time
	if watch && !since.IsZero() {
		t := time.NewTimer(time.Until(since.Add(g.opts.ExpireHeldWatchesAfter)))
		defer t.Stop()
		expire = t.C
	}
	select {
	case <-open:
		return false, nil
	case <-expire:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// isWatch reports whether req resumes a watch (a GET with watch=true). A
// watch that starts with the current state (sendInitialEvents=true, client-go's
// streaming list) is a list, and is held like one: refusing it would only make
// the reflector ask again at once.
func isWatch(req *http.Request) bool {
	q := req.URL.Query()
	w, initial := q.Get("watch"), q.Get("sendInitialEvents")
	return (w == "true" || w == "1") && initial != "true"
}

// expiredWatch answers a held watch as an API server answers a watch from a
// resource version it no longer has: 410 Gone, reason Expired.
//
// Why: after a restart of the API server (or of etcd), its watch cache begins
// anew, so the watch an informer resumes from its last resource version is
// refused as too old the moment the server is back; client-go's reflector then
// waits 0.8 to 1.6 s (its backoff after any ended watch) before it relists,
// and changes wait with it. Refused while the outage lasts, the reflector
// waits out that pause during the outage and comes back with a list, which
// the gate holds and lets out at the server's return. The price is a relist
// after an outage of more than ExpireHeldWatchesAfter even when the server
// kept its watch cache (a partition): what client-go does anyway once the
// outage outlasts the cache's window of events.
func expiredWatch(req *http.Request) *http.Response {
	body := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",` +
		`"message":"watch held by nftwarden's API gate through an outage: relist","reason":"Expired","code":410}`
	return &http.Response{
		Status:        "410 Gone",
		StatusCode:    http.StatusGone,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

func (g *APIGate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// failed closes the gate (the first failure of an outage), logs the outage
// now and then, and starts the probe unless one runs.
func (g *APIGate) failed(rt http.RoundTripper, req *http.Request, cause error) {
	g.failuresTotal.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	now := time.Now()
	g.failures++
	if g.since.IsZero() {
		g.since = now
		g.outagesTotal.Add(1)
		g.open = make(chan struct{})
		g.up.Store(false)
		g.lastLog = now
		g.opts.Logger.Warn("API server unreachable; holding reads and probing it (the programmed rules stay in place)",
			"server", req.URL.Host, "request", req.Method+" "+req.URL.Path, "error", cause)
	} else if now.Sub(g.lastLog) >= g.opts.OutageLogEvery {
		g.lastLog = now
		g.opts.Logger.Warn("API server still unreachable; the programmed rules stay in place",
			"server", req.URL.Host, "since", g.since.Format(time.RFC3339), "outage", now.Sub(g.since).Round(time.Second),
			"failed_requests", g.failures, "error", cause)
	}
	if !g.probing {
		g.probing = true
		go g.probe(rt, req)
	}
}

// succeeded records an answer: the probe backoff starts over, and a gate that
// was closed (a request that was not held got through) opens.
func (g *APIGate) succeeded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.delay = g.opts.MinProbeInterval
	if !g.since.IsZero() && !g.closed {
		g.reopenLocked()
	}
}

func (g *APIGate) reopenLocked() {
	outage := time.Since(g.since)
	g.opts.Logger.Info("API server reachable again", "outage", outage.Round(time.Millisecond), "failed_requests", g.failures)
	g.since, g.failures = time.Time{}, 0
	close(g.open)
	g.up.Store(true)
}

// probe asks the server's /readyz, with the authorization of the request that
// failed, until it answers or the gate is closed. The first probe goes out at
// once: a single reset connection should not hold reads for long.
func (g *APIGate) probe(rt http.RoundTripper, failed *http.Request) {
	u := *failed.URL
	u.Path, u.RawPath, u.RawQuery = "/readyz", "", ""
	header := http.Header{}
	for _, h := range []string{"Authorization", "User-Agent"} {
		if v := failed.Header.Get(h); v != "" {
			header.Set(h, v)
		}
	}
	var hiddenSince time.Time
	for {
		answer := g.probeOnce(rt, u.String(), header)
		switch {
		case answer != probeHidden:
			hiddenSince = time.Time{}
		case hiddenSince.IsZero():
			hiddenSince = time.Now()
		}
		if answer == probeReady || (answer == probeHidden && time.Since(hiddenSince) >= g.opts.HiddenReadinessGrace) {
			g.mu.Lock()
			g.probing = false
			if !g.since.IsZero() && !g.closed {
				g.reopenLocked()
			}
			g.mu.Unlock()
			return
		}
		g.mu.Lock()
		wait := g.delay
		g.delay = min(2*g.delay, g.opts.MaxProbeInterval)
		g.mu.Unlock()
		// Up to 20% less, so that the nodes of a cluster spread their probes.
		wait -= time.Duration(rand.Int64N(int64(wait)/5 + 1))
		select {
		case <-g.stop:
			g.mu.Lock()
			g.probing = false
			g.mu.Unlock()
			return
		case <-time.After(wait):
		}
	}
}

// What a probe of /readyz found.
type probeAnswer int

const (
	probeDown   probeAnswer = iota // no answer, or not ready (5xx)
	probeReady                     // 200
	probeHidden                    // 401, 403, 404: serving, readiness not shown to us
)

// DefaultHiddenReadinessGrace is how long probes must find the server serving
// but hiding its readiness before the gate opens anyway. A restarted API server denies
// every request (403) until its authorizer has loaded the RBAC bindings; a
// read let out then would fail and send its informer into client-go's
// backoff. Only a cluster that never shows /readyz to the daemon pays this
// wait, once per outage.
const DefaultHiddenReadinessGrace = 10 * time.Second

// probeOnce asks /readyz once.
func (g *APIGate) probeOnce(rt http.RoundTripper, url string, header http.Header) probeAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return probeDown
	}
	req.Header = header.Clone()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return probeDown
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return probeReady
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return probeHidden
	}
	return probeDown
}
