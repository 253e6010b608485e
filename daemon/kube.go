package daemon

import (
	"fmt"
	"log/slog"
	"os"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/transport"
	"k8s.io/klog/v2"
)

// routeClientGoLogs sends what client-go logs (through klog: reflectors,
// informers) to log's handler, so that it has the format and level of the
// command's own lines.
func routeClientGoLogs(log *slog.Logger) {
	klog.SetSlogLogger(log.With("component", "client-go"))
}

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
