package daemon

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/podwatch"
)

func TestMetricsRegistration(t *testing.T) {
	stats := enforcer.Stats{Pods: 5, LocalPods: 2, Namespaces: 3, Policies: 4, Sets: 6, Chains: 7, Elements: 8}
	m := newMetrics(metricSources{
		stats:    func() enforcer.Stats { return stats },
		ready:    func() bool { return true },
		queueLen: func() int { return 9 },
	})
	problems, err := testutil.GatherAndLint(m.registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	h := m.hooks(func() enforcer.Stats { return stats })
	h.Event(podwatch.KindPod)
	h.Event(podwatch.KindPod)
	h.Flushed(enforcer.FlushResult{Full: true, Operations: 100, Duration: 20 * time.Millisecond}, nil)
	h.Flushed(enforcer.FlushResult{Operations: 3, Duration: time.Millisecond}, nil)
	h.Flushed(enforcer.FlushResult{}, errors.New("netlink: busy"))
	h.ObjectError(podwatch.KindNetworkPolicy, "x", errors.New("bad"))
	h.WatchError(podwatch.KindPod, errors.New("refused"))
	h.Event(podwatch.KindClusterNetworkPolicy)
	h.ClusterNetworkPolicyAPI(false)
	h.ClusterNetworkPolicyAPI(true)

	want := `
# HELP nftwarden_errors_total Errors by kind: api (a request to the API server failed: it is held and retried when the server answers again), conntrack (a sweep of established connections failed; retried with backoff), dataplane (a sync failed; retried), object (the engine rejected part of an object; it fails closed), watch (a list/watch of the API server failed; retried).
# TYPE nftwarden_errors_total counter
nftwarden_errors_total{kind="api"} 0
nftwarden_errors_total{kind="conntrack"} 0
nftwarden_errors_total{kind="dataplane"} 1
nftwarden_errors_total{kind="object"} 1
nftwarden_errors_total{kind="watch"} 1
# HELP nftwarden_events_total Informer notifications queued, by object kind.
# TYPE nftwarden_events_total counter
nftwarden_events_total{kind="ClusterNetworkPolicy"} 1
nftwarden_events_total{kind="Namespace"} 0
nftwarden_events_total{kind="NetworkPolicy"} 0
nftwarden_events_total{kind="Pod"} 2
# HELP nftwarden_cluster_network_policy_api_available 1 while the ClusterNetworkPolicy API (policy.networking.k8s.io/v1beta1) is served and watched; 0 when its CRD is not installed or --cluster-network-policy=off (NetworkPolicy only).
# TYPE nftwarden_cluster_network_policy_api_available gauge
nftwarden_cluster_network_policy_api_available 1
# HELP nftwarden_sync_operations_total nftables operations applied (each set element, chain, set or rule replacement counts one).
# TYPE nftwarden_sync_operations_total counter
nftwarden_sync_operations_total{mode="delta"} 3
nftwarden_sync_operations_total{mode="full"} 100
# HELP nftwarden_syncs_total Syncs to nftables by mode and result (success, error).
# TYPE nftwarden_syncs_total counter
nftwarden_syncs_total{mode="delta",result="error"} 1
nftwarden_syncs_total{mode="delta",result="success"} 1
nftwarden_syncs_total{mode="full",result="error"} 0
nftwarden_syncs_total{mode="full",result="success"} 1
# HELP nftwarden_programmed_elements Set and map elements in the table after the last successful sync.
# TYPE nftwarden_programmed_elements gauge
nftwarden_programmed_elements 8
# HELP nftwarden_programmed_chains Chains in the table after the last successful sync.
# TYPE nftwarden_programmed_chains gauge
nftwarden_programmed_chains 7
# HELP nftwarden_programmed_sets Sets and maps in the table after the last successful sync.
# TYPE nftwarden_programmed_sets gauge
nftwarden_programmed_sets 6
# HELP nftwarden_pods_known Pods in the engine's model (cluster-wide).
# TYPE nftwarden_pods_known gauge
nftwarden_pods_known 5
# HELP nftwarden_local_pods Pods of this node in the engine's model.
# TYPE nftwarden_local_pods gauge
nftwarden_local_pods 2
# HELP nftwarden_namespaces_known Namespaces in the engine's model.
# TYPE nftwarden_namespaces_known gauge
nftwarden_namespaces_known 3
# HELP nftwarden_policies_known NetworkPolicies in the engine's model.
# TYPE nftwarden_policies_known gauge
nftwarden_policies_known 4
# HELP nftwarden_ready 1 once the first full reconcile has programmed the table.
# TYPE nftwarden_ready gauge
nftwarden_ready 1
# HELP nftwarden_queue_length Object changes waiting to be applied.
# TYPE nftwarden_queue_length gauge
nftwarden_queue_length 9
`
	names := []string{
		"nftwarden_errors_total", "nftwarden_events_total", "nftwarden_cluster_network_policy_api_available", "nftwarden_sync_operations_total", "nftwarden_syncs_total",
		"nftwarden_programmed_elements", "nftwarden_programmed_chains", "nftwarden_programmed_sets",
		"nftwarden_pods_known", "nftwarden_local_pods", "nftwarden_namespaces_known", "nftwarden_policies_known",
		"nftwarden_ready", "nftwarden_queue_length",
	}
	if err := testutil.GatherAndCompare(m.registry, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.syncDuration); n != 2 {
		t.Errorf("sync_duration_seconds has %d series, want 2 (delta, full)", n)
	}
	for _, name := range []string{"nftwarden_build_info", "nftwarden_last_successful_sync_timestamp_seconds", "go_goroutines", "process_open_fds"} {
		if n, err := testutil.GatherAndCount(m.registry, name); err != nil || n == 0 {
			t.Errorf("%s: %d series, error %v", name, n, err)
		}
	}
}

// Without sources (a dataplane-less use) only the event-driven metrics exist.
func TestMetricsWithoutSources(t *testing.T) {
	m := newMetrics(metricSources{})
	if n, _ := testutil.GatherAndCount(m.registry, "nftwarden_pods_known", "nftwarden_ready"); n != 0 {
		t.Errorf("%d series of source-driven metrics, want none", n)
	}
	m.hooks(nil).Flushed(enforcer.FlushResult{Operations: 1}, nil)
}
