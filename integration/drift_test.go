package integration

// Drift: someone changes the daemon's table behind its back, with the nft binary in
// the node's namespace, the way an operator or another program could. Each change
// must be repaired (the kernel's table equal to the desired one again) within the
// resync period (the daemon's default, 10 s; it comes from the kernel's change
// monitor in tens of milliseconds), counted in nftwarden_drift_repaired_total, and
// logged once.
//
// Topology of helpers_test.go: x/a (node 0) admits only x/b; y/c on node 0 is denied.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/integration/cluster"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// driftRepairBound is the daemon's default resync period: the longest a repair may
// take even when the change monitor misses a change.
const driftRepairBound = 10 * time.Second

// repairedLog is the daemon's log line of a repair the change monitor reported.
const repairedLog = "repaired the table after another process changed it"

func TestIntegrationDrift(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	env := tp.env
	must(t, env.ApplyPolicy(ctx, policy(tp.x, "a-from-b", selecting(app("a")), ingress(from(peers(podPeer(app("b"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(tp.b, tp.a, true)
	tp.expect(t, want, tcp80v4, tcp80v6)
	node := tp.a.Node
	must(t, node.WaitConverged(ctx, converge))
	good, err := node.DumpKernel(ctx)
	must(t, err)
	names := findProgramNames(t, good)

	for i, tc := range []struct{ name, script string }{
		{"table deleted", "delete table inet nftwarden"},
		{"peer set flushed", "flush set inet nftwarden " + names.peerSet},
		{"pod chain flushed, policy chain deleted", "flush chain inet nftwarden " + names.podChain +
			"\ndelete chain inet nftwarden " + names.policyChain},
		{"accept inserted at the top of a base chain", "insert rule inet nftwarden ingress accept"},
		{"dispatch element deleted", "delete element inet nftwarden ingress-v4 { " + tp.a.IPv4.String() + " }"},
	} {
		script := filepath.Join(t.TempDir(), "drift.nft")
		must(t, os.WriteFile(script, []byte(tc.script+"\n"), 0o600))
		if out, err := node.Exec(ctx, "nft", "-f", script); err != nil {
			t.Fatalf("%s: nft: %v\n%s", tc.name, err, out)
		}
		took, err := waitTable(ctx, node, good, driftRepairBound)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		t.Logf("%-42s repaired within %v (polled every 50 ms with nftwarden dump)", tc.name, took.Round(10*time.Millisecond))
		if n := strings.Count(readFile(t, node.DaemonLog()), repairedLog); n != i+1 {
			t.Errorf("%s: %d repair log lines after %d changes, want one per change", tc.name, n, i+1)
		}
		// The denied flow is denied again, the allowed one allowed.
		tp.expect(t, want, tcp80v4)
	}
	metrics, err := node.DaemonGet(ctx, "/metrics")
	must(t, err)
	for _, m := range []string{"nftwarden_drift_repaired_total", "nftwarden_drift_detected_total"} {
		if got, err := metricValue(metrics, m); err != nil || got < 5 {
			t.Errorf("%s = %v (%v) after 5 changes, want at least 5", m, got, err)
		}
	}
	// The other node was not touched and repaired nothing.
	other, err := tp.b.Node.DaemonGet(ctx, "/metrics")
	must(t, err)
	if got, err := metricValue(other, "nftwarden_drift_repaired_total"); err != nil || got != 0 {
		t.Errorf("untouched node: drift_repaired_total = %v (%v), want 0", got, err)
	}
}

// programNames are objects of the running program that the drift cases change.
type programNames struct{ peerSet, podChain, policyChain string }

// programNames finds them in a `nftwarden dump`: the peer set of x/a's policy (the
// only filled IPv4 peer set), x/a's ingress pod chain and the policy's chain.
func programNamesOf(dump string) (programNames, error) {
	var n programNames
	for _, line := range strings.Split(dump, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch {
		case f[0] == "set" && strings.HasPrefix(f[1], "peers-v4-") && n.peerSet == "":
			n.peerSet = f[1]
		case f[0] == "chain" && strings.HasPrefix(f[1], "pod-in-"):
			n.podChain = f[1]
		case f[0] == "chain" && strings.HasPrefix(f[1], "pol-in-"):
			n.policyChain = f[1]
		}
	}
	if n.peerSet == "" || n.podChain == "" || n.policyChain == "" {
		return n, fmt.Errorf("program lacks a peer set, pod chain or policy chain: %+v", n)
	}
	return n, nil
}

func findProgramNames(t *testing.T, dump string) programNames {
	t.Helper()
	n, err := programNamesOf(dump)
	if err != nil {
		t.Fatalf("%v:\n%s", err, dump)
	}
	return n
}

// waitTable polls the node's table until it equals want (counter values aside), and returns how long that
// took.
func waitTable(ctx context.Context, node *cluster.Node, want string, bound time.Duration) (time.Duration, error) {
	start := time.Now()
	var last string
	// A repaired table counts from zero again (and traffic moves the counters):
	// compare without their values.
	want = nfttest.ZeroCounters(want)
	for time.Since(start) < bound {
		got, err := node.DumpKernel(ctx)
		got = nfttest.ZeroCounters(got)
		if err == nil && got == want {
			return time.Since(start), nil
		}
		last = got
		if err != nil {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("table not repaired within %v:\n%s", bound, cluster.TableDiff(want, last))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}
