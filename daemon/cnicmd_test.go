package daemon

import (
	"bytes"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftwarden/nftwarden/daemon/cniconf"
	"github.com/nftwarden/nftwarden/nft"
)

const testConflist = `{"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [{"type": "ptp", "ipam": {"type": "host-local", "subnet": "198.18.3.0/24"}}]}` + "\n"

// cniDirs is a node's CNI configuration directory holding testConflist, an
// empty bin directory and a stand-in for the plugin binary.
func cniDirs(t *testing.T) (confDir, binDir, plugin string) {
	t.Helper()
	confDir, binDir = t.TempDir(), t.TempDir()
	plugin = filepath.Join(t.TempDir(), "nftwarden-cni")
	for path, content := range map[string]string{filepath.Join(confDir, "10-ptp.conflist"): testConflist, plugin: "plugin"} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return confDir, binDir, plugin
}

func chained(t *testing.T, confDir string) bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(confDir, "10-ptp.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), `"nftwarden-cni"`)
}

func TestCNICommand(t *testing.T) {
	clearEnv(t)
	confDir, binDir, plugin := cniDirs(t)
	tests := []struct {
		name        string
		args        []string
		wantCode    int
		wantChained bool
		wantStderr  string
	}{
		{name: "install", args: []string{"cni", "install", "--conf-dir", confDir, "--bin-dir", binDir, "--plugin-binary", plugin,
			"--socket", "/run/nftwarden/test.sock", "--plugin-timeout", "5s"}, wantChained: true, wantStderr: "nftwarden-cni installed"},
		{name: "install again", args: []string{"cni", "install", "--conf-dir", confDir, "--bin-dir", binDir, "--plugin-binary", plugin,
			"--socket", "/run/nftwarden/test.sock", "--plugin-timeout", "5s"}, wantChained: true},
		{name: "relative socket", args: []string{"cni", "install", "--conf-dir", confDir, "--socket", "cni.sock"},
			wantCode: exitUsage, wantChained: true, wantStderr: "absolute path"},
		{name: "negative timeout", args: []string{"cni", "install", "--conf-dir", confDir, "--plugin-timeout", "-1s"},
			wantCode: exitUsage, wantChained: true, wantStderr: "negative"},
		{name: "argument", args: []string{"cni", "uninstall", "now"}, wantCode: exitUsage, wantChained: true, wantStderr: "unexpected argument"},
		{name: "no configuration", args: []string{"cni", "install", "--conf-dir", t.TempDir(), "--bin-dir", binDir, "--plugin-binary", plugin},
			wantCode: exitError, wantChained: true, wantStderr: "no CNI network configuration"},
		{name: "uninstall", args: []string{"cni", "uninstall", "--conf-dir", confDir, "--bin-dir", binDir}, wantStderr: "uninstalled"},
		{name: "uninstall again", args: []string{"cni", "uninstall", "--conf-dir", confDir, "--bin-dir", binDir}},
	}
	for _, tt := range tests { // in order: each case starts where the last ended
		t.Run(tt.name, func(t *testing.T) {
			code, _, _, stderr := execCLI(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantStderr) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to say %q", code, tt.wantCode, stderr, tt.wantStderr)
			}
			if got := chained(t, confDir); got != tt.wantChained {
				t.Errorf("nftwarden-cni chained = %v, want %v", got, tt.wantChained)
			}
		})
	}
	data, _ := os.ReadFile(filepath.Join(confDir, "10-ptp.conflist"))
	if string(data) != testConflist {
		t.Errorf("after uninstall the conflist is %q, want it back as it was", data)
	}
}

func TestRunCNIConfDirFlag(t *testing.T) {
	clearEnv(t)
	for _, tt := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{name: "default: never touched", args: []string{"run", "--node-name", "n"}},
		{name: "flag", args: []string{"run", "--node-name", "n", "--cni-conf-dir", "/host/etc/cni/net.d"}, want: "/host/etc/cni/net.d"},
		{name: "environment", args: []string{"run", "--node-name", "n"}, env: "/etc/cni/net.d", want: "/etc/cni/net.d"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NFTWARDEN_CNI_CONF_DIR", tt.env)
			code, cfg, _, stderr := execCLI(t, tt.args...)
			if code != exitOK || cfg == nil {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if cfg.CNIConfDir != tt.want {
				t.Errorf("CNIConfDir %q, want %q", cfg.CNIConfDir, tt.want)
			}
		})
	}
}

// TestUninstallTakesTheCNIPluginOut: a daemon whose DaemonSet is deleted
// takes nftwarden-cni out of the node's configuration (no daemon would answer
// it); a restart leaves it chained.
func TestUninstallTakesTheCNIPluginOut(t *testing.T) {
	const ns, podName, dsName = "nftwarden", "nftwarden-abc", "nftwarden"
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: dsName, UID: "uid-1", Controller: new(true)}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podName, OwnerReferences: []metav1.OwnerReference{owner}}}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: dsName, UID: "uid-1"}}
	tests := []struct {
		name        string
		objects     []runtime.Object
		noConfDir   bool
		wantChained bool
		wantLog     string
	}{
		{name: "DaemonSet deleted", objects: []runtime.Object{pod}, wantLog: "nftwarden-cni taken out"},
		{name: "restart", objects: []runtime.Object{pod, ds}, wantChained: true, wantLog: "still exists"},
		{name: "DaemonSet deleted, no --cni-conf-dir", objects: []runtime.Object{pod}, noConfDir: true, wantChained: true, wantLog: "table deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			confDir, binDir, plugin := cniDirs(t)
			if _, err := cniconf.Install(confDir, binDir, plugin, cniconf.Entry{}); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			d := &daemon{
				cfg:       runConfig{NodeName: "node-a", Table: "nftwarden", PodName: podName, PodNamespace: ns, CleanupOnUninstall: true, CNIConfDir: confDir},
				log:       slog.New(slog.NewTextHandler(&logs, nil)),
				client:    fake.NewClientset(tt.objects...),
				dataplane: nft.NewFake("nftwarden"),
			}
			if tt.noConfDir {
				d.cfg.CNIConfDir = ""
			}
			d.cleanupIfUninstalled()
			if got := chained(t, confDir); got != tt.wantChained {
				t.Errorf("nftwarden-cni chained = %v, want %v; log:\n%s", got, tt.wantChained, logs.String())
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, logs.String())
			}
		})
	}
}

// TestDaemonSetInstallsTheCNIPlugin: the init container chains the plugin
// with the image's binary into the host's directories, and the daemon gets
// the socket's directory and the configuration directory to take it out on
// uninstall.
func TestDaemonSetInstallsTheCNIPlugin(t *testing.T) {
	ds := decodeManifests(t, "deploy/daemonset.yaml")[0].(*appsv1.DaemonSet)
	spec := ds.Spec.Template.Spec
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounts := func(c corev1.Container) map[string]string {
		m := map[string]string{}
		for _, vm := range c.VolumeMounts {
			m[vm.MountPath] = hostPaths[vm.Name]
		}
		return m
	}
	if len(spec.InitContainers) != 1 {
		t.Fatalf("%d init containers, want install-cni", len(spec.InitContainers))
	}
	ic := spec.InitContainers[0]
	wantArgs := []string{"cni", "install", "--conf-dir=/host/etc/cni/net.d", "--bin-dir=/host/opt/cni/bin",
		"--plugin-binary=/nftwarden-cni", "--socket=/run/nftwarden/cni.sock"}
	if !slices.Equal(ic.Args, wantArgs) || ic.Image != spec.Containers[0].Image {
		t.Errorf("init container %s %v, want the daemon's image with %v", ic.Image, ic.Args, wantArgs)
	}
	if got, want := mounts(ic), map[string]string{"/host/etc/cni/net.d": "/etc/cni/net.d", "/host/opt/cni/bin": "/opt/cni/bin"}; !maps.Equal(got, want) {
		t.Errorf("init container mounts %v, want %v", got, want)
	}
	if sc := ic.SecurityContext; sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 ||
		(sc.Privileged != nil && *sc.Privileged) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("init container security context %+v: want no capabilities, not privileged, no escalation", sc)
	}
	c := spec.Containers[0]
	if got, want := mounts(c), map[string]string{"/run/nftwarden": "/run/nftwarden", "/host/etc/cni/net.d": "/etc/cni/net.d"}; !maps.Equal(got, want) {
		t.Errorf("daemon mounts %v, want %v", got, want)
	}
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NFTWARDEN_CNI_CONF_DIR" })
	if i < 0 || c.Env[i].Value != "/host/etc/cni/net.d" {
		t.Error("the daemon is not told where the plugin was chained (NFTWARDEN_CNI_CONF_DIR)")
	}
}
