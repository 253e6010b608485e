package cniplugin_test

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkPluginAdd is what the plugin itself adds to a pod's ADD: the
// runtime's exec of the binary, parsing, one round trip over the unix socket
// to a daemon that answers at once, and printing the result. The daemon's own
// work (waiting for the kernel batch) is not in it; the integration benchmark
// measures the whole chain. Reports p50 and p99 besides the mean.
func BenchmarkPluginAdd(b *testing.B) {
	d := startFakeDaemon(b, http.StatusOK, `{}`, 0)
	stdin := netConf("1.0.0", d.socket, withPrev("1.0.0"))
	var took []time.Duration
	for b.Loop() {
		run := runPlugin(b, "ADD", podArgs, stdin)
		if run.exitCode != 0 {
			b.Fatalf("ADD failed: %s", run.stdout)
		}
		took = append(took, run.elapsed)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}
