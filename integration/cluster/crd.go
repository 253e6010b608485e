package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// CRDChannel is a release channel of the network-policy-api CRDs: the directory of
// config/crd in the module that holds the manifests.
type CRDChannel string

const (
	// StandardChannel has the fields of the standard API only.
	StandardChannel CRDChannel = "standard"
	// ExperimentalChannel adds experimental fields (e.g. nodes and domainNames peers).
	ExperimentalChannel CRDChannel = "experimental"
)

// networkPolicyAPIModule is the Go module that defines ClusterNetworkPolicy; the
// integration module requires it (and compiles its typed client from it).
const networkPolicyAPIModule = "sigs.k8s.io/network-policy-api"

// ClusterNetworkPolicyResource is the resource the CRD serves, in its storage version.
var ClusterNetworkPolicyResource = schema.GroupVersionResource{
	Group: policyv1beta1.GroupVersion.Group, Version: policyv1beta1.GroupVersion.Version, Resource: "clusternetworkpolicies",
}

// clusterNetworkPolicyCRDName is metadata.name of the CRD (<plural>.<group>).
var clusterNetworkPolicyCRDName = ClusterNetworkPolicyResource.Resource + "." + ClusterNetworkPolicyResource.Group

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// crdReadyTimeout bounds the wait for a CRD to be Established and in discovery (a
// second or two is usual; the schema of this one is large).
const crdReadyTimeout = time.Minute

// ClusterNetworkPolicyCRD returns the path of the ClusterNetworkPolicy CRD manifest of
// channel, as shipped by the network-policy-api module at the version that
// integration/go.mod selects.
//
// The manifest is read from the module cache, located with `go mod download -json`
// run in the integration module: go:embed cannot reach into another module, and a
// copy in this repository would drift from the version whose types and client the
// tests compile against. The go command is already a requirement of the harness,
// which builds the daemon and podagent with it; the module is in the cache as soon
// as the tests have been compiled (download only verifies it then).
func ClusterNetworkPolicyCRD(channel CRDChannel) (string, error) {
	if channel != StandardChannel && channel != ExperimentalChannel {
		return "", fmt.Errorf("unknown network-policy-api CRD channel %q", channel)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "mod", "download", "-json", networkPolicyAPIModule)
	cmd.Dir = filepath.Join(root, "integration")
	what := fmt.Sprintf("locate module %s (go mod download in %s)", networkPolicyAPIModule, cmd.Dir)
	// On failure the go command still prints the JSON, with the reason in Error.
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); jerr != nil {
		return "", fmt.Errorf("%s: %w (output %q)", what, errors.Join(err, jerr), out)
	}
	switch {
	case mod.Error != "":
		return "", fmt.Errorf("%s: %s", what, mod.Error)
	case err != nil:
		return "", fmt.Errorf("%s: %w", what, err)
	case mod.Dir == "":
		return "", fmt.Errorf("%s: no directory in %q", what, out)
	}
	return filepath.Join(mod.Dir, "config", "crd", string(channel), "policy.networking.k8s.io_clusternetworkpolicies.yaml"), nil
}

// InstallClusterNetworkPolicyCRD applies the ClusterNetworkPolicy CRD of channel (see
// ClusterNetworkPolicyCRD) with server-side apply, so that installing the other
// channel later replaces it, and waits until the CRD is Established with its names
// accepted and discovery serves ClusterNetworkPolicyResource: only then do requests
// for the resource succeed, and RBAC can be tested against it.
func (cp *ControlPlane) InstallClusterNetworkPolicyCRD(ctx context.Context, channel CRDChannel) error {
	path, err := ClusterNetworkPolicyCRD(channel)
	if err != nil {
		return err
	}
	if _, err := cp.ApplyManifests(ctx, path); err != nil {
		return fmt.Errorf("install ClusterNetworkPolicy CRD (%s): %w", channel, err)
	}
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		return fmt.Errorf("discovery client: %w", err)
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, crdReadyTimeout, true, func(ctx context.Context) (bool, error) {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		defer cancel()
		crd, err := dyn.Resource(crdResource).Get(actx, clusterNetworkPolicyCRDName, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("get CRD %s: %w", clusterNetworkPolicyCRDName, err)
		}
		for _, cond := range []string{"NamesAccepted", "Established"} {
			if status := crdCondition(crd, cond); status != "True" {
				last = fmt.Sprintf("condition %s is %q", cond, status)
				return false, nil
			}
		}
		list, err := disc.ServerResourcesForGroupVersion(ClusterNetworkPolicyResource.GroupVersion().String())
		if err != nil {
			last = fmt.Sprintf("discovery: %v", err)
			return false, nil
		}
		served := slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool {
			return r.Name == ClusterNetworkPolicyResource.Resource
		})
		if !served {
			last = "established, but not in discovery yet"
		}
		return served, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s (%s) not ready (%s): %w", clusterNetworkPolicyCRDName, channel, last, err)
	}
	return nil
}

// RemoveClusterNetworkPolicyCRD deletes the ClusterNetworkPolicy CRD, and with it
// every ClusterNetworkPolicy, and waits until it is gone. A missing CRD is not an
// error.
func (cp *ControlPlane) RemoveClusterNetworkPolicyCRD(ctx context.Context) error {
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	crds := dyn.Resource(crdResource)
	dctx, cancel := context.WithTimeout(ctx, apiTimeout)
	err = crds.Delete(dctx, clusterNetworkPolicyCRDName, metav1.DeleteOptions{})
	cancel()
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete CRD %s: %w", clusterNetworkPolicyCRDName, err)
	}
	// The API server's own finalizer removes the objects first, then the CRD.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, crdReadyTimeout, true, func(ctx context.Context) (bool, error) {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		defer cancel()
		_, err := crds.Get(actx, clusterNetworkPolicyCRDName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("CRD %s not removed: %w", clusterNetworkPolicyCRDName, err)
	}
	return nil
}

// crdCondition returns the status ("True", "False", "Unknown") of the condition of
// type typ of a CRD, or "" if it has none.
func crdCondition(crd *unstructured.Unstructured, typ string) string {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}
