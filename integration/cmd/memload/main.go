// Command memload measures the memory of one nftwarden daemon that watches a large
// cluster held by a real API server.
//
// It starts etcd and kube-apiserver through the integration harness, creates
// namespaces (one per 100 pods, each with its "default" ServiceAccount) and NetworkPolicies
// (10 per namespace), then starts the real `nftwarden run` for one simulated node (a
// network namespace) and measures it: that is the baseline, with no pods. It stops the
// daemon, creates the pods, written as a kubelet would (spec with two containers,
// images, env, resources, named ports, labels and annotations; spec.nodeName spread
// over 500 node names; status Running with a unique pod IP from 198.18.64.0 upward
// through pods/status), starts the daemon again and measures it once more. Per pod is
// (measure with pods - baseline) / pods, so the policies' and the runtime's own
// memory do not count.
//
// Each measure waits for /readyz (the first full reconcile has programmed the table,
// which needs every informer synced), lets the daemon settle, then reads VmRSS and
// VmHWM from /proc/PID/status and go_memstats_heap_inuse_bytes from /metrics.
//
// Run it through scripts/bench-daemon-memory.sh (as root), which builds the control
// plane first. Everything is removed at the end, also on Ctrl-C.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nftwarden/nftwarden/integration/cluster"
	"github.com/nftwarden/nftwarden/integration/internal/bulk"
)

type config struct {
	pods, podsPerNS, policiesPerNS, nodes, workers int
	settle, readyTimeout                           time.Duration
	jsonOut                                        string
}

func main() {
	var cfg config
	flag.IntVar(&cfg.pods, "pods", 100000, "pods to create")
	flag.IntVar(&cfg.podsPerNS, "pods-per-namespace", 100, "pods per namespace (namespaces = pods / this)")
	flag.IntVar(&cfg.policiesPerNS, "policies-per-namespace", 10, "NetworkPolicies per namespace")
	flag.IntVar(&cfg.nodes, "nodes", 500, "node names the pods are spread over (one of them is the measured daemon's)")
	flag.IntVar(&cfg.workers, "workers", 32, "concurrent API clients while creating objects")
	// Past 2 minutes without a GC the Go runtime forces one, so after 130 s the
	// garbage of the first sync is collected and mostly returned to the OS.
	flag.DurationVar(&cfg.settle, "settle", 130*time.Second, "wait after /readyz before measuring")
	flag.DurationVar(&cfg.readyTimeout, "ready-timeout", 30*time.Minute, "bound for the daemon's /readyz")
	flag.StringVar(&cfg.jsonOut, "json", "", "also write the results to this file as JSON")
	flag.Parse()

	cluster.Main("memload", func() error { return run(cfg) })
}

// measure is one reading of the daemon.
type measure struct {
	ReadySec   float64 `json:"ready_seconds"`
	RSSBytes   int64   `json:"rss_bytes"`
	PeakRSS    int64   `json:"peak_rss_bytes"`
	HeapInuse  int64   `json:"heap_inuse_bytes"`
	HeapAlloc  int64   `json:"heap_alloc_bytes"`
	NextGC     int64   `json:"next_gc_bytes"`
	PodsKnown  int64   `json:"pods_known"`
	LocalPods  int64   `json:"local_pods"`
	Policies   int64   `json:"policies_known"`
	Elements   int64   `json:"programmed_elements"`
	Goroutines int64   `json:"goroutines"`
	SettleSec  float64 `json:"settle_seconds"`
}

type result struct {
	Pods           int     `json:"pods"`
	Namespaces     int     `json:"namespaces"`
	Policies       int     `json:"policies"`
	Nodes          int     `json:"nodes"`
	CreateNSPolSec float64 `json:"create_namespaces_policies_seconds"`
	CreatePodsSec  float64 `json:"create_pods_seconds"`
	Baseline       measure `json:"baseline"`
	Loaded         measure `json:"loaded"`
	RSSPerPod      float64 `json:"rss_bytes_per_pod"`
	HeapPerPod     float64 `json:"heap_inuse_bytes_per_pod"`
	LivePerPod     float64 `json:"heap_alloc_bytes_per_pod"`
	LoadAvg        string  `json:"loadavg_at_end"`
}

func run(cfg config) error {
	if err := bulk.CheckShape(cfg.pods, cfg.podsPerNS, cfg.nodes, cfg.workers); err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := cluster.RemoveStale(); err != nil {
		return err
	}
	fmt.Printf("# memload: %d pods, load average %s on %d-CPU machine\n", cfg.pods, bulk.LoadAvg(), runtime.NumCPU())

	start := time.Now()
	cp, err := cluster.StartControlPlane(ctx, cluster.ControlPlaneOptions{
		// 100,000 pods with their status updates and 10,000 policies are far below 8 GiB,
		// but above etcd's default 2 GiB quota once its history is counted.
		EtcdArgs: []string{"--quota-backend-bytes=8589934592"},
	})
	if err != nil {
		return err
	}
	defer cp.Stop()
	fmt.Printf("control plane ready in %s\n", since(start))

	env, err := cluster.NewEnv(ctx, cp, cluster.Options{Nodes: 1})
	if err != nil {
		return err
	}
	defer env.Close()
	node := env.Nodes[0]

	rc := rest.CopyConfig(cp.Config)
	rc.QPS, rc.Burst = 5000, 10000
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}

	nsCount := (cfg.pods + cfg.podsPerNS - 1) / cfg.podsPerNS
	res := result{Pods: cfg.pods, Namespaces: nsCount, Policies: nsCount * cfg.policiesPerNS, Nodes: cfg.nodes}
	start = time.Now()
	if err := bulk.CreateNamespaces(ctx, client, cfg.workers, nsCount); err != nil {
		return err
	}
	if err := bulk.CreatePolicies(ctx, client, cfg.workers, nsCount, cfg.policiesPerNS); err != nil {
		return err
	}
	res.CreateNSPolSec = time.Since(start).Seconds()
	fmt.Printf("created %d namespaces and %d policies in %s\n", nsCount, res.Policies, since(start))

	if res.Baseline, err = measureDaemon(ctx, node, cfg, "baseline (0 pods)"); err != nil {
		return err
	}
	node.StopDaemon()

	nodeNames := make([]string, cfg.nodes)
	nodeNames[0] = node.Name
	for i := 1; i < cfg.nodes; i++ {
		nodeNames[i] = fmt.Sprintf("bench-node-%03d", i)
	}
	start = time.Now()
	if err := bulk.CreatePods(ctx, client, cfg.workers, cfg.pods, cfg.podsPerNS, func(i int) string { return nodeNames[i%cfg.nodes] }); err != nil {
		return err
	}
	res.CreatePodsSec = time.Since(start).Seconds()
	fmt.Printf("created %d pods (with status) in %s (%.0f pods/s)\n", cfg.pods, since(start), float64(cfg.pods)/res.CreatePodsSec)

	if res.Loaded, err = measureDaemon(ctx, node, cfg, fmt.Sprintf("loaded (%d pods)", cfg.pods)); err != nil {
		return err
	}
	if res.Loaded.PodsKnown != int64(cfg.pods) {
		return fmt.Errorf("daemon knows %d pods, want %d", res.Loaded.PodsKnown, cfg.pods)
	}
	node.StopDaemon()

	res.RSSPerPod = float64(res.Loaded.RSSBytes-res.Baseline.RSSBytes) / float64(cfg.pods)
	res.HeapPerPod = float64(res.Loaded.HeapInuse-res.Baseline.HeapInuse) / float64(cfg.pods)
	// Right after the forced GC of the settle period, allocated heap is close to the
	// live heap: what the daemon really keeps per pod, before GC headroom.
	res.LivePerPod = float64(res.Loaded.HeapAlloc-res.Baseline.HeapAlloc) / float64(cfg.pods)
	res.LoadAvg = bulk.LoadAvg()
	fmt.Printf("\n== result: %d pods, %d namespaces, %d policies, %d node names\n", cfg.pods, nsCount, res.Policies, cfg.nodes)
	fmt.Printf("creation: namespaces+policies %.0fs, pods (create + status) %.0fs\n", res.CreateNSPolSec, res.CreatePodsSec)
	fmt.Printf("%-22s %10s %10s %10s %10s %10s\n", "", "ready", "RSS", "peak RSS", "heap inuse", "next GC")
	for _, m := range []struct {
		name string
		m    measure
	}{{"baseline (0 pods)", res.Baseline}, {"loaded", res.Loaded}} {
		fmt.Printf("%-22s %9.1fs %10s %10s %10s %10s\n", m.name, m.m.ReadySec, mib(m.m.RSSBytes), mib(m.m.PeakRSS), mib(m.m.HeapInuse), mib(m.m.NextGC))
	}
	fmt.Printf("per pod: RSS %.0f B (%.2f KiB), heap in use %.0f B (%.2f KiB), heap allocated %.0f B (%.2f KiB)\n",
		res.RSSPerPod, res.RSSPerPod/1024, res.HeapPerPod, res.HeapPerPod/1024, res.LivePerPod, res.LivePerPod/1024)
	fmt.Printf("load average at end: %s\n", res.LoadAvg)
	if cfg.jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return fmt.Errorf("encode results: %w", err)
		}
		if err := os.WriteFile(cfg.jsonOut, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", cfg.jsonOut, err)
		}
	}
	return nil
}

// measureDaemon starts the node's daemon, waits for /readyz, lets it settle and reads
// its memory.
func measureDaemon(ctx context.Context, node *cluster.Node, cfg config, what string) (measure, error) {
	start := time.Now()
	if err := node.StartDaemon(); err != nil {
		return measure{}, err
	}
	if err := node.WaitDaemonReady(cfg.readyTimeout); err != nil {
		return measure{}, err
	}
	m := measure{ReadySec: time.Since(start).Seconds(), SettleSec: cfg.settle.Seconds()}
	fmt.Printf("%s: daemon ready in %s; settling %s\n", what, since(start), cfg.settle)
	time.Sleep(cfg.settle)
	pid := node.DaemonPID()
	if pid == 0 {
		return measure{}, fmt.Errorf("daemon of %s is not running: %w", node.Name, node.DaemonExited())
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return measure{}, fmt.Errorf("daemon status: %w", err)
	}
	if m.RSSBytes, err = procKiB(status, "VmRSS"); err != nil {
		return measure{}, err
	}
	if m.PeakRSS, err = procKiB(status, "VmHWM"); err != nil {
		return measure{}, err
	}
	body, err := node.DaemonGet(ctx, "/metrics")
	if err != nil {
		return measure{}, err
	}
	for name, dst := range map[string]*int64{
		"go_memstats_heap_inuse_bytes":  &m.HeapInuse,
		"go_memstats_heap_alloc_bytes":  &m.HeapAlloc,
		"go_memstats_next_gc_bytes":     &m.NextGC,
		"nftwarden_pods_known":          &m.PodsKnown,
		"nftwarden_local_pods":          &m.LocalPods,
		"nftwarden_policies_known":      &m.Policies,
		"nftwarden_programmed_elements": &m.Elements,
		"go_goroutines":                 &m.Goroutines,
	} {
		if *dst, err = metric(body, name); err != nil {
			return measure{}, err
		}
	}
	fmt.Printf("%s: RSS %s (peak %s), heap in use %s (allocated %s, next GC at %s); daemon knows %d pods (%d local), %d policies; %d set/map elements programmed\n",
		what, mib(m.RSSBytes), mib(m.PeakRSS), mib(m.HeapInuse), mib(m.HeapAlloc), mib(m.NextGC), m.PodsKnown, m.LocalPods, m.Policies, m.Elements)
	return m, nil
}

// procKiB reads a "Name:   123 kB" line of /proc/PID/status, in bytes.
func procKiB(status []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc status %s: %w", name, err)
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("/proc status has no %s", name)
}

// metric reads an unlabelled sample of the Prometheus text format.
func metric(body []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || k != name {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		return int64(f), nil
	}
	return 0, fmt.Errorf("metric %s not served", name)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
