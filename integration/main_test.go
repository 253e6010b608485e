package integration

// IP plan (see package cluster): node i of the process has 198.18.0.(i+1) and
// 2001:db8::(i+1) on the underlay; its pods get 198.18.(16+i).n and 2001:db8:1:i::n.
// One control plane serves every test of the binary; each test makes its own nodes,
// namespaces (suffixed with a random id) and pods, and removes them.

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

var (
	cpOnce sync.Once
	cp     *cluster.ControlPlane
	cpErr  error
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	stop := cluster.HandleSignals()
	defer stop()
	defer cluster.CleanupAll()
	if os.Geteuid() == 0 {
		if removed, err := cluster.RemoveStale(); err != nil {
			fmt.Fprintln(os.Stderr, "removing stale namespaces:", err)
		} else if len(removed) > 0 {
			fmt.Fprintln(os.Stderr, "removed stale namespaces of dead test runs:", removed)
		}
	}
	return m.Run()
}

// needRoot skips t unless it runs as root.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration tests need root (network namespaces, nftables)")
	}
}

// controlPlane starts the shared control plane on first use.
func controlPlane(t testing.TB) *cluster.ControlPlane {
	t.Helper()
	needRoot(t)
	cpOnce.Do(func() {
		start := time.Now()
		// Critical pods limited as on a managed cluster: no test pod has a priority
		// class, and TestIntegrationInstallQuota needs it.
		cp, cpErr = cluster.StartControlPlane(context.Background(), cluster.ControlPlaneOptions{LimitCriticalPods: true})
		if cpErr == nil {
			fmt.Fprintf(os.Stderr, "control plane ready in %s at %s\n", time.Since(start).Round(time.Millisecond), cp.Host)
		}
	})
	if cpErr != nil {
		t.Fatalf("control plane: %v", cpErr)
	}
	return cp
}

// startDaemons runs the nftwarden daemon on every node of env.
func startDaemons(t testing.TB, env *cluster.Env) {
	t.Helper()
	if err := env.StartDaemons(); err != nil {
		t.Fatalf("start daemons: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
