package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// decodeManifests decodes every document of a YAML file into typed objects with
// the strict deserializer, so a misspelt field fails the test.
func decodeManifests(t *testing.T, path string) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		json, err := utilyaml.ToJSON(doc)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		obj, _, err := decoder.Decode(json, nil, nil)
		if err != nil {
			t.Fatalf("%s: decode: %v", path, err)
		}
		objs = append(objs, obj)
	}
}

func TestRBACIsLeastPrivilege(t *testing.T) {
	var role *rbacv1.ClusterRole
	var binding *rbacv1.ClusterRoleBinding
	var sa *corev1.ServiceAccount
	for _, o := range decodeManifests(t, "deploy/rbac.yaml") {
		switch o := o.(type) {
		case *rbacv1.ClusterRole:
			role = o
		case *rbacv1.ClusterRoleBinding:
			binding = o
		case *corev1.ServiceAccount:
			sa = o
		}
	}
	if role == nil || binding == nil || sa == nil {
		t.Fatal("rbac.yaml needs a ClusterRole, a ClusterRoleBinding and a ServiceAccount")
	}
	granted := map[string]bool{}
	for _, r := range role.Rules {
		if !slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("rule %v grants verbs %v, want exactly get, list, watch", r.Resources, r.Verbs)
		}
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("unexpected rule %+v", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				granted[g+"/"+res] = true
			}
		}
	}
	want := []string{"/namespaces", "/pods", "networking.k8s.io/networkpolicies"}
	var got []string
	for k := range granted {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("granted resources %v, want exactly %v", got, want)
	}
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 ||
		binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("binding %+v does not bind role %s to service account %s/%s", binding, role.Name, sa.Namespace, sa.Name)
	}
}

func TestDaemonSet(t *testing.T) {
	objs := decodeManifests(t, "deploy/daemonset.yaml")
	if len(objs) != 1 {
		t.Fatalf("%d objects, want one DaemonSet", len(objs))
	}
	ds, ok := objs[0].(*appsv1.DaemonSet)
	if !ok {
		t.Fatalf("got %T, want a DaemonSet", objs[0])
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("not hostNetwork: the table would be programmed in the pod's own namespace")
	}
	if spec.ServiceAccountName != "nftwarden" {
		t.Errorf("serviceAccountName %q", spec.ServiceAccountName)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN"}) ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities %+v, want drop ALL, add NET_ADMIN only", sc)
	}
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged container")
	}
	var nodeName bool
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
		if e.Name == "NFTWARDEN_METRICS_ADDRESS" && e.Value != "127.0.0.1:9640" {
			t.Errorf("metrics address %q, want 127.0.0.1:9640", e.Value)
		}
	}
	if !nodeName {
		t.Error("NODE_NAME does not come from the downward API (spec.nodeName)")
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Host != "127.0.0.1" || p.HTTPGet.Port.IntValue() != 9640 {
			t.Errorf("%s probe %+v, want GET http://127.0.0.1:9640%s", name, p, path)
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")
	if !slices.Equal(c.Args, []string{"run"}) {
		t.Errorf("args %v, want [run]", c.Args)
	}
}

func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile("nftwarden.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	for _, want := range []string{
		"Type=notify", "WatchdogSec=", "AmbientCapabilities=CAP_NET_ADMIN", "CapabilityBoundingSet=CAP_NET_ADMIN",
		"Restart=always", "ExecStart=/usr/local/bin/nftwarden run", "KillSignal=SIGTERM",
	} {
		if !strings.Contains(unit, "\n"+want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}
