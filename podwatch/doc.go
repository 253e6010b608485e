// Package podwatch feeds an enforcer.Engine from the Kubernetes API server.
//
// It runs cluster-wide client-go shared informers for Pods, Namespaces and
// NetworkPolicies, for Nodes with Options.Nodes (the nodes peers of
// ClusterNetworkPolicy's experimental channel), and for ClusterNetworkPolicies (network-policy-api
// v1beta1, cluster-scoped) while the API server serves them (below). Transforms (Transform) strip every object down to what the
// engine reads before it enters the informer cache, so a node agent watching a
// large cluster keeps a small heap: a pod is cached as its metadata and the
// engine's own parsed form (enforcer.NewPod), which the engine then keeps as
// it is, so each pod is held once for both (BenchmarkMemoryPerPod: about
// 1.2 KB per pod for cache and engine together, instead of 17 KB for a
// typical Deployment replica in the cache alone without a transform).
// Informer notifications become keys (kind/namespace/name) in a rate-limited
// client-go workqueue; one worker drains the queue in batches, looks each key
// up in the informer cache (present = upsert, absent = delete), and ends every
// batch with a single engine.Flush, so a burst of events turns into a few
// nftables transactions. The initial list is not queued: once the informers
// have synced, the caches are applied as the first batch (a queue that once
// held every key of the cluster would keep its memory).
//
// Ordering guarantees: nothing reaches the dataplane before every informer has
// synced; the first batch after that is a full engine.Reconcile (which converges
// the table left by a previous run without deleting it), later batches are
// deltas, and a full Reconcile runs again every resync period and whenever
// RequestReconcile is called (the daemon does so when the kernel reports that
// someone else changed the table). A change that reaches an idle watcher is
// flushed at once; changes that arrive while a flush runs form the next batch.
// A failed Flush or Reconcile is retried with exponential backoff.
//
// Programming latency: the transforms keep, of what they strip, the time of
// the object's last change as the API server stamped it (changetime.go:
// managed fields, creation, deletion request, a pod's condition transitions;
// whole seconds), and Hooks.Programmed reports each change delivered after the
// initial sync once, at the end of the first successful Flush or Reconcile
// that carried it, with that time and the moment the informer delivered it.
//
// ClusterNetworkPolicies exist only while their CRD is installed, and an
// informer for a resource that is not served would never sync. So, when
// Options.ClusterNetworkPolicies has a client, discovery is asked at start
// whether policy.networking.k8s.io/v1beta1 serves clusternetworkpolicies, and
// again every DiscoveryPeriod (30 s; at once when their list finds them
// gone). While it does, an informer of its own feeds them to the engine like
// NetworkPolicies; when the API appears the informer starts (no restart),
// and when it goes the informer stops and every policy it held is deleted
// from the engine (the API server deleted them with their CRD). Each change,
// and the first answer, is logged once and reported to
// Hooks.ClusterNetworkPolicyAPI. Readiness waits for discovery's first answer
// and, if the API is served, for their initial list: the first reconcile
// holds them, so a starting node never enforces NetworkPolicies without the
// Admin tier.
//
// StartPod, StopPod and PodProgrammed are the CNI path (the daemon's CNI
// socket calls them; an agent that embeds the watcher may too): a pod coming
// up is programmed with the addresses of its CNI result before its status
// lists them, and the call returns when a kernel batch has carried it. The
// pod's labels still come from the API server: from the informer cache,
// with the UID the runtime gives (a hash of it is kept per cached pod), or,
// when the informer has not delivered the pod within Options.PodWait, from
// one GET through Transform. They wait for Ready, are bounded by their
// context, and report their batches to Hooks.Flushed like the worker's.
//
// Sync is the one-shot form of the same path, for commands that only read the
// cluster (nftwarden explain, dump --desired): the same informers, transforms
// and handlers, every listed object handed to the engine as Run's first batch,
// then the informers stop; nothing is flushed.
//
// API server outages: the last programmed state stays in the kernel, and the
// watcher stays Ready (it enforces the last state it knew; readiness gates
// rollouts, and an outage of the control plane is no reason to stop them or to
// replace a pod). APIGate, installed in the client's transport, holds reads
// while the server is unreachable and lets them out when a probe finds it
// ready again (probes every 0.5 s at most), so the reflectors relist at once
// instead of after client-go's backoff of up to a minute; a watch held for
// more than 5 s is answered as expired, so that its informer relists at the
// return rather than after the server refuses the stale watch. Changes made
// while away, or just before the outage and not yet seen, are applied from
// that relist.
//
// podwatch must not import the daemon, and it never touches the dataplane itself:
// only the engine does. Stopping a Watcher leaves the table as it is.
package podwatch
