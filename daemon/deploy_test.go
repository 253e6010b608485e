package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// manifestScheme knows the Kubernetes types and ClusterNetworkPolicy, the
// kinds the files under deploy/ hold.
var manifestScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, policyv1beta1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// decodeManifests decodes every document of a YAML file into typed objects with
// the strict deserializer, so a misspelt field fails the test.
func decodeManifests(t *testing.T, path string) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	decoder := serializer.NewCodecFactory(manifestScheme, serializer.EnableStrict).UniversalDeserializer()
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

// TestRBACIsLeastPrivilege: the daemon may read what it watches (get, list,
// watch), get Nodes (start-up check of its node name) and get the DaemonSets of
// its own namespace (the uninstall check at shutdown), and nothing else.
func TestRBACIsLeastPrivilege(t *testing.T) {
	var role *rbacv1.ClusterRole
	var nsRole *rbacv1.Role
	var binding *rbacv1.ClusterRoleBinding
	var nsBinding *rbacv1.RoleBinding
	var sa *corev1.ServiceAccount
	for _, o := range decodeManifests(t, "deploy/rbac.yaml") {
		switch o := o.(type) {
		case *rbacv1.ClusterRole:
			role = o
		case *rbacv1.Role:
			nsRole = o
		case *rbacv1.ClusterRoleBinding:
			binding = o
		case *rbacv1.RoleBinding:
			nsBinding = o
		case *corev1.ServiceAccount:
			sa = o
		}
	}
	if role == nil || nsRole == nil || binding == nil || nsBinding == nil || sa == nil {
		t.Fatal("rbac.yaml needs a ClusterRole, a Role, their bindings and a ServiceAccount")
	}
	read := "get,list,watch"
	wantCluster := map[string]string{
		"/namespaces": read, "/pods": read, "networking.k8s.io/networkpolicies": read, "/nodes": "get",
		"policy.networking.k8s.io/clusternetworkpolicies": read,
	}
	if got := grants(t, role.Rules); !maps.Equal(got, wantCluster) {
		t.Errorf("ClusterRole grants %v, want exactly %v", got, wantCluster)
	}
	wantNS := map[string]string{"apps/daemonsets": "get"}
	if got := grants(t, nsRole.Rules); !maps.Equal(got, wantNS) || nsRole.Namespace != sa.Namespace {
		t.Errorf("Role in %q grants %v, want exactly %v in the daemon's namespace %q", nsRole.Namespace, got, wantNS, sa.Namespace)
	}
	bindsSA := func(subjects []rbacv1.Subject) bool {
		return len(subjects) == 1 && subjects[0].Kind == "ServiceAccount" && subjects[0].Name == sa.Name && subjects[0].Namespace == sa.Namespace
	}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name || !bindsSA(binding.Subjects) {
		t.Errorf("binding %+v does not bind ClusterRole %s to service account %s/%s", binding, role.Name, sa.Namespace, sa.Name)
	}
	if nsBinding.RoleRef.Kind != "Role" || nsBinding.RoleRef.Name != nsRole.Name || nsBinding.Namespace != sa.Namespace || !bindsSA(nsBinding.Subjects) {
		t.Errorf("binding %+v does not bind Role %s to service account %s/%s", nsBinding, nsRole.Name, sa.Namespace, sa.Name)
	}
}

// grants maps "group/resource" to the verbs that rules grant on it, and fails t
// on a rule limited to resource names or about non-resource URLs (none of the
// shipped roles needs one).
func grants(t *testing.T, rules []rbacv1.PolicyRule) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, r := range rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("unexpected rule %+v", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				got[g+"/"+res] = strings.Join(r.Verbs, ",")
			}
		}
	}
	return got
}

// TestNetworkPolicyRoles: the example roles split network policy between cluster
// admins (ClusterNetworkPolicy only) and namespace owners (NetworkPolicy only),
// and neither grants anything else (integration/cnp_rbac_test.go proves the
// split against a real API server).
func TestNetworkPolicyRoles(t *testing.T) {
	all := "get,list,watch,create,update,patch,delete,deletecollection"
	want := map[string]map[string]string{
		"cluster-network-admin":    {"policy.networking.k8s.io/clusternetworkpolicies": all},
		"namespace-network-editor": {"networking.k8s.io/networkpolicies": all},
	}
	got := map[string]map[string]string{}
	for _, o := range decodeManifests(t, "deploy/network-policy-roles.yaml") {
		role, ok := o.(*rbacv1.ClusterRole)
		if !ok {
			t.Fatalf("got %T, want only ClusterRoles (bindings are the cluster's choice)", o)
		}
		aggregated := slices.ContainsFunc(slices.Collect(maps.Keys(role.Labels)), func(k string) bool {
			return strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-")
		})
		if role.AggregationRule != nil || aggregated {
			t.Errorf("ClusterRole %s aggregates or is aggregated (labels %v): its grants would spread", role.Name, role.Labels)
		}
		got[role.Name] = grants(t, role.Rules)
	}
	if !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("roles grant %v, want exactly %v", got, want)
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
	// The uninstall check needs the pod's own name and namespace.
	for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != path {
			t.Errorf("%s does not come from the downward API (%s)", name, path)
		}
	}
	if sc != nil && (sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation) {
		t.Error("want readOnlyRootFilesystem and no privilege escalation")
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

// TestSystemdUnitHardening holds the unit's `systemd-analyze security` rating
// (3.7 before the hardening of issue #11) and checks that its system call
// filter lets through what the daemon needs: the netlink calls of nf_tables
// and conntrack, and what the Go runtime does all the time. CI installs
// systemd's tools; without them the test is skipped.
func TestSystemdUnitHardening(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed:", err)
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", "nftwarden.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for nftwarden.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security: %.1f", score)
	if score > 1.5 {
		t.Errorf("exposure level %.1f, want at most 1.5:\n%s", score, out)
	}

	allowed := syscallGroup(t, "@system-service")
	for _, removed := range []string{"@privileged", "@resources"} {
		for sc := range syscallGroup(t, removed) {
			delete(allowed, sc)
		}
	}
	for _, sc := range []string{
		// netlink: nf_tables, conntrack, link listing
		"socket", "bind", "connect", "getsockname", "setsockopt", "getsockopt", "sendto", "sendmsg", "recvfrom", "recvmsg",
		// the Go runtime and the HTTP server
		"clone", "clone3", "futex", "mmap", "munmap", "madvise", "rt_sigaction", "rt_sigprocmask", "tgkill",
		"epoll_create1", "epoll_ctl", "epoll_pwait", "accept4", "read", "write", "close", "openat", "nanosleep",
		"sched_yield", "getrandom",
	} {
		if !allowed[sc] {
			t.Errorf("the unit's SystemCallFilter blocks %s", sc)
		}
	}
}

// syscallGroup resolves a systemd system call group (with its nested groups)
// into system call names.
func syscallGroup(t *testing.T, group string) map[string]bool {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "syscall-filter", "--no-pager", group).Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter %s: %v", group, err)
	}
	calls := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		name := strings.TrimSpace(line)
		switch {
		case name == "" || strings.HasPrefix(name, "#"):
		case strings.HasPrefix(name, "@"):
			maps.Copy(calls, syscallGroup(t, name))
		default:
			calls[name] = true
		}
	}
	return calls
}
