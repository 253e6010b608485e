package daemon

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nftwarden/nftwarden/nft"
)

// Per-policy counters: nftwarden_policy_packets_total and
// nftwarden_policy_bytes_total {kind, namespace, policy, direction, verdict},
// from the program's named counters (--policy-counters). Only new
// connections reach the counted chains: packets are new connections, bytes
// the bytes of their first packets.
//
// The kernel's values are not exported as they are: a recompiled chain, or a
// pod that moves to other policies, changes or resets them. The collector
// keeps running totals from the differences between reads (a value below
// the previous one is a reset: all of it is new), so that a series never
// goes backwards.
//
// Cardinality is bounded by --policy-metrics-limit N: only the N policies
// with most packets (running totals) have series of their own; what the
// others count from then on is added to policy="_other" (kind and namespace
// empty). So each metric has at most (N+1) × 2 directions × 3 verdicts
// series. A policy that enters the top N gets its series with its whole
// running total, and what it added to _other before stays there; one that
// leaves it loses its series. A deleted policy's totals are forgotten.

// policySeries identifies one series of the two metrics.
type policySeries struct {
	Kind, Namespace, Policy, Direction, Verdict string
}

// policyOf is the policy a series belongs to, the unit of the top-N bound.
func (s policySeries) policyOf() policySeries {
	return policySeries{Kind: s.Kind, Namespace: s.Namespace, Policy: s.Policy}
}

// Verdicts of the per-policy counters.
const (
	counterAllowed = "allowed"
	counterDenied  = "denied"
	counterPassed  = "passed" // a ClusterNetworkPolicy Pass rule
)

// otherPolicy is the policy label of the sum of the policies beyond the bound.
const otherPolicy = "_other"

// counterTerm says that a named counter adds to a series (Sign 1) or is
// taken from it (Sign -1: a NetworkPolicy allows what entered its chain
// minus what left it not allowed).
type counterTerm struct {
	Series policySeries
	Sign   int
}

// policyCounters is the prometheus.Collector of the two metrics. A scrape
// reads the kernel at most once per ttl (one netlink dump of the counters);
// scrapes in between get the last result.
type policyCounters struct {
	read     func(ctx context.Context) (map[string]nft.CounterObject, error)
	meanings func() map[string][]counterTerm
	limit    int
	ttl      time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu sync.Mutex
	// last is each counter's value at the previous read.
	last map[string]nft.CounterObject
	// totals are the running totals of every series, exported or not.
	totals map[policySeries]*seriesTotal
	// other is what policies beyond the bound added, by direction and
	// verdict (Kind, Namespace and Policy empty).
	other    map[policySeries]*counterPair
	snapshot []prometheus.Metric
	readAt   time.Time
	// readErrors counts failed reads; failing is set while they fail, so
	// that a failure is logged once.
	readErrors float64
	failing    bool
}

// counterPair is packets and bytes.
type counterPair struct{ packets, bytes float64 }

// seriesTotal is a series' signed sum of the counters' differences (raw),
// and the value exported, which never goes below what it was.
type seriesTotal struct {
	raw, exported counterPair
}

// policyCountersTTL is how long a read of the counters serves scrapes.
const policyCountersTTL = 5 * time.Second

var (
	policyLabels         = []string{"kind", "namespace", "policy", "direction", "verdict"}
	policyPacketsDesc    = prometheus.NewDesc(metricsNamespace+"_policy_packets_total", policyCountersHelp("New connections"), policyLabels, nil)
	policyBytesDesc      = prometheus.NewDesc(metricsNamespace+"_policy_bytes_total", policyCountersHelp("Bytes of the first packets of new connections"), policyLabels, nil)
	policyCountersBound  = " Only the --policy-metrics-limit policies with most packets have series; the others are summed as policy=\"_other\"."
	policyReadErrorsDesc = prometheus.NewDesc(metricsNamespace+"_policy_counters_read_errors_total",
		"Reads of the named counters that failed (the per-policy series keep their last values meanwhile).", nil, nil)
)

func policyCountersHelp(what string) string {
	return what + " by policy, direction and verdict (allowed, denied: by the default deny of the pods the NetworkPolicy isolates " +
		"or a ClusterNetworkPolicy Deny rule, passed: a ClusterNetworkPolicy Pass rule), from the program's named counters." + policyCountersBound
}

func newPolicyCounters(r nft.CounterReader, meanings func() map[string][]counterTerm, limit int, log *slog.Logger) *policyCounters {
	return &policyCounters{
		read: r.Counters, meanings: meanings, limit: limit, ttl: policyCountersTTL, now: time.Now, log: log,
		last: map[string]nft.CounterObject{}, totals: map[policySeries]*seriesTotal{}, other: map[policySeries]*counterPair{},
	}
}

func (pc *policyCounters) Describe(ch chan<- *prometheus.Desc) {
	ch <- policyPacketsDesc
	ch <- policyBytesDesc
	ch <- policyReadErrorsDesc
}

func (pc *policyCounters) Collect(ch chan<- prometheus.Metric) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if now := pc.now(); pc.readAt.IsZero() || now.Sub(pc.readAt) >= pc.ttl {
		pc.readAt = now
		pc.refresh()
	}
	for _, m := range pc.snapshot {
		ch <- m
	}
	ch <- prometheus.MustNewConstMetric(policyReadErrorsDesc, prometheus.CounterValue, pc.readErrors)
}

// refreshTimeout bounds one read of the counters.
const refreshTimeout = 5 * time.Second

// refresh reads the counters, adds their differences to the running totals
// and builds the metrics. After a failed read the last metrics stay.
func (pc *policyCounters) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	defer cancel()
	values, err := pc.read(ctx)
	if err != nil {
		pc.readErrors++
		if !pc.failing {
			pc.failing = true
			pc.log.Warn("cannot read the per-policy counters; their metrics keep their last values", "error", err)
		}
		return
	}
	if pc.failing {
		pc.failing = false
		pc.log.Info("the per-policy counters are read again")
	}
	meanings := pc.meanings()
	before := make(map[policySeries]counterPair, len(pc.totals))
	for s, t := range pc.totals {
		before[s] = t.exported
	}
	live := map[policySeries]bool{}
	for name, v := range values {
		terms := meanings[name]
		d := v
		if prev, ok := pc.last[name]; ok && v.Packets >= prev.Packets && v.Bytes >= prev.Bytes {
			d = nft.CounterObject{Packets: v.Packets - prev.Packets, Bytes: v.Bytes - prev.Bytes}
		}
		pc.last[name] = v
		for _, t := range terms {
			live[t.Series] = true
			st := pc.totals[t.Series]
			if st == nil {
				st = &seriesTotal{}
				pc.totals[t.Series] = st
			}
			st.raw.packets += float64(t.Sign) * float64(d.Packets)
			st.raw.bytes += float64(t.Sign) * float64(d.Bytes)
		}
	}
	// After every term is in: a series whose terms subtract must not be
	// raised by a partial sum.
	for _, st := range pc.totals {
		st.exported.packets = max(st.exported.packets, st.raw.packets)
		st.exported.bytes = max(st.exported.bytes, st.raw.bytes)
	}
	for name := range pc.last {
		if _, ok := values[name]; !ok {
			delete(pc.last, name)
		}
	}
	for s := range pc.totals {
		if !live[s] {
			delete(pc.totals, s)
		}
	}
	top := pc.topPolicies()
	for s, t := range pc.totals {
		if top[s.policyOf()] {
			continue
		}
		o := policySeries{Policy: otherPolicy, Direction: s.Direction, Verdict: s.Verdict}
		if pc.other[o] == nil {
			pc.other[o] = &counterPair{}
		}
		pc.other[o].packets += t.exported.packets - before[s].packets
		pc.other[o].bytes += t.exported.bytes - before[s].bytes
	}
	pc.snapshot = pc.snapshot[:0]
	for s, t := range pc.totals {
		if top[s.policyOf()] {
			pc.emit(s, t.exported)
		}
	}
	for s, v := range pc.other {
		pc.emit(s, *v)
	}
}

func (pc *policyCounters) emit(s policySeries, v counterPair) {
	labels := []string{s.Kind, s.Namespace, s.Policy, s.Direction, s.Verdict}
	pc.snapshot = append(pc.snapshot,
		prometheus.MustNewConstMetric(policyPacketsDesc, prometheus.CounterValue, v.packets, labels...),
		prometheus.MustNewConstMetric(policyBytesDesc, prometheus.CounterValue, v.bytes, labels...))
}

// topPolicies are the limit policies with most packets (all series of the
// policy summed), ties broken by name so that the choice is stable.
func (pc *policyCounters) topPolicies() map[policySeries]bool {
	packets := map[policySeries]float64{}
	for s, t := range pc.totals {
		packets[s.policyOf()] += t.exported.packets
	}
	policies := make([]policySeries, 0, len(packets))
	for p := range packets {
		policies = append(policies, p)
	}
	slices.SortFunc(policies, func(a, b policySeries) int {
		if c := cmp.Compare(packets[b], packets[a]); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Policy, b.Policy))
	})
	top := make(map[policySeries]bool, pc.limit)
	for _, p := range policies[:min(pc.limit, len(policies))] {
		top[p] = true
	}
	return top
}
