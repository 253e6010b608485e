package daemon

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/podwatch"
)

const metricsNamespace = "nftwarden"

// Sync modes, the "mode" label of the sync metrics.
const (
	modeDelta = "delta" // engine.Flush: only what changed
	modeFull  = "full"  // engine.Reconcile (or a Flush that fell back to one)
)

// metrics are the daemon's Prometheus metrics. They live in their own registry
// so tests can create several.
type metrics struct {
	registry *prometheus.Registry

	syncDuration *prometheus.HistogramVec
	syncs        *prometheus.CounterVec
	operations   *prometheus.CounterVec
	errors       errorCounts
	events       *prometheus.CounterVec
	preflight    *prometheus.GaugeVec

	// Drift: changes to the table by others, and the repairs.
	driftDetected, driftRepaired prometheus.Counter

	// What the last successful sync left programmed.
	elements, sets, chains prometheus.Gauge
	lastSync               prometheus.Gauge

	// cnpAPI is 1 while ClusterNetworkPolicies are served and watched.
	cnpAPI prometheus.Gauge

	// Conntrack sweeps (--revoke-established).
	conntrackRevoked       prometheus.Counter
	conntrackSweepDuration prometheus.Histogram

	// Programming latency of object changes (latency.go).
	policyProgramming, eventProgramming *prometheus.HistogramVec
}

// modelStats gives the engine's current counts; ready and queueLen report the
// watcher's state. Any of them may be nil (not exported then).
type metricSources struct {
	stats    func() enforcer.Stats
	ready    func() bool
	queueLen func() int
	api      *podwatch.APIGate
}

const errorsHelp = "Errors by kind: api (a request to the API server failed: it is held and retried when the server answers again), " +
	"conntrack (a sweep of established connections failed; retried with backoff), dataplane (a sync failed; retried), object (the engine rejected part of an object; it fails closed), " +
	"watch (a list/watch of the API server failed; retried)."

// errorCounts is errors_total: a counter per kind, except that the api kind is
// read from the API gate, which counts its failures itself (it exists before
// the metrics do).
type errorCounts struct {
	*prometheus.CounterVec
	api  *podwatch.APIGate
	desc *prometheus.Desc
}

func (e errorCounts) Collect(ch chan<- prometheus.Metric) {
	e.CounterVec.Collect(ch)
	var n uint64
	if e.api != nil {
		n = e.api.Failures()
	}
	ch <- prometheus.MustNewConstMetric(e.desc, prometheus.CounterValue, float64(n), "api")
}

// newMetrics declares every metric of the daemon. It is long because it is
// one list of declarations (name, help, buckets, labels), which reads best
// in one place, as /metrics shows them.
func newMetrics(src metricSources) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		registry: reg,
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "sync_duration_seconds",
			Help: "Time to compute and apply one sync to nftables (delta flush or full reconcile).",
			// From sub-millisecond deltas to multi-second reconciles of 100k elements.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"mode"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "syncs_total",
			Help: "Syncs to nftables by mode and result (success, error).",
		}, []string{"mode", "result"}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "sync_operations_total",
			Help: "nftables operations applied (each set element, chain, set or rule replacement counts one).",
		}, []string{"mode"}),
		errors: errorCounts{
			CounterVec: prometheus.NewCounterVec(prometheus.CounterOpts{
				Namespace: metricsNamespace, Name: "errors_total", Help: errorsHelp,
			}, []string{"kind"}),
			api:  src.api,
			desc: prometheus.NewDesc(metricsNamespace+"_errors_total", errorsHelp, []string{"kind"}, nil),
		},
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "events_total",
			Help: "Informer notifications queued, by object kind.",
		}, []string{"kind"}),
		preflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "preflight_problem",
			Help: "1 when a start-up check found a problem (see the log): bridge-netfilter (bridged pod traffic would bypass the forward hook), node-object (no Node has this daemon's node name), other-enforcer (another network policy enforcer's rules are present).",
		}, []string{"check"}),
		driftDetected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "drift_detected_total",
			Help: "Batches of other processes that changed the table, or losses of the kernel's change notifications, reported by the change monitor.",
		}),
		driftRepaired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "drift_repaired_total",
			Help: "Full reconciles that found the table different from what the daemon had programmed and converged it.",
		}),
		elements: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "programmed_elements",
			Help: "Set and map elements in the table after the last successful sync.",
		}),
		sets: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "programmed_sets",
			Help: "Sets and maps in the table after the last successful sync.",
		}),
		chains: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "programmed_chains",
			Help: "Chains in the table after the last successful sync.",
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "last_successful_sync_timestamp_seconds",
			Help: "Unix time of the last successful sync.",
		}),
		conntrackRevoked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "conntrack_revoked_total",
			Help: "Conntrack entries of established connections that policy denies after a change, deleted so that they stop.",
		}),
		cnpAPI: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "cluster_network_policy_api_available",
			Help: "1 while the ClusterNetworkPolicy API (policy.networking.k8s.io/v1beta1) is served and watched; " +
				"0 when its CRD is not installed or --cluster-network-policy=off (NetworkPolicy only).",
		}),
		conntrackSweepDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "conntrack_sweep_duration_seconds",
			Help: "Time to read the conntrack table and delete the entries of denied connections (one sweep).",
			// From a few hundred entries (ms) to hundreds of thousands (s).
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		policyProgramming: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "policy_programming_duration_seconds",
			Help: "Time from an API object's change (its newest managedFields time, creation, deletion request or, for a pod, " +
				"status condition transition; for an object gone, when the informer saw it) to the end of the nftables batch that " +
				"carried it, by kind (pod, namespace, networkpolicy, clusternetworkpolicy, node). The API stamps whole seconds: " +
				"a value reads up to 1 s long.",
			Buckets: programmingBuckets,
		}, []string{"kind"}),
		eventProgramming: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "event_programming_duration_seconds",
			Help: "Time from the informer's delivery of an object change to the end of the nftables batch that carried it, by kind.",
			// From 100 µs (an idle watcher's delta) to about a minute (retries).
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20),
		}, []string{"kind"}),
	}
	reg.MustRegister(m.syncDuration, m.syncs, m.operations, m.errors, m.events, m.preflight, m.driftDetected, m.driftRepaired,
		m.elements, m.sets, m.chains, m.lastSync, m.cnpAPI, m.conntrackRevoked, m.conntrackSweepDuration,
		m.policyProgramming, m.eventProgramming)
	reg.MustRegister(clientGo().collectors()...)
	// Label values that exist from the start, so rate() and alerts work before
	// the first error.
	for _, mode := range []string{modeDelta, modeFull} {
		m.syncDuration.WithLabelValues(mode)
		m.operations.WithLabelValues(mode)
		for _, r := range []string{"success", "error"} {
			m.syncs.WithLabelValues(mode, r)
		}
	}
	for _, k := range []string{"conntrack", "dataplane", "object", "watch"} {
		m.errors.WithLabelValues(k)
	}
	for _, k := range []podwatch.Kind{podwatch.KindNamespace, podwatch.KindPod, podwatch.KindNetworkPolicy, podwatch.KindClusterNetworkPolicy} {
		m.events.WithLabelValues(string(k))
		m.policyProgramming.WithLabelValues(kindLabel(k))
		m.eventProgramming.WithLabelValues(kindLabel(k))
	}
	for _, c := range preflightChecks {
		m.preflight.WithLabelValues(c)
	}

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "build_info",
			Help:        "Build information; the value is always 1.",
			ConstLabels: prometheus.Labels{"version": buildVersion(), "goversion": runtime.Version()},
		}, func() float64 { return 1 }),
	)
	if src.stats != nil {
		gauge := func(name, help string, f func(enforcer.Stats) int) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: name, Help: help},
				func() float64 { return float64(f(src.stats())) })
		}
		reg.MustRegister(
			gauge("pods_known", "Pods in the engine's model (cluster-wide).", func(s enforcer.Stats) int { return s.Pods }),
			gauge("local_pods", "Pods of this node in the engine's model.", func(s enforcer.Stats) int { return s.LocalPods }),
			gauge("namespaces_known", "Namespaces in the engine's model.", func(s enforcer.Stats) int { return s.Namespaces }),
			gauge("policies_known", "NetworkPolicies in the engine's model.", func(s enforcer.Stats) int { return s.Policies }),
		)
	}
	if src.ready != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "ready",
			Help: "1 once the first full reconcile has programmed the table.",
		}, func() float64 {
			if src.ready() {
				return 1
			}
			return 0
		}))
	}
	if src.api != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: metricsNamespace, Name: "api_reachable",
				Help: "1 while the API server answers; 0 during an outage (reads are held, the programmed rules stay, the daemon stays ready).",
			}, func() float64 {
				if src.api.Up() {
					return 1
				}
				return 0
			}),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: metricsNamespace, Name: "api_outages_total",
				Help: "Outages of the API server seen by the daemon (from the first failed request to the next answer).",
			}, func() float64 { return float64(src.api.Outages()) }),
		)
	}
	if src.queueLen != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "queue_length",
			Help: "Object changes waiting to be applied.",
		}, func() float64 { return float64(src.queueLen()) }))
	}
	return m
}

// hooks returns podwatch hooks that feed the metrics. stats is read after each
// successful sync for the programmed_* gauges (nil leaves them at 0).
func (m *metrics) hooks(stats func() enforcer.Stats) podwatch.Hooks {
	return podwatch.Hooks{
		Event: func(k podwatch.Kind) { m.events.WithLabelValues(string(k)).Inc() },
		Flushed: func(res enforcer.FlushResult, err error) {
			m.observeSync(res, err)
			if err == nil && stats != nil {
				s := stats()
				m.elements.Set(float64(s.Elements))
				m.sets.Set(float64(s.Sets))
				m.chains.Set(float64(s.Chains))
			}
		},
		Programmed:  m.observeProgrammed,
		ObjectError: func(podwatch.Kind, string, error) { m.errors.WithLabelValues("object").Inc() },
		WatchError:  func(podwatch.Kind, error) { m.errors.WithLabelValues("watch").Inc() },
		ClusterNetworkPolicyAPI: func(served bool) {
			v := 0.0
			if served {
				v = 1
			}
			m.cnpAPI.Set(v)
		},
	}
}

// setPreflight records the result of one start-up check.
func (m *metrics) setPreflight(check string, problem bool) {
	v := 0.0
	if problem {
		v = 1
	}
	m.preflight.WithLabelValues(check).Set(v)
}

func (m *metrics) observeSync(res enforcer.FlushResult, err error) {
	mode := modeDelta
	if res.Full {
		mode = modeFull
	}
	if err != nil {
		m.syncs.WithLabelValues(mode, "error").Inc()
		m.errors.WithLabelValues("dataplane").Inc()
		return
	}
	m.syncs.WithLabelValues(mode, "success").Inc()
	m.syncDuration.WithLabelValues(mode).Observe(res.Duration.Seconds())
	m.operations.WithLabelValues(mode).Add(float64(res.Operations))
	m.lastSync.Set(float64(time.Now().UnixNano()) / 1e9)
}
