package integration

// Start-up checks of the daemon, on a node namespace set up to fail two of them: a
// Linux bridge with bridged traffic kept away from the forward hook
// (net.bridge.bridge-nf-call-iptables=0, or br_netfilter not loaded at all), and the
// table of another enforcer (kube-network-policies). The third check passes: the node
// name names a Node. Each problem is logged and exported as
// nftwarden_preflight_problem{check}.

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

func TestIntegrationPreflight(t *testing.T) {
	ctx := testCtx(t)
	env := cluster.StartForTest(t, controlPlane(t), cluster.Options{Nodes: 1})
	node := env.Nodes[0]
	for _, argv := range [][]string{
		{"ip", "link", "add", "br-pf", "type", "bridge"},
		{"nft", "add", "table", "inet", "kube-network-policies"},
	} {
		if out, err := node.Exec(ctx, argv...); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); err == nil {
		// br_netfilter is loaded (its sysctls are per network namespace): turn it
		// off for this node, as a node set up without it would be.
		if out, err := node.Exec(ctx, "sysctl", "-w", "net.bridge.bridge-nf-call-iptables=0"); err != nil {
			t.Fatalf("sysctl: %v\n%s", err, out)
		}
	}
	startDaemons(t, env)
	// The checks run beside the first reconcile: wait for their log lines.
	deadline := time.Now().Add(converge)
	for !strings.Contains(readFile(t, node.DaemonLog()), "other-enforcer") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	metrics, err := node.DaemonGet(ctx, "/metrics")
	must(t, err)
	for check, want := range map[string]float64{"bridge-netfilter": 1, "other-enforcer": 1, "node-object": 0} {
		got, err := metricValue(metrics, `nftwarden_preflight_problem{check="`+check+`"}`)
		if err != nil || got != want {
			t.Errorf("preflight_problem{check=%q} = %v (%v), want %v", check, got, err, want)
		}
	}
	log := readFile(t, node.DaemonLog())
	for _, want := range []string{"bridge br-pf exists but", "kube-network-policies (table inet kube-network-policies)"} {
		if !strings.Contains(log, want) {
			t.Errorf("daemon log lacks %q:\n%s", want, log)
		}
	}
}
