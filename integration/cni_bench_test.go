package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// BenchmarkIntegrationCNIAdd (scripts/bench-cni.sh) adds NFTW_CNI_BENCH_PODS pods
// (default 500) per chain to node 0 of the CNI scene, through ptp + host-local with
// and without nftwarden-cni, pairwise and in alternating order so that drift on the
// shared machine hits both alike, and prints p50/p99 of:
//   - the time ADD takes (every plugin of the chain, run by libcni as a runtime does),
//     per chain, their difference and the per-pair difference (what the plugin adds);
//   - pod creation (the Pod object's create request returned) to the first successful
//     probe from an allowed peer on node 1 (the perf-tests "pod creation reachability
//     latency"), with the kubelet's status written as ADD returns.
//
// Each pod is deleted (CNI DEL, object) after its measurement: host-local's range
// holds 123 pods per node. Run it once (-benchtime=1x); it ignores b.N beyond that.
func BenchmarkIntegrationCNIAdd(b *testing.B) {
	pods := 500
	if s := os.Getenv("NFTW_CNI_BENCH_PODS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("NFTW_CNI_BENCH_PODS=%q: want a positive number", s)
		}
		pods = n
	}
	// Short probes: a dropped one costs its timeout, which bounds the resolution of
	// the reachability time for the chain without the plugin.
	sc := newCNIScene(b, cluster.Options{ProbeTimeout: 25 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	chains := []struct {
		name   string
		plugin bool
	}{{"ptp+host-local", false}, {"ptp+host-local+nftwarden-cni", true}}
	add := make([][]time.Duration, len(chains))
	reach := make([][]time.Duration, len(chains))
	var paired []time.Duration
	daemonSum, daemonCount := cniAddHistogram(b, sc.env.Nodes[0])
	b.ResetTimer()
	for i := range pods {
		var took [2]time.Duration
		for j := range chains {
			k := (i + j) % len(chains) // alternate which chain goes first
			c := chains[k]
			p, err := sc.env.AddCNIPod(ctx, sc.spec(fmt.Sprintf("bench-%d-%d", i, k), "new"), cluster.CNIPodOptions{Plugin: c.plugin, NoStatus: true})
			if err != nil {
				b.Fatalf("pod %d, %s: %v", i, c.name, err)
			}
			// The kubelet reports the status while the pod's first peers already try it.
			written := make(chan error, 1)
			go func() { written <- p.WriteStatus(ctx) }()
			r, err := untilReachable(ctx, sc.env, sc.remote, p)
			if err = errors.Join(err, <-written); err != nil {
				b.Fatalf("pod %d, %s: %v", i, c.name, err)
			}
			add[k], reach[k] = append(add[k], p.AddTook), append(reach[k], r)
			took[k] = p.AddTook
			if err := sc.env.DeletePod(ctx, p.Pod); err != nil {
				b.Fatalf("pod %d, %s: %v", i, c.name, err)
			}
		}
		paired = append(paired, took[1]-took[0])
	}
	b.StopTimer()

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("CNI ADD, %d pods per chain (interleaved), node %s:\n", pods, sc.env.Nodes[0].Name)
	fmt.Printf("  %-38s %10s %10s\n", "", "p50", "p99")
	var p50, p99 [2]time.Duration
	for k, c := range chains {
		p50[k], p99[k] = percentile(add[k], 50), percentile(add[k], 99)
		fmt.Printf("  %-38s %10v %10v\n", "ADD "+c.name, p50[k].Round(time.Microsecond), p99[k].Round(time.Microsecond))
		b.ReportMetric(ms(p50[k]), fmt.Sprintf("add-%d-p50-ms", k))
		b.ReportMetric(ms(p99[k]), fmt.Sprintf("add-%d-p99-ms", k))
	}
	fmt.Printf("  %-38s %10v %10v\n", "difference of the percentiles", (p50[1] - p50[0]).Round(time.Microsecond), (p99[1] - p99[0]).Round(time.Microsecond))
	fmt.Printf("  %-38s %10v %10v\n", "difference per pair", percentile(paired, 50).Round(time.Microsecond), percentile(paired, 99).Round(time.Microsecond))
	b.ReportMetric(ms(percentile(paired, 50)), "added-p50-ms")
	b.ReportMetric(ms(percentile(paired, 99)), "added-p99-ms")
	sum, count := cniAddHistogram(b, sc.env.Nodes[0])
	if count > daemonCount {
		mean := time.Duration((sum - daemonSum) / (count - daemonCount) * float64(time.Second))
		fmt.Printf("  %-38s %10v (mean of %.0f, the daemon's nftwarden_cni_request_duration_seconds)\n", "of which in the daemon", mean.Round(time.Microsecond), count-daemonCount)
		b.ReportMetric(ms(mean), "daemon-add-mean-ms")
	}
	// The floor of any exec'd plugin: starting the binary, with nothing to do.
	for _, plugin := range []string{"ptp", "nftwarden-cni"} {
		v, err := versionTimes(plugin, 100)
		must(b, err)
		fmt.Printf("  %-38s %10v %10v\n", plugin+" VERSION (process start)", percentile(v, 50).Round(time.Microsecond), percentile(v, 99).Round(time.Microsecond))
	}
	fmt.Printf("pod creation -> reachable from an allowed peer on node %s:\n", sc.env.Nodes[1].Name)
	for k, c := range chains {
		r50, r99 := percentile(reach[k], 50), percentile(reach[k], 99)
		fmt.Printf("  %-38s %10v %10v\n", c.name, r50.Round(time.Microsecond), r99.Round(time.Microsecond))
		b.ReportMetric(ms(r50), fmt.Sprintf("reach-%d-p50-ms", k))
		b.ReportMetric(ms(r99), fmt.Sprintf("reach-%d-p99-ms", k))
	}
}

// untilReachable probes p from peer over IPv4 until a probe gets through, and
// returns the time from p's creation to the end of that probe.
func untilReachable(ctx context.Context, env *cluster.Env, peer *cluster.Pod, p *cluster.CNIPod) (time.Duration, error) {
	for {
		ok, err := env.Probe(ctx, peer, p.Pod, cluster.Flow{Port: 80, Family: 4})
		if err != nil {
			return 0, err
		}
		since := time.Since(p.Created)
		if ok {
			return since, nil
		}
		if since > converge {
			return 0, fmt.Errorf("%s not reachable from %s %v after its creation", p, peer, since)
		}
	}
}

// percentile is the q-th percentile of d (nearest rank below); d is sorted in place.
func percentile(d []time.Duration, q int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[(len(d)-1)*q/100]
}

// cniAddHistogram reads the sum and count of the node daemon's histogram of CNI ADD
// requests (the time from the plugin's request to the kernel batch that carried the
// pod, as the daemon measures it).
func cniAddHistogram(b *testing.B, n *cluster.Node) (sum, count float64) {
	b.Helper()
	body, err := n.DaemonGet(context.Background(), "/metrics")
	must(b, err)
	const name = "nftwarden_cni_request_duration_seconds"
	sum, err = metricValue(body, name+`_sum{command="add"}`)
	if err != nil {
		return 0, 0 // no ADD served yet: no series
	}
	count, err = metricValue(body, name+`_count{command="add"}`)
	must(b, err)
	return sum, count
}

// versionTimes runs the CNI plugin's VERSION command n times and returns how long each
// took: what starting the plugin's process costs, the part of ADD no plugin avoids.
func versionTimes(plugin string, n int) ([]time.Duration, error) {
	dir, err := cluster.CNIBinDir()
	if err != nil {
		return nil, err
	}
	var d []time.Duration
	for range n {
		cmd := exec.Command(filepath.Join(dir, plugin))
		cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s VERSION: %w: %s", plugin, err, out)
		}
		d = append(d, time.Since(start))
	}
	return d, nil
}
