package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nftwarden/nftwarden/nft"
)

// TestCleanupIfUninstalled stops a daemon that runs as pod nftwarden/nftwarden-abc
// of DaemonSet nftwarden/nftwarden in the situations a node can see, and checks
// whether the table is deleted.
func TestCleanupIfUninstalled(t *testing.T) {
	const ns, podName, dsName = "nftwarden", "nftwarden-abc", "nftwarden"
	dsUID := types.UID("uid-1")
	daemonSet := func(tweak func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
		ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: dsName, UID: dsUID}}
		if tweak != nil {
			tweak(ds)
		}
		return ds
	}
	ownedPod := func(owner *metav1.OwnerReference) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podName}}
		if owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{*owner}
		}
		return p
	}
	dsOwner := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: dsName, UID: dsUID, Controller: new(true)}
	now := metav1.Now()
	tests := []struct {
		name       string
		objects    []runtime.Object
		cfg        func(*runConfig)
		apiDown    bool
		learned    *metav1.OwnerReference // the owner read at start-up, if any
		wantDelete bool
		wantLog    string
	}{
		{name: "rolling update or restart: DaemonSet exists", objects: []runtime.Object{ownedPod(dsOwner), daemonSet(nil)},
			wantLog: "still exists"},
		{name: "DaemonSet deleted (background propagation)", objects: []runtime.Object{ownedPod(dsOwner)},
			wantDelete: true, wantLog: "was deleted"},
		{name: "DaemonSet being deleted (foreground propagation)",
			objects: []runtime.Object{ownedPod(dsOwner), daemonSet(func(ds *appsv1.DaemonSet) {
				ds.DeletionTimestamp = &now
				ds.Finalizers = []string{metav1.FinalizerDeleteDependents}
			})},
			wantDelete: true, wantLog: "being deleted"},
		{name: "DaemonSet replaced under the same name",
			objects: []runtime.Object{ownedPod(dsOwner), daemonSet(func(ds *appsv1.DaemonSet) { ds.UID = "uid-2" })},
			wantLog: "replaced"},
		{name: "pod without a DaemonSet owner", objects: []runtime.Object{ownedPod(nil)}, wantLog: "not controlled by a DaemonSet"},
		{name: "own pod not found", wantLog: "cannot tell"},
		{name: "own pod gone, its owner read at start-up", objects: nil, learned: dsOwner, wantDelete: true, wantLog: "was deleted"},
		{name: "API server unreachable", objects: []runtime.Object{ownedPod(dsOwner)}, apiDown: true, wantLog: "cannot tell"},
		{name: "not running as a pod", objects: []runtime.Object{ownedPod(dsOwner)},
			cfg: func(c *runConfig) { c.PodName = "" }, wantLog: "rules stay in place"},
		{name: "cleanup on uninstall off", objects: []runtime.Object{ownedPod(dsOwner)},
			cfg: func(c *runConfig) { c.CleanupOnUninstall = false }, wantLog: "rules stay in place"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.objects...)
			if tc.apiDown {
				client.PrependReactor("get", "daemonsets", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, errors.New("dial tcp 10.0.0.1:443: connect: connection refused")
				})
			}
			dp := nft.NewFake("nftwarden")
			if err := dp.Apply(context.Background(), &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpAddChain, Name: "x", Chain: &nft.Chain{Name: "x"}}}}); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			d := &daemon{
				cfg: runConfig{NodeName: "node-a", Table: "nftwarden", PodName: podName, PodNamespace: ns,
					CleanupOnUninstall: true},
				log:       slog.New(slog.NewTextHandler(&logs, nil)),
				client:    client,
				dataplane: dp,
			}
			if tc.cfg != nil {
				tc.cfg(&d.cfg)
			}
			if tc.learned != nil {
				d.owner.known, d.owner.owner = true, tc.learned
			}
			d.cleanupIfUninstalled()
			_, err := dp.Read(context.Background())
			if deleted := nft.IsNotFound(err); deleted != tc.wantDelete {
				t.Errorf("table deleted = %v, want %v (read: %v); log:\n%s", deleted, tc.wantDelete, err, logs.String())
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}
