package daemon

// Drift repaired for real: the daemon of a kernelNode (kernelnode_test.go)
// programs the node namespace's kernel; then its table is changed behind its
// back with the nft binary, the way an operator or another program could.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// TestPrivilegedDaemonRepairsDrift: every kind of tampering is reported by the
// kernel's change monitor, repaired at once (the periodic reconcile is a
// minute away), and logged once.
func TestPrivilegedDaemonRepairsDrift(t *testing.T) {
	n := startKernelNode(t, func(*nfttest.Pod) {})
	want := nfttest.Normalize(nfttest.ListTable(t, n.node, kernelNodeTable))
	const repaired = "repaired the table after another process changed it"
	table := "inet " + kernelNodeTable
	for i, tc := range []struct{ name, script string }{
		{"delete the table", "delete table " + table},
		{"flush the dispatch map", "flush map " + table + " ingress-v4"},
		{"delete a vmap element", "delete element " + table + " ingress-v4 { 198.18.1.10 }"},
		{"flush a pod chain", "flush chain " + table + " " + programName(t, n.kernel, "chain", "pod-in-")},
		{"accept at the top of a base chain", "insert rule " + table + " ingress accept"},
		{"flush a peer set", "flush set " + table + " " + programName(t, n.kernel, "set", "peers-v4")},
	} {
		time.Sleep(driftRepairInterval) // each change alone, not paced behind the last
		start := time.Now()
		if out, err := n.node.Exec("nft", tc.script); err != nil {
			t.Fatalf("%s: nft %s: %v\n%s", tc.name, tc.script, err, out)
		}
		for deadline := time.Now().Add(10 * time.Second); strings.Count(n.logs.String(), repaired) < i+1; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not repaired; log:\n%s", tc.name, n.logs)
			}
		}
		took := time.Since(start)
		if got := nfttest.Normalize(nfttest.ListTable(t, n.node, kernelNodeTable)); got != want {
			t.Fatalf("%s: table after the repair differs:\n--- want\n%s\n--- got\n%s", tc.name, want, got)
		}
		t.Logf("%s: repaired %v after the change", tc.name, took.Round(time.Millisecond))
	}
	if n := strings.Count(n.logs.String(), repaired); n != 6 {
		t.Errorf("%d repair lines for 6 changes", n)
	}
	// The log names what was done and by whom.
	if log := n.logs.String(); !strings.Contains(log, `delete table`) || !strings.Contains(log, "by nft, pid") {
		t.Errorf("the repair lines do not say what changed and who changed it:\n%s", log)
	}
}

// programName names an object of the running program (kind "chain" or "set")
// whose name starts with prefix, read back from the kernel, so that the test
// does not depend on the engine's naming; a set must hold elements.
func programName(t *testing.T, k *nft.Kernel, kind, prefix string) string {
	t.Helper()
	st, err := k.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if kind == "chain" {
		for name := range st.Chains {
			if strings.HasPrefix(name, prefix) {
				return name
			}
		}
	}
	for name, s := range st.Sets {
		if kind == "set" && strings.HasPrefix(name, prefix) && s.Elements.Len() > 0 {
			return name
		}
	}
	t.Fatalf("no %s %s* in the program", kind, prefix)
	return ""
}
