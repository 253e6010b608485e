package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// apiTimeout bounds every single API call of the harness.
const apiTimeout = 15 * time.Second

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// Name returns base with the environment's random suffix, for names that must be unique
// on a control plane shared by several tests (namespaces).
func (e *Env) Name(base string) string { return base + "-" + e.short }

// CreateNamespace creates a namespace with labels and its "default" ServiceAccount (no
// controller-manager runs to create it, and pods cannot be created without it).
func (e *Env) CreateNamespace(ctx context.Context, name string, labels map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := e.CP.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	e.mu.Lock()
	e.namespaces = append(e.namespaces, name)
	e.mu.Unlock()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "default"}}
	if _, err := e.CP.Client.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create default service account in %s: %w", name, err)
	}
	return nil
}

// SetNamespaceLabels replaces the labels of a namespace (kubernetes.io/metadata.name,
// which the API server maintains, stays).
func (e *Env) SetNamespaceLabels(ctx context.Context, name string, labels map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ns, err := e.CP.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ns.Labels = maps.Clone(labels)
		_, err = e.CP.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("set labels of namespace %s: %w", name, err)
	}
	return nil
}

// DeleteNamespace deletes a namespace and what the harness put in it (pods and their
// network namespaces, policies, service accounts). Without a namespace controller a
// deleted namespace would stay Terminating forever, so the harness empties it and then
// clears its finalizer, as that controller would.
func (e *Env) DeleteNamespace(ctx context.Context, name string) error {
	e.forgetPods(func(p *Pod) bool { return p.Namespace == name }, true)
	// One request for all its pods, API-only ones included (there may be thousands);
	// deleting that many takes the API server longer than one call usually may.
	ctx, cancel := context.WithTimeout(ctx, 4*apiTimeout)
	defer cancel()
	c := e.CP.Client
	if err := c.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete pods of %s: %w", name, err)
	}
	if err := c.NetworkingV1().NetworkPolicies(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete policies of %s: %w", name, err)
	}
	if err := c.CoreV1().ServiceAccounts(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete service accounts of %s: %w", name, err)
	}
	if err := c.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	ns, err := c.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		ns.Spec.Finalizers = nil
		if _, err := c.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !isNotFound(err) {
			return fmt.Errorf("finalize namespace %s: %w", name, err)
		}
	} else if !isNotFound(err) {
		return fmt.Errorf("get namespace %s: %w", name, err)
	}
	e.mu.Lock()
	e.namespaces = slices.DeleteFunc(e.namespaces, func(n string) bool { return n == name })
	e.mu.Unlock()
	return nil
}

// SetPodLabels replaces the labels of a pod.
func (e *Env) SetPodLabels(ctx context.Context, p *Pod, labels map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := e.CP.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		obj.Labels = maps.Clone(labels)
		_, err = e.CP.Client.CoreV1().Pods(p.Namespace).Update(ctx, obj, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("set labels of pod %s: %w", p, err)
	}
	return nil
}

// ApplyPolicy creates the NetworkPolicy, or replaces its spec, labels and annotations
// if it exists.
func (e *Env) ApplyPolicy(ctx context.Context, np *networkingv1.NetworkPolicy) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	api := e.CP.Client.NetworkingV1().NetworkPolicies(np.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := api.Get(ctx, np.Name, metav1.GetOptions{})
		if isNotFound(err) {
			_, err = api.Create(ctx, np, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Spec = *np.Spec.DeepCopy()
		cur.Labels = maps.Clone(np.Labels)
		cur.Annotations = maps.Clone(np.Annotations)
		_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("apply network policy %s/%s: %w", np.Namespace, np.Name, err)
	}
	return nil
}

// DeletePolicy deletes a NetworkPolicy; a missing one is not an error.
func (e *Env) DeletePolicy(ctx context.Context, namespace, name string) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	err := e.CP.Client.NetworkingV1().NetworkPolicies(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("delete network policy %s/%s: %w", namespace, name, err)
	}
	return nil
}
