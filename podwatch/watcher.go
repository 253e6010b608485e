package podwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
)

// Kind is a kind of watched object.
type Kind string

// The watched kinds.
const (
	KindNamespace     Kind = "Namespace"
	KindPod           Kind = "Pod"
	KindNetworkPolicy Kind = "NetworkPolicy"
	// KindNode is watched only with Options.Nodes (the experimental
	// channel's nodes peers of ClusterNetworkPolicy).
	KindNode Kind = "Node"
	// KindClusterNetworkPolicy is watched only while the API server serves
	// it (ClusterNetworkPolicyOptions, cnpwatch.go).
	KindClusterNetworkPolicy Kind = "ClusterNetworkPolicy"
)

// Internal queue keys that are not objects: a full reconcile (start, timer,
// retry before the first success) and a retried flush.
const (
	kindReconcile Kind = "reconcile"
	kindFlush     Kind = "flush"
)

// Defaults of Options.
const (
	// DefaultResyncPeriod is short because a periodic Reconcile is cheap when
	// the dataplane can prove nobody else touched the table (nft.Kernel with a
	// running WatchChanges, see enforcer.Engine.Reconcile): then it is a diff
	// in memory, and a full read of the kernel only when drift is possible.
	DefaultResyncPeriod    = 10 * time.Second
	DefaultSyncLogInterval = 10 * time.Second
	// DefaultPodWait is Options.PodWait's default: the informer delivers a
	// new pod within milliseconds of its creation, long before its sandbox
	// is set up, unless the watch lags.
	DefaultPodWait        = 2 * time.Second
	defaultRetryBaseDelay = 200 * time.Millisecond
	defaultRetryMaxDelay  = 30 * time.Second
)

// Hooks are optional callbacks, for metrics and logging by the embedder. They are
// called from podwatch's goroutines and must return quickly.
type Hooks struct {
	// Synced is called once, when every informer has synced and before the
	// first full reconcile.
	Synced func()
	// Ready is called once, when the first full reconcile has succeeded (Ready()
	// turns true).
	Ready func()
	// Event is called for every informer notification that was queued (updates
	// that change nothing the engine reads are dropped before).
	Event func(kind Kind)
	// Flushed is called after every engine Flush or Reconcile with its result;
	// err is non-nil when it failed (it is retried with backoff). The
	// flushes of StartPod and StopPod are reported too, from their callers'
	// goroutines: Flushed may be called concurrently.
	Flushed func(res enforcer.FlushResult, err error)
	// ObjectError is called when the engine rejected (part of) an object. The
	// engine fails closed for what it rejected and logs it (the watcher does
	// not log it again); the object is not retried until it changes.
	ObjectError func(kind Kind, key string, err error)
	// WatchError is called when a list or watch failed (API server unreachable,
	// forbidden, ...). client-go retries it with backoff.
	WatchError func(kind Kind, err error)
	// Programmed is called after a Flush or Reconcile succeeded, at the end of
	// its kernel batch (at), with the object changes it carried: each change
	// the informers delivered once they had synced (the initial list is not a
	// change), once, in the first successful flush after the batch that
	// applied it (a failed flush carries its changes over to the retry). A
	// change that modified nothing the engine reads is not delivered at all.
	// The latency metrics (daemon) measure at.Sub(Changed) and at.Sub(Seen).
	Programmed func(at time.Time, changes []Change)
	// ClusterNetworkPolicyAPI is called when discovery first answers whether
	// the ClusterNetworkPolicy API is served, and whenever that changes
	// (its CRD installed or removed). Not called when they are off.
	ClusterNetworkPolicyAPI func(served bool)
}

// Options configure a Watcher. The zero value is usable.
type Options struct {
	// ResyncPeriod is the period of the full engine.Reconcile that repairs drift
	// in the kernel; 0 means DefaultResyncPeriod, negative disables it.
	ResyncPeriod time.Duration
	// MinFlushInterval is the least time between the ends of two batches.
	// The default (0 or negative) waits not at all: a change that arrives
	// while the worker is idle is flushed at once, and changes that arrive
	// while a flush runs are taken together as the next batch, so bursts
	// coalesce only under load (kube-proxy's bounded-frequency pattern with
	// no minimum). A positive value trades latency for fewer, larger
	// transactions.
	MinFlushInterval time.Duration
	// SyncLogInterval is how often to log, while waiting for the initial sync,
	// which informers have not synced yet; 0 means DefaultSyncLogInterval.
	SyncLogInterval time.Duration
	// ClusterNetworkPolicies configures their watch; the zero value (no
	// client) watches none.
	ClusterNetworkPolicies ClusterNetworkPolicyOptions
	// Nodes watches Nodes (name, labels, InternalIP and ExternalIP
	// addresses) for the nodes peers of ClusterNetworkPolicy's experimental
	// channel; it needs list and watch on nodes (daemon/deploy/rbac.yaml).
	Nodes bool
	// PodWait bounds how long StartPod waits for the informer to deliver
	// the pod before it reads it from the API server once; 0 means
	// DefaultPodWait.
	PodWait time.Duration
	// Logger is optional; nil means slog.Default().
	Logger *slog.Logger
	Hooks  Hooks
}

// engine is what the Watcher needs of *enforcer.Engine; tests substitute a
// recorder to observe batching precisely.
type engine interface {
	UpsertNamespace(ns *corev1.Namespace) error
	DeleteNamespace(name string)
	UpsertParsedPod(p *enforcer.Pod) error
	DeletePod(namespace, name string)
	UpsertNetworkPolicy(np *networkingv1.NetworkPolicy) error
	DeleteNetworkPolicy(namespace, name string)
	UpsertClusterNetworkPolicy(cnp *v1beta1.ClusterNetworkPolicy) error
	DeleteClusterNetworkPolicy(name string)
	UpsertNode(n *corev1.Node) error
	DeleteNode(name string)
	Flush(ctx context.Context) (enforcer.FlushResult, error)
	Reconcile(ctx context.Context) (enforcer.FlushResult, error)
	podStarter
}

var _ engine = (*enforcer.Engine)(nil)

// key identifies a queued object (or an internal task).
type key struct {
	Kind      Kind
	Namespace string
	Name      string
}

func (k key) String() string {
	if k.Namespace == "" {
		return string(k.Kind) + "/" + k.Name
	}
	return string(k.Kind) + "/" + k.Namespace + "/" + k.Name
}

// Watcher keeps an engine in sync with the API server. Create it with New and
// start it once with Run.
type Watcher struct {
	eng    engine
	opts   Options
	log    *slog.Logger
	client kubernetes.Interface

	factory       informers.SharedInformerFactory
	informers     map[Kind]cache.SharedIndexInformer
	registrations map[Kind]cache.ResourceEventHandlerRegistration
	// pods is the pod informer's store: it holds *compactPod, which the
	// typed PodLister cannot return.
	pods       cache.Indexer
	namespaces corelisters.NamespaceLister
	policies   networkinglisters.NetworkPolicyLister
	nodes      corelisters.NodeLister // nil unless Options.Nodes
	// cnp follows the ClusterNetworkPolicy API; nil when they are off.
	cnp *cnpWatch

	queue workqueue.TypedRateLimitingInterface[key]
	// changes follows changes to their flush; nil without Hooks.Programmed.
	changes *changeLog

	started atomic.Bool
	ready   atomic.Bool
	// readyC is closed when ready turns true.
	readyC chan struct{}
	// podWaiters are StartPod's calls waiting for their pod (cnipods.go).
	podWaiters podWaiters
	// reportMu guards reported, the numbers of the last batches reported
	// to Hooks.Flushed (a ring: a StartPod may report a batch after the
	// worker reported a later one), and reportedNext, the next slot.
	reportMu     sync.Mutex
	reported     [16]uint64
	reportedNext int
	// listing is set once the informers have synced: from then on handlers
	// queue keys. Before, Run applies the synced caches as one batch instead:
	// queueing the initial list would grow the queue's sets to the size of
	// the cluster, and Go maps never shrink (about 250 bytes per pod kept for
	// good).
	listing atomic.Bool
	// busySince is when the batch being processed started (UnixNano), 0 when
	// the worker waits for work.
	busySince atomic.Int64
	// listFailed, when set (Sync), takes every list/watch error in place of
	// the daemon's handling (log, Hooks.WatchError, retry).
	listFailed func(kind Kind, err error)
}

// New returns a Watcher that feeds eng from client. eng must not be nil. The
// informers watch the whole cluster (all namespaces); the engine decides which
// pods are local.
func New(client kubernetes.Interface, eng *enforcer.Engine, opts Options) *Watcher {
	return newWatcher(client, eng, opts)
}

func newWatcher(client kubernetes.Interface, eng engine, opts Options) *Watcher {
	if opts.ResyncPeriod == 0 {
		opts.ResyncPeriod = DefaultResyncPeriod
	}
	if opts.SyncLogInterval <= 0 {
		opts.SyncLogInterval = DefaultSyncLogInterval
	}
	if opts.PodWait <= 0 {
		opts.PodWait = DefaultPodWait
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	w := &Watcher{
		eng:    eng,
		opts:   opts,
		log:    log.With("component", "podwatch"),
		client: client,
		readyC: make(chan struct{}),
		// Informer resync is off (0): informer resyncs only replay the cache to
		// the handlers. Our own periodic Reconcile repairs the kernel instead.
		factory:       informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(Transform)),
		informers:     map[Kind]cache.SharedIndexInformer{},
		registrations: map[Kind]cache.ResourceEventHandlerRegistration{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[key](defaultRetryBaseDelay, defaultRetryMaxDelay),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "nftwarden"},
		),
	}
	core := w.factory.Core().V1()
	netv1 := w.factory.Networking().V1()
	w.informers[KindNamespace] = core.Namespaces().Informer()
	// Pods are only looked up by key: an informer without the default
	// namespace index saves an index entry per pod.
	w.informers[KindPod] = w.factory.InformerFor(&corev1.Pod{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewFilteredPodInformer(c, metav1.NamespaceAll, resync, cache.Indexers{}, nil)
	})
	w.informers[KindNetworkPolicy] = netv1.NetworkPolicies().Informer()
	w.namespaces = core.Namespaces().Lister()
	w.pods = w.informers[KindPod].GetIndexer()
	w.policies = netv1.NetworkPolicies().Lister()
	if opts.Nodes {
		w.informers[KindNode] = core.Nodes().Informer()
		w.nodes = core.Nodes().Lister()
	}
	w.cnp = newCNPWatch(w, opts.ClusterNetworkPolicies)
	if opts.Hooks.Programmed != nil {
		w.changes = newChangeLog()
	}
	return w
}

// Ready reports whether the first full reconcile after the initial sync has
// succeeded: from then on the kernel enforces the cluster's policies.
func (w *Watcher) Ready() bool { return w.ready.Load() }

// Busy reports how long the worker has been processing its current batch (0
// when idle). A batch normally takes milliseconds, a full reconcile of a large
// cluster seconds; a long Busy means the dataplane hangs, and a supervisor
// (systemd's watchdog, a liveness probe) may restart the process.
func (w *Watcher) Busy() time.Duration {
	since := w.busySince.Load()
	if since == 0 {
		return 0
	}
	return time.Since(time.Unix(0, since))
}

// RequestReconcile makes the next batch a full engine.Reconcile instead of a
// Flush, e.g. when the dataplane reports that someone else changed the table.
// Requests coalesce with each other and with the periodic resync; before the
// first reconcile (Ready) it does nothing more than what Run does anyway.
func (w *Watcher) RequestReconcile() { w.queue.Add(key{Kind: kindReconcile}) }

// QueueLen is the number of keys waiting in the work queue.
func (w *Watcher) QueueLen() int { return w.queue.Len() }

// Run starts the informers, waits for them to sync, programs the engine with a
// full reconcile, and then applies changes until ctx is cancelled. It returns nil
// when ctx is cancelled (the programmed table stays as it is) and an error only
// when the Watcher cannot start. Run may be called once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("podwatch: Run called more than once")
	}
	// The informers stop when ctx is done; Shutdown waits for their goroutines,
	// but not for long: client-go's watch-list retry sleeps through its backoff
	// (up to a minute) without looking at the context, and a daemon asked to
	// stop must not wait for that.
	defer w.shutdownInformers()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer w.queue.ShutDown()

	if err := w.startInformers(ctx); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()

	if !w.waitForSync(ctx) {
		return nil
	}
	w.log.Info("informer caches synced; programming the full state")
	if h := w.opts.Hooks.Synced; h != nil {
		h()
	}
	// Handlers queue from now on. Whatever they skipped before is in the
	// caches (an informer updates its cache before it notifies), which are
	// listed only now; an object both listed and queued is applied twice, which
	// is harmless. The first batch is a full Reconcile, even in an empty
	// cluster.
	w.listing.Store(true)
	w.process(ctx, w.cachedKeys(), false)
	if w.pause(ctx) {
		if w.opts.ResyncPeriod > 0 {
			go w.periodicReconcile(ctx)
		}
		w.work(ctx)
	}
	w.log.Info("stopped; the programmed rules stay in place")
	return nil
}

// startInformers registers the handlers and watch error handlers and starts
// the informers until ctx ends.
func (w *Watcher) startInformers(ctx context.Context) error {
	for _, kind := range w.kinds() {
		inf := w.informers[kind]
		if err := inf.SetWatchErrorHandlerWithContext(w.watchErrorHandler(kind)); err != nil {
			return fmt.Errorf("set watch error handler for %s informer: %w", kind, err)
		}
		reg, err := inf.AddEventHandler(w.handler(kind))
		if err != nil {
			return fmt.Errorf("add event handler to %s informer: %w", kind, err)
		}
		w.registrations[kind] = reg
	}
	w.factory.Start(ctx.Done())
	if w.cnp != nil {
		go w.cnp.run(ctx)
	}
	return nil
}

// shutdownGrace bounds how long Run waits for the informers to stop.
const shutdownGrace = 3 * time.Second

func (w *Watcher) shutdownInformers() {
	done := make(chan struct{})
	go func() {
		w.cnp.stop()
		w.factory.Shutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		w.log.Debug("informers still stopping (sleeping through a retry backoff); not waiting for them")
	}
}

// waitForSync blocks until every event handler has seen its informer's initial
// list, logging which kinds are still missing. It returns false if ctx ended.
func (w *Watcher) waitForSync(ctx context.Context) bool {
	start := time.Now()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	lastLog := start
	synced := map[string]bool{}
	for {
		pending := w.pendingKinds()
		w.logSynced(synced, pending, start)
		if len(pending) == 0 {
			return true
		}
		if time.Since(lastLog) >= w.opts.SyncLogInterval {
			lastLog = time.Now()
			w.log.Warn("still waiting for the API server; nothing is programmed until every informer has synced",
				"pending", strings.Join(pending, ","), "waited", time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return false
		case <-poll.C:
		}
	}
}

// logSynced logs, once per kind, that its informer has synced and how long
// after start: at start-up, the lists of a large cluster take most of the time
// to ready. synced holds the kinds already logged.
func (w *Watcher) logSynced(synced map[string]bool, pending []string, start time.Time) {
	kinds := append(w.kinds(), KindClusterNetworkPolicy)
	for _, kind := range kinds {
		k := string(kind)
		if synced[k] || slices.Contains(pending, k) || (kind == KindClusterNetworkPolicy && w.cnp == nil) {
			continue
		}
		synced[k] = true
		w.log.Info("informer synced", "kind", k, "after", time.Since(start).Round(time.Millisecond))
	}
}

// kinds are the kinds of the factory's informers (ClusterNetworkPolicies
// have their own, cnpwatch.go).
func (w *Watcher) kinds() []Kind {
	if w.opts.Nodes {
		return []Kind{KindNamespace, KindNode, KindPod, KindNetworkPolicy}
	}
	return []Kind{KindNamespace, KindPod, KindNetworkPolicy}
}

// pendingKinds lists the kinds whose handler has not seen the initial list yet.
func (w *Watcher) pendingKinds() []string {
	var pending []string
	for _, kind := range w.kinds() {
		if !w.registrations[kind].HasSynced() {
			pending = append(pending, string(kind))
		}
	}
	if w.cnp.pending() {
		pending = append(pending, string(KindClusterNetworkPolicy))
	}
	return pending
}

func (w *Watcher) watchErrorHandler(kind Kind) cache.WatchErrorHandlerWithContext {
	return func(_ context.Context, _ *cache.Reflector, err error) {
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			// The watch was closed (API server restart, timeout): client-go
			// rewatches; nothing was lost.
			w.log.Debug("watch closed; rewatching", "kind", kind, "error", err)
			return
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
			w.log.Info("watch expired; relisting", "kind", kind, "error", err)
			return
		case kind == KindClusterNetworkPolicy && apierrors.IsNotFound(err):
			// The CRD was removed: discovery confirms it and stops the
			// informer, which would otherwise retry for good.
			w.log.Debug("ClusterNetworkPolicies not found; asking discovery whether the API is gone", "error", err)
			w.cnp.askAgain()
			return
		case w.listFailed != nil:
			w.listFailed(kind, err)
			return
		}
		w.log.Warn("list/watch failed; retrying with backoff (the programmed rules stay in place)",
			"kind", kind, "error", err)
		if h := w.opts.Hooks.WatchError; h != nil {
			h(kind, err)
		}
	}
}

func (w *Watcher) handler(kind Kind) cache.ResourceEventHandler {
	enqueue := func(obj any, deleted bool) {
		seen := time.Now()
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			// The deletion was missed: its object is stale, and when it went
			// is known only from now.
			obj = d.Obj
		}
		m, err := metaOf(obj)
		if err != nil {
			w.log.Error("ignoring unexpected informer object", "kind", kind, "error", err)
			return
		}
		if w.listing.Load() {
			k := key{Kind: kind, Namespace: m.GetNamespace(), Name: m.GetName()}
			if w.changes != nil {
				w.changes.record(k, Change{Kind: kind, Changed: changeTimeOf(obj, deleted, seen), Seen: seen})
			}
			w.queue.Add(k)
		}
		if h := w.opts.Hooks.Event; h != nil {
			h(kind)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			w.podWaiters.arrived(obj)
			enqueue(obj, false)
		},
		UpdateFunc: func(oldObj, newObj any) {
			// Before the filter: a pod recreated under its name with the
			// same content is another pod (UID) to StartPod.
			w.podWaiters.arrived(newObj)
			if sameForEngine(oldObj, newObj) {
				return
			}
			enqueue(newObj, false)
		},
		DeleteFunc: func(obj any) { enqueue(obj, true) },
	}
}

func metaOf(obj any) (metav1.Object, error) {
	if m, ok := obj.(metav1.Object); ok {
		return m, nil
	}
	return nil, fmt.Errorf("object of type %T has no metadata", obj)
}

func (w *Watcher) periodicReconcile(ctx context.Context) {
	t := time.NewTicker(w.opts.ResyncPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.queue.Add(key{Kind: kindReconcile})
		}
	}
}

// work is the single worker: it takes everything queued as one batch, applies it
// to the engine and flushes once. What arrives while a batch is processed
// waits in the queue and becomes the next batch, so a change to an idle
// watcher reaches the kernel at once and a burst coalesces by itself (plus
// MinFlushInterval, if set).
func (w *Watcher) work(ctx context.Context) {
	for {
		first, shutdown := w.queue.Get()
		if shutdown {
			return
		}
		batch := []key{first}
		for w.queue.Len() > 0 {
			k, shutdown := w.queue.Get()
			if shutdown {
				break
			}
			batch = append(batch, k)
		}
		w.process(ctx, batch, true)
		if !w.pause(ctx) {
			return
		}
	}
}

// pause waits MinFlushInterval (if positive) after a batch. It returns false
// if ctx ended.
func (w *Watcher) pause(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	if w.opts.MinFlushInterval <= 0 {
		return true
	}
	t := time.NewTimer(w.opts.MinFlushInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// cachedKeys returns the keys of every object in the informer caches, and
// the reconcile key.
func (w *Watcher) cachedKeys() []key {
	kinds := w.kinds()
	listed := make([][]string, len(kinds))
	cnps := w.cnp.cachedNames()
	n := 1 + len(cnps)
	for i, kind := range kinds {
		listed[i] = w.informers[kind].GetStore().ListKeys()
		n += len(listed[i])
	}
	keys := make([]key, 0, n)
	keys = append(keys, key{Kind: kindReconcile})
	for i, kind := range kinds {
		for _, s := range listed[i] {
			name, err := cache.ParseObjectName(s)
			if err != nil {
				w.log.Error("ignoring unexpected cache key", "kind", kind, "key", s, "error", err)
				continue
			}
			keys = append(keys, key{Kind: kind, Namespace: name.Namespace, Name: name.Name})
		}
	}
	for _, name := range cnps {
		keys = append(keys, key{Kind: KindClusterNetworkPolicy, Name: name})
	}
	return keys
}

// process applies a batch of keys and flushes (or reconciles) once. Keys
// taken from the queue (queued) are marked done there.
func (w *Watcher) process(ctx context.Context, batch []key, queued bool) {
	w.busySince.Store(time.Now().UnixNano())
	defer w.busySince.Store(0)
	if w.changes != nil {
		w.changes.take(batch)
	}
	start := time.Now()
	full := w.applyAll(batch, queued) || !w.ready.Load()
	if ctx.Err() != nil {
		return
	}
	w.flush(ctx, len(batch), time.Since(start), full)
}

// flush ends a batch of batchLen keys, which took applied to hand to the
// engine, with one engine Flush, or a Reconcile when full, and schedules a
// retry when it fails.
func (w *Watcher) flush(ctx context.Context, batchLen int, applied time.Duration, full bool) {
	var (
		res enforcer.FlushResult
		err error
	)
	if full {
		res, err = w.eng.Reconcile(ctx)
	} else {
		res, err = w.eng.Flush(ctx)
	}
	end := time.Now()
	// A failed Reconcile may return a zero result: still report it as full.
	res.Full = res.Full || full
	w.reportFlushed(res, err)
	if err != nil {
		if ctx.Err() != nil {
			return // stopping: the interrupted change is applied at the next start
		}
		retry := key{Kind: kindFlush}
		if full {
			retry = key{Kind: kindReconcile}
		}
		w.log.Error("programming the dataplane failed; retrying with backoff",
			"full", full, "retries", w.queue.NumRequeues(retry), "error", err)
		w.queue.AddRateLimited(retry)
		return
	}
	w.queue.Forget(key{Kind: kindFlush})
	w.queue.Forget(key{Kind: kindReconcile})
	if w.changes != nil {
		if cs := w.changes.flushed(); len(cs) > 0 {
			w.opts.Hooks.Programmed(end, cs)
		}
	}
	if full {
		w.log.Info("full reconcile done", "operations", res.Operations, "duration", res.Duration, "batch", batchLen,
			"applied_in", applied.Round(time.Millisecond))
		if w.ready.CompareAndSwap(false, true) {
			close(w.readyC)
			w.log.Info("ready: the dataplane enforces the cluster's policies")
			if h := w.opts.Hooks.Ready; h != nil {
				h()
			}
		}
	} else if res.Operations > 0 {
		w.log.Debug("flushed", "operations", res.Operations, "duration", res.Duration, "batch", batchLen)
	}
}
