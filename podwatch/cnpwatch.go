package podwatch

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	cnpinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions/apis/v1beta1"
	cnplisters "sigs.k8s.io/network-policy-api/pkg/client/listers/apis/v1beta1"
)

// ClusterNetworkPolicies is the API that ClusterNetworkPolicy is watched in:
// the storage version of network-policy-api's CRD, and its resource.
const (
	ClusterNetworkPolicyGroupVersion = "policy.networking.k8s.io/v1beta1"
	clusterNetworkPolicyResource     = "clusternetworkpolicies"
)

// DefaultCNPDiscoveryPeriod is how often discovery is asked whether the
// ClusterNetworkPolicy API is served. One small GET per period; a CRD
// installed or removed is noticed within it (a removal usually sooner: the
// informer's list fails with NotFound and asks at once).
const DefaultCNPDiscoveryPeriod = 30 * time.Second

// cnpDiscoveryRetry is the wait after a failed discovery before the first
// answer: readiness waits for that answer, so it is asked again soon.
const cnpDiscoveryRetry = time.Second

// ClusterNetworkPolicyOptions configure the watch of ClusterNetworkPolicies.
type ClusterNetworkPolicyOptions struct {
	// Client lists and watches ClusterNetworkPolicies and asks discovery
	// whether they are served. nil turns them off: NetworkPolicy only.
	Client cnpclient.Interface
	// DiscoveryPeriod is the period of the discovery check while the API is
	// served or not; 0 means DefaultCNPDiscoveryPeriod.
	DiscoveryPeriod time.Duration
}

// cnpWatch follows the ClusterNetworkPolicy API, which exists only while its
// CRD is installed: it asks discovery every period, runs an informer (a
// generation) while the API is served, and stops it when the API goes. An
// informer for a resource that is not served would fail to list forever, and
// the watcher, which waits for every informer to sync, would never be ready.
type cnpWatch struct {
	w      *Watcher
	client cnpclient.Interface
	period time.Duration
	// served asks discovery; tests replace it.
	served func(ctx context.Context) (bool, error)
	// recheck asks the loop for a discovery now (buffered: requests coalesce).
	recheck chan struct{}

	// answered is set once discovery has answered: until then the watcher
	// cannot tell whether it must wait for ClusterNetworkPolicies.
	answered atomic.Bool
	mu       sync.Mutex
	gen      *cnpGeneration // nil while the API is not served
}

// cnpGeneration is one informer of ClusterNetworkPolicies, from the API's
// appearance to its disappearance (or the watcher's end).
type cnpGeneration struct {
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
	lister   cnplisters.ClusterNetworkPolicyLister
	cancel   context.CancelFunc
	done     chan struct{}
}

func newCNPWatch(w *Watcher, opts ClusterNetworkPolicyOptions) *cnpWatch {
	if opts.Client == nil {
		return nil
	}
	c := &cnpWatch{w: w, client: opts.Client, period: opts.DiscoveryPeriod, recheck: make(chan struct{}, 1)}
	if c.period <= 0 {
		c.period = DefaultCNPDiscoveryPeriod
	}
	c.served = c.discover
	return c
}

// discover reports whether the API server serves ClusterNetworkPolicies in
// ClusterNetworkPolicyGroupVersion.
func (c *cnpWatch) discover(ctx context.Context) (bool, error) {
	var (
		list *metav1.APIResourceList
		err  error
	)
	// The real discovery client takes a context (a stopping watcher does not
	// wait for an unreachable server); the interface does not promise one.
	if d, ok := c.client.Discovery().(discovery.ServerResourcesInterfaceWithContext); ok {
		list, err = d.ServerResourcesForGroupVersionWithContext(ctx, ClusterNetworkPolicyGroupVersion)
	} else {
		list, err = c.client.Discovery().ServerResourcesForGroupVersion(ClusterNetworkPolicyGroupVersion)
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovery of %s: %w", ClusterNetworkPolicyGroupVersion, err)
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == clusterNetworkPolicyResource }), nil
}

// run asks discovery at once, then every period and when asked, and starts
// or stops the informer to follow the answer, until ctx ends.
func (c *cnpWatch) run(ctx context.Context) {
	defer c.stop()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.recheck:
			t.Stop()
		}
		wait := c.period
		if !c.check(ctx) && !c.answered.Load() {
			wait = cnpDiscoveryRetry
		}
		t.Reset(wait)
	}
}

// askAgain makes the loop ask discovery now (e.g. the informer's list found
// the resource gone).
func (c *cnpWatch) askAgain() {
	select {
	case c.recheck <- struct{}{}:
	default:
	}
}

// check asks discovery once and follows the answer; it returns false when
// discovery failed (nothing changes then).
func (c *cnpWatch) check(ctx context.Context) bool {
	served, err := c.served(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.w.log.Warn("cannot tell whether the ClusterNetworkPolicy API is served; asking again", "error", err)
		}
		return false
	}
	c.mu.Lock()
	running := c.gen != nil
	c.mu.Unlock()
	first := !c.answered.Load()
	switch {
	case served && !running:
		c.start(ctx)
		switch {
		case c.w.listFailed != nil:
			// Sync (explain, dump --desired) lists once and watches nothing:
			// what it says about the daemon's lifecycle is noise on a CLI.
			c.w.log.Debug("ClusterNetworkPolicy API is served; listing ClusterNetworkPolicies", "api", ClusterNetworkPolicyGroupVersion)
		case first:
			c.w.log.Info("ClusterNetworkPolicy API is served; watching ClusterNetworkPolicies", "api", ClusterNetworkPolicyGroupVersion)
		default:
			c.w.log.Info("ClusterNetworkPolicy API appeared (CRD installed); watching ClusterNetworkPolicies", "api", ClusterNetworkPolicyGroupVersion)
		}
	case !served && running:
		n := c.stopAndForget()
		c.w.log.Warn("ClusterNetworkPolicy API is gone (CRD removed): its policies are removed; enforcing NetworkPolicy only until it returns",
			"api", ClusterNetworkPolicyGroupVersion, "removed", n, "check_every", c.period)
	case !served && first && c.w.listFailed != nil:
		c.w.log.Info("ClusterNetworkPolicy API is not served (its CRD is not installed): NetworkPolicy only", "api", ClusterNetworkPolicyGroupVersion)
	case !served && first:
		c.w.log.Warn("ClusterNetworkPolicy API is not served (its CRD is not installed): enforcing NetworkPolicy only; watching for it",
			"api", ClusterNetworkPolicyGroupVersion, "check_every", c.period)
	default:
		return true // no change
	}
	c.answered.Store(true)
	if h := c.w.opts.Hooks.ClusterNetworkPolicyAPI; h != nil {
		h(served)
	}
	return true
}

// start runs a new informer generation until ctx ends or stop is called.
func (c *cnpWatch) start(ctx context.Context) {
	inf := cnpinformers.NewClusterNetworkPolicyInformer(c.client, 0, cache.Indexers{})
	g := &cnpGeneration{informer: inf, lister: cnplisters.NewClusterNetworkPolicyLister(inf.GetIndexer()), done: make(chan struct{})}
	// Set before the informer runs, so these cannot fail.
	_ = inf.SetTransform(Transform)
	_ = inf.SetWatchErrorHandlerWithContext(c.w.watchErrorHandler(KindClusterNetworkPolicy))
	reg, err := inf.AddEventHandler(c.w.handler(KindClusterNetworkPolicy))
	if err != nil {
		c.w.log.Error("cannot watch ClusterNetworkPolicies", "error", err)
		return
	}
	g.reg = reg
	gctx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	c.mu.Lock()
	c.gen = g
	c.mu.Unlock()
	go func() {
		defer close(g.done)
		inf.RunWithContext(gctx)
	}()
}

// stop ends the running generation, if any, and waits for it (briefly, see
// shutdownGrace).
func (c *cnpWatch) stop() []string {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	g := c.gen
	c.gen = nil
	c.mu.Unlock()
	if g == nil {
		return nil
	}
	keys := g.informer.GetStore().ListKeys()
	g.cancel()
	select {
	case <-g.done:
	case <-time.After(shutdownGrace):
	}
	return keys
}

// stopAndForget ends the generation of an API that is gone and queues every
// policy it held: with no generation, applying them deletes them from the
// engine (the API server deleted them with their CRD). It returns how many.
func (c *cnpWatch) stopAndForget() int {
	keys := c.stop()
	if c.w.listing.Load() {
		for _, name := range keys {
			c.w.queue.Add(key{Kind: KindClusterNetworkPolicy, Name: name})
		}
	}
	return len(keys)
}

// pending reports whether the watcher must still wait: discovery has not
// answered yet, or the informer has not seen its initial list.
func (c *cnpWatch) pending() bool {
	if c == nil {
		return false
	}
	if !c.answered.Load() {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen != nil && !c.gen.reg.HasSynced()
}

// cachedNames lists the names of the policies in the informer's cache.
func (c *cnpWatch) cachedNames() []string {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == nil {
		return nil
	}
	return c.gen.informer.GetStore().ListKeys()
}

// get returns the cached policy of that name; nil (and no error) when it is
// not cached or the API is not served, which means: delete it.
func (c *cnpWatch) get(name string) (*v1beta1.ClusterNetworkPolicy, error) {
	if c == nil {
		return nil, nil
	}
	c.mu.Lock()
	g := c.gen
	c.mu.Unlock()
	if g == nil {
		return nil, nil
	}
	p, err := g.lister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return p, err
}
