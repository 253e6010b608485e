package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"

	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/podwatch"
)

// runCommand is `nftwarden run`: it checks the environment, opens the kernel
// dataplane and the API client, and runs the daemon until SIGTERM or SIGINT.
func runCommand(ctx context.Context, cfg runConfig, log *slog.Logger) error {
	routeClientGoLogs(log)

	if err := requireNetAdmin(); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	setHTTP2HealthDefaults()
	clients, gate, err := gatedClient(cfg.Kubeconfig, log)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer gate.Close()
	// The listeners are served (and closed) by the daemon; until it runs,
	// a failed start closes them.
	var listeners []io.Closer
	fail := func(err error) error {
		for _, l := range listeners {
			l.Close()
		}
		return fmt.Errorf("run: %w", err)
	}
	// Listen before anything else starts, so a taken port or socket fails
	// the start.
	var ln net.Listener
	if cfg.MetricsAddress != "" {
		if ln, err = net.Listen("tcp", cfg.MetricsAddress); err != nil {
			return fail(fmt.Errorf("listen on --%s: %w", flagMetricsAddress, err))
		}
		listeners = append(listeners, ln)
	}
	var cniLn *cniListener
	if cfg.CNISocket != "" {
		if cniLn, err = listenCNISocket(cfg.CNISocket); err != nil {
			return fail(fmt.Errorf("%w (or set --%s=\"\")", err, flagCNISocket))
		}
		listeners = append(listeners, cniLn)
	}
	k, err := nft.NewKernel(nft.WithTable(cfg.Table))
	if err != nil {
		return fail(err)
	}
	defer k.Close()
	var flows enforcer.FlowTable
	if cfg.RevokeEstablished {
		ct, err := nft.NewConntrack()
		if err != nil {
			return fail(fmt.Errorf("%w (or set --%s=false)", err, flagRevokeEstablished))
		}
		defer ct.Close()
		flows = ct
	}

	verdicts, verdictOut, err := openVerdictLog(cfg.VerdictLog, os.Stdout, log)
	if err != nil {
		return fail(err)
	}
	if verdicts != nil {
		defer verdicts.Close()
		defer verdictOut.Close()
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d := &daemon{
		cfg:         cfg,
		log:         log,
		client:      clients.kube,
		cnpClient:   clients.cnp,
		apiHost:     clients.host,
		gate:        gate,
		dataplane:   k,
		flows:       flows,
		notifier:    notifierFromEnv(),
		listener:    ln,
		cniListener: cniLn,
	}
	if verdicts != nil {
		d.verdicts, d.verdictOut = verdicts, verdictOut
	}
	return d.run(ctx)
}

// gatedClient returns the daemon's API client. Its reads pass a
// podwatch.APIGate, which holds them while the API server is unreachable, logs
// the outage, and lets them out when a probe finds the server ready again
// (client-go's own backoff would wait up to a minute).
func gatedClient(kubeconfig string, log *slog.Logger) (apiClients, *podwatch.APIGate, error) {
	restCfg, err := restConfig(kubeconfig)
	if err != nil {
		return apiClients{}, nil, err
	}
	gate := podwatch.NewAPIGate(podwatch.APIGateOptions{Logger: log})
	restCfg.Wrap(gate.Wrap)
	// A server that vanishes silently (a dead host, a partition, a load
	// balancer that drops packets) shows only as timeouts. Connect within
	// apiDialTimeout or fail (client-go waits 30 s), so that a read sent
	// during such an outage fails soon and is then held by the gate, which
	// lets it out within a probe of the server's return.
	restCfg.Dial = (&net.Dialer{Timeout: apiDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	clients, err := newClients(restCfg)
	if err != nil {
		gate.Close()
		return apiClients{}, nil, err
	}
	return clients, gate, nil
}

// apiDialTimeout bounds a connect to the API server (client-go's default is 30 s).
const apiDialTimeout = 5 * time.Second

// http2HealthDefaults are client-go's HTTP/2 health check settings for the
// daemon (environment variables client-go reads when it builds its transport;
// an operator's own values win): a connection that carries nothing for 10 s is
// pinged, and closed if the ping is not answered within 5 s. client-go's
// defaults (30 s and 15 s) keep a watch on a silently dead connection for 45 s,
// and changes made meanwhile wait for it.
var http2HealthDefaults = map[string]string{"HTTP2_READ_IDLE_TIMEOUT_SECONDS": "10", "HTTP2_PING_TIMEOUT_SECONDS": "5"}

func setHTTP2HealthDefaults() {
	for k, v := range http2HealthDefaults {
		if _, set := os.LookupEnv(k); !set {
			_ = os.Setenv(k, v)
		}
	}
}

// daemon is the running `nftwarden run`, with its dependencies injected so that
// tests can use a fake clientset and nft.Fake.
type daemon struct {
	cfg    runConfig
	log    *slog.Logger
	client kubernetes.Interface
	// cnpClient reads ClusterNetworkPolicies; nil (tests) watches none.
	cnpClient cnpclient.Interface
	apiHost   string
	gate      *podwatch.APIGate // nil in tests with a fake clientset
	dataplane nft.Dataplane
	notifier  *notifier
	listener  net.Listener // nil: no HTTP server
	// cniListener is the CNI socket (--cni-socket); nil serves none.
	cniListener *cniListener
	// stallLimit overrides the package's stallLimit (tests).
	stallLimit time.Duration
	// podCIDRRetry overrides the package's podCIDRRetry (tests).
	podCIDRRetry time.Duration
	// flows is the node's conntrack table, swept when cfg.RevokeEstablished.
	flows enforcer.FlowTable
	// owner is the DaemonSet of the daemon's pod, for the uninstall check.
	owner ownerWatch
	// verdicts are the packets the program's log rules copy to the NFLOG
	// group, written as lines to verdictOut; nil: no deny/flow log.
	verdicts   eventSource
	verdictOut io.Writer
}

// parts are what run starts: the engine and its watcher, the metrics, and
// the helpers that act on the watcher's syncs.
type parts struct {
	eng   *enforcer.Engine
	w     *podwatch.Watcher
	m     *metrics
	rv    *revoker // nil with --revoke-established=false
	drift *driftRepair
	flows *flowLog // nil without an NFLOG reader
}

// assemble builds the engine and the watcher that feeds it, with the hooks
// that feed metrics, systemd, revocation and drift repair.
func (d *daemon) assemble() (*parts, error) {
	cfg := enforcer.Config{NodeName: d.cfg.NodeName, Dataplane: d.dataplane, Logger: d.log,
		ClusterNetworkPolicyExperimental: experimentalChannel(d.cfg.ClusterNetworkPolicy)}
	d.cfg.VerdictLog.engineConfig(&cfg)
	eng, err := enforcer.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("run: create policy engine: %w", err)
	}
	p := &parts{eng: eng}
	p.m = newMetrics(metricSources{
		stats:    eng.Stats,
		ready:    func() bool { return p.w.Ready() },
		queueLen: func() int { return p.w.QueueLen() },
		api:      d.gate,
	})
	hooks := p.m.hooks(eng.Stats)
	hooks.Synced = func() { d.notify("STATUS=API server synced; programming the full state") }
	hooks.Ready = func() {
		s := eng.Stats()
		d.notify(fmt.Sprintf("READY=1\nSTATUS=enforcing: %d local pods, %d policies, %d elements",
			s.LocalPods, s.Policies, s.Elements))
	}
	if d.cfg.RevokeEstablished && d.flows != nil {
		p.rv = newRevoker(func(ctx context.Context) (enforcer.RevokeResult, error) { return eng.RevokeDenied(ctx, d.flows) }, d.log, p.m)
		hooks = p.rv.hooks(hooks)
	}
	if err := d.addVerdictParts(p); err != nil {
		return nil, err
	}
	p.drift = newDriftRepair(d.log, p.m, func() { p.w.RequestReconcile() })
	hooks = p.drift.hooks(hooks)
	p.w = podwatch.New(d.client, eng, podwatch.Options{
		ResyncPeriod: d.cfg.ResyncPeriod, Logger: d.log, Hooks: hooks,
		ClusterNetworkPolicies: d.clusterNetworkPolicyOptions(),
		Nodes:                  experimentalChannel(d.cfg.ClusterNetworkPolicy),
	})
	return p, nil
}

// addVerdictParts adds the deny/flow log (when the NFLOG group is read) and
// the per-policy counters (--policy-counters, with a dataplane that reads
// counters) to p, their metrics to p's registry.
func (d *daemon) addVerdictParts(p *parts) error {
	if d.verdicts != nil {
		w, err := newFlowLogWriter(d.verdictOut, d.cfg.VerdictLog.Format)
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		p.flows = newFlowLog(p.eng, w, d.verdicts, d.log)
		p.m.registry.MustRegister(p.flows)
	}
	if cr, ok := d.dataplane.(nft.CounterReader); ok && d.cfg.VerdictLog.Counters {
		meanings := func() map[string][]counterTerm { return counterTerms(p.eng.CounterInfo()) }
		p.m.registry.MustRegister(newPolicyCounters(cr, meanings, d.cfg.VerdictLog.MetricsLimit, d.log))
	}
	return nil
}

// clusterNetworkPolicyOptions says how the watcher follows
// ClusterNetworkPolicies: with --cluster-network-policy=off not at all (said
// once; the availability gauge stays 0).
func (d *daemon) clusterNetworkPolicyOptions() podwatch.ClusterNetworkPolicyOptions {
	if d.cfg.ClusterNetworkPolicy == cnpOff {
		d.log.Info("ClusterNetworkPolicy support is off: enforcing NetworkPolicy only",
			"flag", "--"+flagClusterNetworkPolicy+"="+cnpOff)
		return podwatch.ClusterNetworkPolicyOptions{}
	}
	return podwatch.ClusterNetworkPolicyOptions{Client: d.cnpClient, DiscoveryPeriod: d.cfg.CNPDiscoveryPeriod}
}

// startHelpers starts, on wg, what runs beside the watcher until ctx ends: the
// revoker, the kernel's change monitor and its repairs, the start-up checks
// and the read of the pod's owner.
func (d *daemon) startHelpers(ctx context.Context, wg *sync.WaitGroup, p *parts) {
	if p.rv != nil {
		wg.Go(func() { p.rv.run(ctx) })
	}
	if cw, ok := d.dataplane.(changeWatcher); ok {
		wg.Go(func() { p.drift.run(ctx) })
		wg.Go(func() { d.watchChanges(ctx, cw, p.drift.changed) })
	}
	wg.Go(func() { d.preflight(ctx, p.m.setPreflight) })
	if p.flows != nil {
		wg.Go(func() {
			if err := p.flows.run(ctx); err != nil {
				d.log.Error("the deny/flow log stopped: reading its NFLOG group failed", "error", err)
			}
		})
	}
	if d.cfg.PodName != "" && d.cfg.PodNamespace != "" && d.cfg.CleanupOnUninstall {
		wg.Go(func() { d.owner.learn(ctx, d) })
	}
}

// run runs until ctx is cancelled, then stops cleanly and leaves the table as it
// is (or removes it, when the daemon is being uninstalled). It returns an error
// only when something fails that it cannot survive.
func (d *daemon) run(ctx context.Context) error {
	p, err := d.assemble()
	if err != nil {
		return err
	}
	// Deferred in reverse: stop the HTTP server, cancel, then wait for the
	// goroutines.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fatal := make(chan error, 2)

	if d.listener != nil {
		srv := &http.Server{Handler: d.handler(p.m, p.w), ReadHeaderTimeout: 10 * time.Second}
		defer serveHTTP(&wg, srv, d.listener, "metrics", fatal)()
	}
	if d.cniListener != nil {
		// Requests end with the daemon (503: the plugin fails the command
		// and the runtime retries it with the next daemon).
		srv := &http.Server{Handler: newCNIHandler(p.w, d.log, newCNIMetrics(p.m.registry)),
			ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
		defer serveHTTP(&wg, srv, d.cniListener, "the CNI socket", fatal)()
	}
	if err := d.startWatchdog(ctx, &wg, p.w); err != nil {
		return err
	}
	d.log.Info("starting", "version", buildVersion(), "node", d.cfg.NodeName, "table", "inet "+d.cfg.Table,
		"api_server", d.apiHost, "metrics", d.cfg.MetricsAddress, "resync_period", d.cfg.ResyncPeriod,
		"revoke_established", p.rv != nil, "cluster_network_policy", d.cfg.ClusterNetworkPolicy,
		"first_packet_isolation", d.cfg.firstPacket().On, "cni_socket", d.cfg.CNISocket)
	d.startHelpers(ctx, &wg, p)
	d.notify("STATUS=waiting for the API server")
	d.startPodCIDRs(ctx, &wg, p)
	watchDone := make(chan error, 1)
	go func() { watchDone <- p.w.Run(ctx) }()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-fatal:
	case runErr = <-watchDone:
		watchDone = nil
		if runErr == nil {
			runErr = errors.New("run: the watcher stopped unexpectedly")
		}
	}
	d.notify("STOPPING=1")
	cancel()
	if watchDone != nil {
		if err := <-watchDone; err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr == nil {
		// Asked to stop (SIGTERM): by a restart, or by an uninstall.
		d.cleanupIfUninstalled()
	}
	return runErr
}

// serveHTTP serves srv on ln on wg, reporting a failure to fatal, and
// returns the function that shuts it down (waiting up to 5 s for the
// requests in progress).
func serveHTTP(wg *sync.WaitGroup, srv *http.Server, ln net.Listener, what string, fatal chan<- error) (shutdown func()) {
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fatal <- fmt.Errorf("run: serve %s on %s: %w", what, ln.Addr(), err)
		}
	})
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

// startPodCIDRs gives first-packet isolation the node's pod CIDRs when
// --pod-cidr does not: from the Node, read before the watcher starts so that
// its first reconcile carries them, or later (podCIDRDiscovery).
func (d *daemon) startPodCIDRs(ctx context.Context, wg *sync.WaitGroup, p *parts) {
	fp := d.cfg.firstPacket()
	switch {
	case !fp.On:
		d.log.Info("first-packet isolation is off: a new pod is open until its status reaches the daemon",
			"flag", "--"+flagFirstPacketIsolation+"=false")
		return
	case len(fp.PodCIDRs) > 0:
		d.log.Info("first-packet isolation on: addresses of this node's pod CIDRs that are no known pod's are dropped",
			"pod_cidrs", fp.PodCIDRs, "source", "--"+flagPodCIDR)
		return
	}
	pd := &podCIDRDiscovery{client: d.client, node: d.cfg.NodeName, log: d.log,
		set: p.eng.SetPodCIDRs, reconcile: p.w.RequestReconcile, firstWait: podCIDRFirstWait, retry: podCIDRRetry}
	if d.podCIDRRetry > 0 {
		pd.retry = d.podCIDRRetry
	}
	pd.start(ctx, wg)
}

// watchChanges runs the dataplane's change monitor until ctx ends, starting it
// again after a failure (meanwhile the periodic reconcile reads the kernel).
func (d *daemon) watchChanges(ctx context.Context, cw changeWatcher, fn func(nft.ForeignChange)) {
	for {
		err := cw.WatchChanges(ctx, fn)
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("the kernel's change monitor stopped; drift is found by the periodic reconcile until it runs again",
			"error", err, "retry_in", changeMonitorRetry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(changeMonitorRetry):
		}
	}
}

// changeMonitorRetry is the wait before starting a failed change monitor again.
const changeMonitorRetry = 10 * time.Second

func (d *daemon) notify(state string) {
	if err := d.notifier.notify(state); err != nil {
		d.log.Warn("systemd notification failed", "error", err)
	}
}

// startWatchdog pings systemd's watchdog at half its timeout while ctx lives
// and the worker is not stuck: once one sync has been running for longer than
// the ping interval the pings stop, and systemd restarts a daemon whose sync
// hangs for about 1.5 watchdog timeouts (the table stays as it is).
func (d *daemon) startWatchdog(ctx context.Context, wg *sync.WaitGroup, w *podwatch.Watcher) error {
	interval, ok, err := watchdogInterval()
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if !ok || !d.notifier.enabled() {
		return nil
	}
	d.log.Debug("systemd watchdog enabled", "ping_interval", interval)
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if busy := w.Busy(); busy > interval {
					d.log.Warn("a sync has been running for too long; not pinging the systemd watchdog", "running", busy.Round(time.Second))
					continue
				}
				d.notify("WATCHDOG=1")
			}
		}
	})
	return nil
}

// stallLimit is how long one sync may run before /healthz reports the daemon
// unhealthy (a full reconcile of a large cluster takes seconds, not minutes).
const stallLimit = time.Minute

// handler serves /metrics, /healthz (the process serves and its sync is not
// stuck) and /readyz (the first full reconcile has programmed the table).
func (d *daemon) handler(m *metrics, w *podwatch.Watcher) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		limit := d.stallLimit
		if limit == 0 {
			limit = stallLimit
		}
		if busy := w.Busy(); busy > limit {
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(rw, "unhealthy: one sync has been running for %v\n", busy.Round(time.Second))
			return
		}
		_, _ = rw.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !w.Ready() {
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = rw.Write([]byte("not ready: waiting for the API server and the first full reconcile\n"))
			return
		}
		_, _ = rw.Write([]byte("ok\n"))
	})
	return mux
}
