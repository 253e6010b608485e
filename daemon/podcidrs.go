package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// First-packet isolation needs the node's pod CIDRs: --pod-cidr, or the
// spec.podCIDRs of the daemon's own Node, which the node IPAM controller
// sets once the node has registered (a new node's daemon may start first).
const (
	// podCIDRFirstWait bounds the read of the Node before the watcher
	// starts: the first reconcile then carries the isolation.
	podCIDRFirstWait = 10 * time.Second
	// podCIDRRetry is the period of the reads while the Node has none.
	podCIDRRetry = 30 * time.Second
)

// podCIDRDiscovery reads the node's pod CIDRs from its Node and hands them
// to the engine.
type podCIDRDiscovery struct {
	client kubernetes.Interface
	node   string
	log    *slog.Logger
	// set hands them to the engine (Engine.SetPodCIDRs); reconcile asks
	// the watcher to program them (RequestReconcile) when they come after
	// the start.
	set       func([]netip.Prefix) error
	reconcile func()
	// firstWait and retry are podCIDRFirstWait and podCIDRRetry (shorter
	// in tests).
	firstWait, retry time.Duration
}

// start reads the Node once, bounded by firstWait, and hands its pod CIDRs
// to the engine. When it has none yet (or the read failed), it says so once
// and reads it again every retry on wg until it has, then programs them.
func (pd *podCIDRDiscovery) start(ctx context.Context, wg *sync.WaitGroup) {
	first, cancel := context.WithTimeout(ctx, pd.firstWait)
	cidrs, err := nodePodCIDRs(first, pd.client, pd.node)
	cancel()
	var why any = err
	switch {
	case err != nil:
	case len(cidrs) == 0:
		why = "the Node has no spec.podCIDRs yet"
	case pd.apply(cidrs):
		return
	default:
		why = "the engine refused them"
	}
	pd.log.Warn("first-packet isolation waits for this node's pod CIDRs: new pods are open until their status reaches the daemon "+
		"(--"+flagPodCIDR+" gives them)", "node", pd.node, "reason", why, "retry_every", pd.retry)
	wg.Go(func() { pd.poll(ctx) })
}

// poll reads the Node every retry until it has pod CIDRs or ctx ends.
func (pd *podCIDRDiscovery) poll(ctx context.Context) {
	t := time.NewTicker(pd.retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cidrs, err := nodePodCIDRs(ctx, pd.client, pd.node)
		switch {
		case err != nil:
			pd.log.Debug("reading this node's pod CIDRs failed; retrying", "node", pd.node, "error", err)
		case len(cidrs) > 0 && pd.apply(cidrs):
			pd.reconcile()
			return
		}
	}
}

// apply hands cidrs to the engine and reports whether it took them.
func (pd *podCIDRDiscovery) apply(cidrs []netip.Prefix) bool {
	if err := pd.set(cidrs); err != nil {
		pd.log.Error("the engine refused this node's pod CIDRs; first-packet isolation stays off", "pod_cidrs", cidrs, "error", err)
		return false
	}
	pd.log.Info("first-packet isolation on: addresses of this node's pod CIDRs that are no known pod's are dropped",
		"pod_cidrs", cidrs, "source", "Node "+pd.node)
	return true
}

// nodePodCIDRs reads the pod CIDRs of Node name: spec.podCIDRs, or the
// older spec.podCIDR; none when the node IPAM controller has not set them
// (or does not run: then --pod-cidr gives them).
func nodePodCIDRs(ctx context.Context, client kubernetes.Interface, name string) ([]netip.Prefix, error) {
	n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("no Node %q (not registered yet, or --%s differs from the kubelet's): %w", name, flagNodeName, err)
	case err != nil:
		return nil, fmt.Errorf("get Node %q: %w", name, err)
	}
	return parseNodePodCIDRs(n)
}

// parseNodePodCIDRs parses the pod CIDRs of n (masked: the node means its
// network).
func parseNodePodCIDRs(n *corev1.Node) ([]netip.Prefix, error) {
	in := n.Spec.PodCIDRs
	if len(in) == 0 && n.Spec.PodCIDR != "" {
		in = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("node %q: spec.podCIDRs %q: %w", n.Name, s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
