package daemon

import (
	"strings"
	"time"

	"github.com/nftwarden/nftwarden/podwatch"
)

// programmingBuckets are the buckets of policy_programming_duration_seconds,
// kube-proxy's network_programming_duration_seconds thinned out: the API
// stamps changes in whole seconds, so finer buckets below a second would
// only spread the truncation (a change programmed in 10 ms reads anywhere
// from 0.01 to 1.01 s).
var programmingBuckets = []float64{0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300}

// kindLabel is the "kind" label value of a watched kind, as the Kubernetes
// resource names it in lower case: pod, namespace, networkpolicy,
// clusternetworkpolicy, node.
func kindLabel(k podwatch.Kind) string { return strings.ToLower(string(k)) }

// observeProgrammed is Hooks.Programmed: each change the batch that ended at
// at carried, once, in both latency histograms.
func (m *metrics) observeProgrammed(at time.Time, changes []podwatch.Change) {
	for _, c := range changes {
		kind := kindLabel(c.Kind)
		m.policyProgramming.WithLabelValues(kind).Observe(at.Sub(c.Changed).Seconds())
		m.eventProgramming.WithLabelValues(kind).Observe(at.Sub(c.Seen).Seconds())
	}
}
