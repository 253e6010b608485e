package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// uninstallCheckTimeout bounds the API requests that decide, at shutdown,
// whether the daemon is being uninstalled. It is a small part of the pod's
// termination grace period (30 s in daemon/deploy/daemonset.yaml); when it
// runs out the rules stay in place.
const uninstallCheckTimeout = 10 * time.Second

// uninstalling reports whether the daemon's own pod is stopped because the
// DaemonSet that owns it (owner, from the pod's controller reference) is gone
// or being deleted, with the reason either way.
//
// Stopping must never remove the rules on a restart or a rolling update: the
// next daemon takes over the table without a gap. But when the DaemonSet is
// deleted nothing takes over, and every node would keep its last table
// forever: a new pod that later gets a deleted pod's address inherits that
// pod's isolation. The owner tells the two apart:
//   - the DaemonSet is not found (deleted with background propagation, the
//     default: the garbage collector deletes the pods after their owner), or it
//     carries a deletionTimestamp (foreground propagation): uninstall;
//   - it exists, with the UID the pod's owner reference names: a restart, an
//     eviction or a rolling update: keep the rules;
//   - it exists with another UID: it was deleted and created again under the
//     same name (`kubectl replace --force`, a re-install), and its own pod will
//     take the table over: keep the rules.
//
// Any error (the API server unreachable; the pod gone before its owner could
// be read) keeps the rules, and so does a pod without a DaemonSet owner: a
// stale table fails closed, a removed one would fail open.
func uninstalling(ctx context.Context, client kubernetes.Interface, namespace string, owner *metav1.OwnerReference) (bool, string, error) {
	ds, err := client.AppsV1().DaemonSets(namespace).Get(ctx, owner.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, fmt.Sprintf("DaemonSet %s/%s was deleted", namespace, owner.Name), nil
	case err != nil:
		return false, "", fmt.Errorf("read DaemonSet %s/%s: %w", namespace, owner.Name, err)
	case ds.UID != owner.UID:
		return false, fmt.Sprintf("DaemonSet %s/%s was replaced by a new one, whose pod takes over", namespace, owner.Name), nil
	case ds.DeletionTimestamp != nil:
		return true, fmt.Sprintf("DaemonSet %s/%s is being deleted", namespace, owner.Name), nil
	}
	return false, fmt.Sprintf("DaemonSet %s/%s still exists (restart or rolling update)", namespace, owner.Name), nil
}

// podOwner reads the daemon's own pod and returns the DaemonSet that controls
// it, or nil if none does.
func podOwner(ctx context.Context, client kubernetes.Interface, namespace, pod string) (*metav1.OwnerReference, error) {
	p, err := client.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read own pod %s/%s: %w", namespace, pod, err)
	}
	owner := metav1.GetControllerOf(p)
	if owner == nil || owner.Kind != "DaemonSet" || owner.APIVersion != appsv1.SchemeGroupVersion.String() {
		return nil, nil
	}
	return owner, nil
}

// ownerWatch remembers the daemon pod's DaemonSet, read once at start-up: at
// shutdown the pod object may already be gone (deleted with no grace period,
// which stops the container all the same), and then only this record tells
// which DaemonSet to look at.
type ownerWatch struct {
	mu    sync.Mutex
	known bool
	owner *metav1.OwnerReference // nil: no DaemonSet owner
}

// learn reads the owner, retrying until it succeeds or ctx ends.
func (o *ownerWatch) learn(ctx context.Context, d *daemon) {
	for delay := time.Second; ; delay = min(2*delay, time.Minute) {
		owner, err := podOwner(ctx, d.client, d.cfg.PodNamespace, d.cfg.PodName)
		if err == nil {
			o.mu.Lock()
			o.known, o.owner = true, owner
			o.mu.Unlock()
			return
		}
		d.log.Debug("reading the daemon's own pod failed; retrying", "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func (o *ownerWatch) get() (owner *metav1.OwnerReference, known bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owner, o.known
}

// cleanupIfUninstalled runs at shutdown: if the daemon's DaemonSet is being
// deleted it deletes the table, otherwise it leaves the rules in place.
func (d *daemon) cleanupIfUninstalled() {
	if d.cfg.PodName == "" || d.cfg.PodNamespace == "" || !d.cfg.CleanupOnUninstall {
		d.log.Info("stopping; the programmed rules stay in place")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), uninstallCheckTimeout)
	defer cancel()
	owner, known := d.owner.get()
	var err error
	if !known {
		owner, err = podOwner(ctx, d.client, d.cfg.PodNamespace, d.cfg.PodName)
	}
	if err == nil && owner == nil {
		d.log.Info("stopping; the programmed rules stay in place",
			"reason", fmt.Sprintf("pod %s/%s is not controlled by a DaemonSet", d.cfg.PodNamespace, d.cfg.PodName))
		return
	}
	var gone bool
	var why string
	if err == nil {
		gone, why, err = uninstalling(ctx, d.client, d.cfg.PodNamespace, owner)
	}
	if err != nil {
		d.log.Warn("stopping; cannot tell whether nftwarden is being uninstalled, so the programmed rules stay in place",
			"error", err)
		return
	}
	if !gone {
		d.log.Info("stopping; the programmed rules stay in place", "reason", why)
		return
	}
	// The plugin first: from here on no daemon answers it, and a conflist
	// that still names it would keep every new pod of the node from starting.
	uninstallCNIPlugin(d.cfg.CNIConfDir, d.log.With("reason", why))
	if err := d.dataplane.Cleanup(ctx); err != nil {
		d.log.Error("uninstalling, but deleting the table failed; run `nftwarden cleanup` on this node",
			"reason", why, "table", "inet "+d.cfg.Table, "error", err)
		return
	}
	d.log.Info("uninstalled: table deleted, network policy is no longer enforced on this node",
		"reason", why, "table", "inet "+d.cfg.Table)
}
