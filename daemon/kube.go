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
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
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

// apiClients are the clients of one API server: the core clientset, and the
// network-policy-api clientset of ClusterNetworkPolicies (a CRD).
type apiClients struct {
	kube kubernetes.Interface
	cnp  cnpclient.Interface
	host string
}

// newClients builds the clients of cfg. Both share its transport (and so a
// wrapper such as the API gate). Custom resources are served in JSON only,
// which is the default of a config without a content type.
func newClients(cfg *rest.Config) (apiClients, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return apiClients{}, fmt.Errorf("create API client for %s: %w", cfg.Host, err)
	}
	cnp, err := cnpclient.NewForConfig(cfg)
	if err != nil {
		return apiClients{}, fmt.Errorf("create ClusterNetworkPolicy client for %s: %w", cfg.Host, err)
	}
	return apiClients{kube: kube, cnp: cnp, host: cfg.Host}, nil
}

// newClient returns the clients for the kubeconfig at path (in-cluster if
// empty), with their transport wrapped by wrap when not nil.
func newClient(path string, wrap transport.WrapperFunc) (apiClients, error) {
	cfg, err := restConfig(path)
	if err != nil {
		return apiClients{}, err
	}
	if wrap != nil {
		cfg.Wrap(wrap)
	}
	return newClients(cfg)
}
