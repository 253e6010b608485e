package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/transport"

	"github.com/nftwarden/nftwarden/enforcer"
)

// restConfig loads the client configuration: the kubeconfig file at path, or the
// in-cluster service account when path is empty.
func restConfig(path string) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if path == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig given (or NFTWARDEN_KUBECONFIG, KUBECONFIG) and not running in a pod: %w", err)
		}
	} else {
		// Read it ourselves first: clientcmd's error for a missing or unreadable
		// file does not say which flag it came from.
		if _, err := os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("read kubeconfig: %w", err)
		}
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
		}
	}
	cfg.UserAgent = "nftwarden/" + buildVersion()
	return cfg, nil
}

// newClient returns a clientset for the kubeconfig at path (in-cluster if empty),
// with its transport wrapped by wrap when not nil.
func newClient(path string, wrap transport.WrapperFunc) (kubernetes.Interface, string, error) {
	cfg, err := restConfig(path)
	if err != nil {
		return nil, "", err
	}
	if wrap != nil {
		cfg.Wrap(wrap)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("create API client for %s: %w", cfg.Host, err)
	}
	return c, cfg.Host, nil
}

// retryable reports whether a failed API call may succeed later (the server is
// unreachable, overloaded or starting) rather than being refused for good.
func retryable(err error) bool {
	switch {
	case apierrors.IsUnauthorized(err), apierrors.IsForbidden(err), apierrors.IsNotFound(err),
		apierrors.IsBadRequest(err), apierrors.IsInvalid(err), apierrors.IsMethodNotSupported(err):
		return false
	}
	return true
}

// withRetry calls f until it succeeds, fails for good, or ctx ends, waiting with
// exponential backoff between attempts and logging each failure.
func withRetry(ctx context.Context, log *slog.Logger, host, what string, f func(context.Context) error) error {
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: 10 * time.Second}
	for attempt := 1; ; attempt++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return fmt.Errorf("%s from API server %s: %w", what, host, err)
		}
		delay := backoff.Step()
		log.Warn("API server request failed; retrying", "server", host, "request", what,
			"attempt", attempt, "retry_in", delay.Round(time.Millisecond), "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s from API server %s: gave up after %d attempts: %w", what, host, attempt, errors.Join(ctx.Err(), err))
		case <-time.After(delay):
		}
	}
}

// loadModel lists namespaces, pods and network policies of the whole cluster
// into eng (one-shot commands: dump --desired, explain). Objects the engine
// rejects are logged; they fail closed in the model as in the daemon.
func loadModel(ctx context.Context, log *slog.Logger, client kubernetes.Interface, host string, eng *enforcer.Engine) error {
	report := func(kind, ns, name string, err error) {
		if err != nil {
			log.Warn("object rejected (its invalid parts fail closed)", "kind", kind, "namespace", ns, "name", name, "error", err)
		}
	}
	err := withRetry(ctx, log, host, "list namespaces", func(ctx context.Context) error {
		list, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for i := range list.Items {
			report("Namespace", "", list.Items[i].Name, eng.UpsertNamespace(&list.Items[i]))
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = withRetry(ctx, log, host, "list pods", func(ctx context.Context) error {
		list, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for i := range list.Items {
			p := &list.Items[i]
			report("Pod", p.Namespace, p.Name, eng.UpsertPod(p))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return withRetry(ctx, log, host, "list networkpolicies", func(ctx context.Context) error {
		list, err := client.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for i := range list.Items {
			np := &list.Items[i]
			report("NetworkPolicy", np.Namespace, np.Name, eng.UpsertNetworkPolicy(np))
		}
		return nil
	})
}
