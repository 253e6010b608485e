package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// execCLI runs the command line with the daemon replaced by a recorder and
// returns the exit code, the run configuration it got (if it ran) and stderr.
func execCLI(t *testing.T, args ...string) (int, *runConfig, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	var got *runConfig
	env := &cliEnv{stdout: &stdout, stderr: &stderr, run: func(_ context.Context, cfg runConfig, _ *slog.Logger) error {
		got = &cfg
		return nil
	}}
	code := env.exec(context.Background(), append([]string{"nftwarden"}, args...))
	return code, got, stdout.String(), stderr.String()
}

// clearEnv unsets every variable a flag falls back to, for the test's duration.
func clearEnv(t *testing.T) {
	for _, v := range []string{"NFTWARDEN_KUBECONFIG", "KUBECONFIG", "NODE_NAME", "NFTWARDEN_NODE_NAME", "NFTWARDEN_TABLE",
		"NFTWARDEN_METRICS_ADDRESS", "NFTWARDEN_LOG_FORMAT", "NFTWARDEN_LOG_LEVEL", "NFTWARDEN_RESYNC_PERIOD", "NFTWARDEN_TIMEOUT",
		"POD_NAME", "POD_NAMESPACE", "NFTWARDEN_CLEANUP_ON_UNINSTALL", "NFTWARDEN_REVOKE_ESTABLISHED",
		"NFTWARDEN_CLUSTER_NETWORK_POLICY", "NFTWARDEN_CLUSTER_NETWORK_POLICY_DISCOVERY_PERIOD",
		"NFTWARDEN_CNI_SOCKET", "NFTWARDEN_FIRST_PACKET_ISOLATION", "NFTWARDEN_POD_CIDRS"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
}

func TestRunFlags(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil {
		t.Skip("no hostname:", err)
	}
	defaults := runConfig{NodeName: nodeName(hostname), Table: "nftwarden", MetricsAddress: "127.0.0.1:9640", ResyncPeriod: 10 * time.Second, CleanupOnUninstall: true,
		RevokeEstablished: true, ClusterNetworkPolicy: "auto", CNPDiscoveryPeriod: 30 * time.Second, VerdictLog: defaultVerdictLog(formatText),
		CNISocket: "/run/nftwarden/cni.sock"}
	tweak := func(f func(*runConfig)) runConfig {
		c := defaults
		f(&c)
		return c
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want runConfig
	}{
		{name: "defaults", want: defaults},
		{
			name: "flags",
			args: []string{"--kubeconfig", "/k", "--node-name", "n1", "--table", "t1", "--metrics-address", "[::1]:9", "--resync-period", "1m", "--log-format", "json", "--log-level", "debug",
				"--revoke-established=false"},
			want: runConfig{Kubeconfig: "/k", NodeName: "n1", Table: "t1", MetricsAddress: "[::1]:9", ResyncPeriod: time.Minute, CleanupOnUninstall: true,
				ClusterNetworkPolicy: "auto", CNPDiscoveryPeriod: 30 * time.Second, VerdictLog: defaultVerdictLog(formatJSON), CNISocket: "/run/nftwarden/cni.sock"},
		},
		{
			name: "env fallbacks",
			env: map[string]string{"NFTWARDEN_KUBECONFIG": "/k", "NODE_NAME": "n2", "NFTWARDEN_TABLE": "t2",
				"NFTWARDEN_METRICS_ADDRESS": "0.0.0.0:1", "NFTWARDEN_RESYNC_PERIOD": "30s", "NFTWARDEN_LOG_FORMAT": "json",
				"NFTWARDEN_REVOKE_ESTABLISHED": "false"},
			want: runConfig{Kubeconfig: "/k", NodeName: "n2", Table: "t2", MetricsAddress: "0.0.0.0:1", ResyncPeriod: 30 * time.Second, CleanupOnUninstall: true,
				ClusterNetworkPolicy: "auto", CNPDiscoveryPeriod: 30 * time.Second, VerdictLog: defaultVerdictLog(formatJSON), CNISocket: "/run/nftwarden/cni.sock"},
		},
		{
			name: "KUBECONFIG and NFTWARDEN_NODE_NAME",
			env:  map[string]string{"KUBECONFIG": "/kc", "NFTWARDEN_NODE_NAME": "n3"},
			want: tweak(func(c *runConfig) { c.Kubeconfig, c.NodeName = "/kc", "n3" }),
		},
		{
			name: "flag beats env",
			env:  map[string]string{"NODE_NAME": "from-env"},
			args: []string{"--node-name", "from-flag"},
			want: tweak(func(c *runConfig) { c.NodeName = "from-flag" }),
		},
		{
			name: "node name normalised like the kubelet's hostname",
			args: []string{"--node-name", " Worker-1.Example.COM "},
			want: tweak(func(c *runConfig) { c.NodeName = "worker-1.example.com" }),
		},
		{
			name: "own pod from the downward API",
			env:  map[string]string{"POD_NAME": "nftwarden-x7k2p", "POD_NAMESPACE": "nftwarden"},
			want: tweak(func(c *runConfig) { c.PodName, c.PodNamespace = "nftwarden-x7k2p", "nftwarden" }),
		},
		{
			name: "no cleanup on uninstall",
			args: []string{"--cleanup-on-uninstall=false"},
			want: tweak(func(c *runConfig) { c.CleanupOnUninstall = false }),
		},
		{
			name: "cluster network policy off, faster discovery",
			args: []string{"--cluster-network-policy", "off", "--cluster-network-policy-discovery-period", "1s"},
			want: tweak(func(c *runConfig) { c.ClusterNetworkPolicy, c.CNPDiscoveryPeriod = "off", time.Second }),
		},
		{
			name: "cluster network policy experimental channel",
			args: []string{"--cluster-network-policy", "experimental"},
			want: tweak(func(c *runConfig) { c.ClusterNetworkPolicy = "experimental" }),
		},
		{
			name: "cluster network policy from the environment",
			env:  map[string]string{"NFTWARDEN_CLUSTER_NETWORK_POLICY": "off", "NFTWARDEN_CLUSTER_NETWORK_POLICY_DISCOVERY_PERIOD": "2s"},
			want: tweak(func(c *runConfig) { c.ClusterNetworkPolicy, c.CNPDiscoveryPeriod = "off", 2*time.Second }),
		},
		{
			name: "metrics disabled",
			args: []string{"--metrics-address", ""},
			want: tweak(func(c *runConfig) { c.MetricsAddress = "" }),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, got, _, stderr := execCLI(t, append([]string{"run"}, tc.args...)...)
			if code != exitOK || got == nil {
				t.Fatalf("exit %d, ran %v; stderr:\n%s", code, got != nil, stderr)
			}
			if diff := cmp.Diff(tc.want, *got, cmp.AllowUnexported(verdictLogConfig{})); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{name: "no command", args: nil, wantErr: "no command given"},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: `unknown command "frobnicate"`},
		{name: "unknown flag", args: []string{"run", "--frob"}, wantErr: "flag provided but not defined: -frob"},
		{name: "stray argument", args: []string{"run", "extra"}, wantErr: `unexpected argument "extra"`},
		{name: "log format", args: []string{"run", "--log-format", "xml"}, wantErr: `--log-format "xml": want text or json`},
		{name: "log level", args: []string{"cleanup", "--log-level", "loud"}, wantErr: `--log-level "loud"`},
		{name: "table", args: []string{"run", "--table", "a b"}, wantErr: `--table "a b"`},
		{name: "metrics address", args: []string{"run", "--metrics-address", "9640"}, wantErr: `--metrics-address "9640": want HOST:PORT`},
		{name: "resync period", args: []string{"run", "--resync-period", "0s"}, wantErr: "--resync-period 0s: must be positive"},
		{name: "cluster network policy mode", args: []string{"run", "--cluster-network-policy", "on"}, wantErr: `--cluster-network-policy "on": want auto, experimental or off`},
		{name: "explain cluster network policy mode", args: []string{"explain", "--from", "a/b", "--to", "c/d", "--port", "80", "--cluster-network-policy", "yes"}, wantErr: `--cluster-network-policy "yes"`},
		{name: "discovery period", args: []string{"run", "--cluster-network-policy-discovery-period", "0s"}, wantErr: "--cluster-network-policy-discovery-period 0s: must be positive"},
		{name: "empty node name", args: []string{"run", "--node-name", ""}, wantErr: "--node-name is empty"},
		{name: "bad env duration", env: map[string]string{"NFTWARDEN_RESYNC_PERIOD": "soon"}, args: []string{"run"}, wantErr: `"soon" as duration value from environment variable "NFTWARDEN_RESYNC_PERIOD"`},
		{name: "explain without port", args: []string{"explain", "--from", "a/b", "--to", "c/d"}, wantErr: "--port is required"},
		{name: "explain bad from", args: []string{"explain", "--from", "a/b/c", "--to", "c/d", "--port", "80"}, wantErr: `--from "a/b/c": want NAMESPACE/POD or an IP address`},
		{name: "explain bad port", args: []string{"explain", "--from", "a/b", "--to", "c/d", "--port", "80/icmp"}, wantErr: "protocol must be tcp, udp or sctp"},
		{name: "explain bad range", args: []string{"explain", "--from", "a/b", "--to", "c/d", "--port", "90-80"}, wantErr: `--port "90-80": want PORT, FROM-TO or a port NAME`},
		{name: "explain bad output", args: []string{"explain", "--from", "a/b", "--to", "c/d", "--port", "80", "-o", "yaml"}, wantErr: `--output "yaml": want text or json`},
		{name: "explain trace without node", args: []string{"explain", "--from", "a/b", "--to", "c/d", "--port", "80", "--trace", "--node-name", " "}, wantErr: "--node-name is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, ran, _, stderr := execCLI(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if ran != nil {
				t.Error("the daemon ran")
			}
			if !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.wantErr, stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, _, stdout, _ := execCLI(t, "version")
	if code != exitOK || !strings.HasPrefix(stdout, "nftwarden ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("version: exit %d, output %q", code, stdout)
	}
	old := version
	version = "v9.8.7"
	t.Cleanup(func() { version = old })
	if _, _, stdout, _ := execCLI(t, "version"); !strings.HasPrefix(stdout, "nftwarden v9.8.7 (") {
		t.Errorf("version with -ldflags value: %q", stdout)
	}
}

func TestMissingNetAdmin(t *testing.T) {
	old := hasNetAdmin
	hasNetAdmin = func() (bool, error) { return false, nil }
	t.Cleanup(func() { hasNetAdmin = old })
	for _, cmd := range []string{"cleanup", "dump"} {
		t.Run(cmd, func(t *testing.T) {
			clearEnv(t)
			code, _, _, stderr := execCLI(t, cmd)
			if code != exitError || !strings.Contains(stderr, "CAP_NET_ADMIN is required") {
				t.Errorf("exit %d, stderr %q; want exit 1 and the capability named", code, stderr)
			}
		})
	}
	t.Run("run", func(t *testing.T) {
		err := runCommand(context.Background(), runConfig{Table: "nftwarden", NodeName: "n"}, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "CAP_NET_ADMIN is required") {
			t.Errorf("runCommand = %v, want the capability named", err)
		}
	})
}

func TestUnreadableKubeconfig(t *testing.T) {
	if ok, _ := hasNetAdmin(); !ok {
		t.Skip("runCommand checks CAP_NET_ADMIN first; this process lacks it")
	}
	missing := t.TempDir() + "/missing.yaml"
	err := runCommand(context.Background(), runConfig{Kubeconfig: missing, Table: "nftwarden", NodeName: "n"}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "read kubeconfig") || !strings.Contains(err.Error(), missing) {
		t.Errorf("runCommand = %v, want a kubeconfig read error naming the file", err)
	}
	bad := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(bad, []byte("this: [is not a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = runCommand(context.Background(), runConfig{Kubeconfig: bad, Table: "nftwarden", NodeName: "n"}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "load kubeconfig "+bad) {
		t.Errorf("runCommand = %v, want a kubeconfig load error naming the file", err)
	}
}
