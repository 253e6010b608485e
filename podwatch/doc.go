// Package podwatch feeds an enforcer.Engine from the Kubernetes API server.
//
// It runs cluster-wide client-go shared informers for Pods, Namespaces and
// NetworkPolicies. Transforms (Transform) strip every object down to what the
// engine reads before it enters the informer cache, so a node agent watching a
// large cluster keeps a small heap (BenchmarkTransform: about 1.3 KB per cached
// pod instead of 17 KB for a typical Deployment replica; pods are cached as a
// compact unexported type, not as *corev1.Pod). Informer notifications become keys
// (kind/namespace/name) in a rate-limited client-go workqueue; one worker drains
// the queue in batches, looks each key up in the informer cache (present =
// upsert, absent = delete), and ends every batch with a single engine.Flush, so a
// burst of events turns into a few nftables transactions.
//
// Ordering guarantees: nothing reaches the dataplane before every informer has
// synced; the first batch after that is a full engine.Reconcile (which converges
// the table left by a previous run without deleting it), later batches are
// deltas, and a full Reconcile runs again every resync period. A failed Flush or
// Reconcile is retried with exponential backoff. API server outages are survived
// by client-go's reflectors, which relist and rewatch with backoff; meanwhile the
// last programmed state stays in the kernel and changes made while away are
// applied when the watches return.
//
// podwatch must not import the daemon, and it never touches the dataplane itself:
// only the engine does. Stopping a Watcher leaves the table as it is.
package podwatch
