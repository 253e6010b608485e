package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
)

// DeployManifest returns the path of a file of daemon/deploy in the repository (e.g.
// "rbac.yaml"), which the tests apply as the project ships it.
func DeployManifest(name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "daemon", "deploy", name), nil
}

// ReadManifests decodes every document of a YAML (or JSON) file, of any kind. Empty
// documents are skipped.
func ReadManifests(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode %s (document %d): %w", path, len(objs)+1, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("%s (document %d): no kind or apiVersion", path, len(objs)+1)
		}
		objs = append(objs, u)
	}
}

// fieldManager names the harness in server-side apply.
const fieldManager = "nftwarden-integration"

// ApplyManifests applies every object of the file as the admin, in file order, the way
// `kubectl apply --server-side --force-conflicts` does: any kind the API server serves,
// namespaced or not, created or updated. It returns the objects as stored.
func (cp *ControlPlane) ApplyManifests(ctx context.Context, path string) ([]*unstructured.Unstructured, error) {
	objs, err := ReadManifests(path)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		what := fmt.Sprintf("%s %s of %s", o.GetKind(), o.GetName(), path)
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, fmt.Errorf("apply %s: %w", what, err)
		}
		var res dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := o.GetNamespace()
			if ns == "" {
				ns = metav1.NamespaceDefault
			}
			res = dyn.Resource(m.Resource).Namespace(ns)
		}
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		stored, err := res.Apply(actx, o.GetName(), o, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("apply %s: %w", what, err)
		}
		out = append(out, stored)
	}
	return out, nil
}

// ApplyDaemonRBAC applies daemon/deploy/rbac.yaml as written, once per control plane
// (later calls return the first call's result), and waits until DaemonUser may list
// pods: the authorizer sees new bindings through a cache. NewEnv calls it unless the
// Options name another kubeconfig for the daemons.
func (cp *ControlPlane) ApplyDaemonRBAC() error { return cp.rbacOnce() }

func (cp *ControlPlane) applyDaemonRBAC(ctx context.Context) error {
	path, err := DeployManifest("rbac.yaml")
	if err != nil {
		return err
	}
	if _, err := cp.ApplyManifests(ctx, path); err != nil {
		return fmt.Errorf("daemon RBAC: %w", err)
	}
	return cp.waitDaemonMayList(ctx, path, "pods", func(ctx context.Context, c kubernetes.Interface) error {
		_, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1})
		return err
	})
}

// ApplyDaemonNodePeersRBAC applies daemon/deploy/rbac-node-peers.yaml as written
// (what `--cluster-network-policy=experimental` needs beside rbac.yaml) and waits
// until DaemonUser may list nodes. It returns the objects as stored, for a test
// that removes them again.
func (cp *ControlPlane) ApplyDaemonNodePeersRBAC(ctx context.Context) ([]*unstructured.Unstructured, error) {
	path, err := DeployManifest("rbac-node-peers.yaml")
	if err != nil {
		return nil, err
	}
	applied, err := cp.ApplyManifests(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("daemon node-peers RBAC: %w", err)
	}
	return applied, cp.waitDaemonMayList(ctx, path, "nodes", func(ctx context.Context, c kubernetes.Interface) error {
		_, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
		return err
	})
}

// waitDaemonMayList waits until list, made as DaemonUser, is no longer
// forbidden: the authorizer sees new bindings through a cache.
func (cp *ControlPlane) waitDaemonMayList(ctx context.Context, path, what string, list func(context.Context, kubernetes.Interface) error) error {
	client, err := kubernetes.NewForConfig(cp.DaemonConfig)
	if err != nil {
		return fmt.Errorf("daemon client: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		err := list(actx, client)
		cancel()
		if err == nil {
			return nil
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			return fmt.Errorf("RBAC applied from %s, but %s cannot list %s: %w", path, DaemonUser, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
