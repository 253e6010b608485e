// Command latencybench measures how long a change written to a real API server
// takes to reach the kernel of a node that runs the real nftwarden daemon.
//
// It starts etcd and kube-apiserver through the integration harness, one
// simulated node (a network namespace), and loads podwatchtest's cluster:
// namespaces of 100 pods with 10 NetworkPolicies each (10,000 pods and 1,000
// policies by default), the node hosting -local of the pods (plan.go). Then it
// starts `nftwarden run` for the node, waits for /readyz, and subscribes to the
// nf_tables notifications of the node's namespace (cluster.NFTBatchWatch): the
// kernel announces every committed batch there, each ending with a NEWGEN
// message.
//
// For each kind of change (kinds.go: pod label, namespace label, pod IP
// appearing, pod deleted, policy created, policy deleted, and a policy
// created or deleted that selects a pod -busy other policies select) it
// makes API writes in three modes: isolated (one at a time; the next after
// the previous one's batch and a quiet gap), spaced (one every -spacing,
// 20 ms, whatever the answers) and a burst (-burst writes at once from -clients clients). A write
// is in the kernel at the end (NEWGEN) of the first batch, committed after the
// write's request was sent, that holds the message its change must produce:
// the pod's address added to or deleted from a set, or the policy's chain
// (or a jump to it) added or deleted (measure.go). Latency is measured from
// the write's response and from its request to that moment; nothing sleeps
// to measure. The benchmark also watches the written objects itself
// (apiwatch.go): the arrival of a write's event splits its latency into the
// API server's part and the rest. Before the daemon starts, -api-floor times
// each kind's burst with no daemon running (floor.go). Per kind and mode it
// prints p50/p90/p99, the messages of the batches that carried the writes,
// and for a burst the time until all were in the kernel.
//
// Run it through scripts/bench-latency.sh (as root), which builds the control
// plane first. Everything is removed at the end, also on Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nftwarden/nftwarden/integration/cluster"
	"github.com/nftwarden/nftwarden/integration/internal/bulk"
)

type config struct {
	pods, podsPerNS, policies, local, nodes, workers int
	samples, burst, clients, busy                    int
	spacing, gap, timeout, readyTimeout              time.Duration
	kinds, modes, table, jsonOut                     string
	daemonArgs                                       string
	apiFloor                                         bool
}

func main() {
	var cfg config
	flag.IntVar(&cfg.pods, "pods", 10000, "pods to load (100000 for the large cluster)")
	flag.IntVar(&cfg.policies, "policies", 1000, "NetworkPolicies to load, spread evenly over the namespaces (10000 for the large cluster)")
	flag.IntVar(&cfg.podsPerNS, "pods-per-namespace", 100, "pods per namespace")
	flag.IntVar(&cfg.local, "local", 100, "pods on the measured node (one per namespace, spread evenly)")
	flag.IntVar(&cfg.nodes, "nodes", 100, "node names the other pods are spread over")
	flag.IntVar(&cfg.workers, "workers", 32, "concurrent API clients while loading")
	flag.IntVar(&cfg.samples, "samples", 200, "writes per kind, isolated and spaced")
	flag.IntVar(&cfg.burst, "burst", 1000, "writes per kind in a burst (namespace label: at most one per prod namespace)")
	flag.IntVar(&cfg.busy, "busy", 2000, "policies that select the busy pod before the busy-policy kinds add and delete more (created unmeasured)")
	flag.IntVar(&cfg.clients, "clients", 32, "concurrent API clients of a burst")
	flag.DurationVar(&cfg.spacing, "spacing", 20*time.Millisecond, "time between writes in spaced mode")
	flag.DurationVar(&cfg.gap, "gap", 100*time.Millisecond, "quiet time (no batch) before an isolated write")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "bound for writes to reach the kernel (a write that does not is an error)")
	flag.DurationVar(&cfg.readyTimeout, "ready-timeout", 30*time.Minute, "bound for the daemon's /readyz")
	flag.StringVar(&cfg.kinds, "kinds", strings.Join(kinds, ","), "kinds of change, comma-separated")
	flag.StringVar(&cfg.modes, "modes", strings.Join([]string{modeIsolated, modeSpaced, modeBurst}, ","), "modes, comma-separated")
	flag.StringVar(&cfg.table, "table", "nftwarden", "the daemon's table")
	flag.StringVar(&cfg.daemonArgs, "daemon-args", "", "more arguments for `nftwarden run`, space-separated (e.g. --log-level=debug)")
	flag.BoolVar(&cfg.apiFloor, "api-floor", true, "before the daemon starts, time a burst of each kind with no daemon running (the API server's own pace)")
	flag.StringVar(&cfg.jsonOut, "json", "", "also write the results to this file as JSON")
	flag.Parse()

	cluster.Main("latencybench", func() error { return run(cfg) })
}

type result struct {
	Pods       int        `json:"pods"`
	Policies   int        `json:"policies"`
	Namespaces int        `json:"namespaces"`
	LocalPods  int        `json:"local_pods"`
	LoadSec    float64    `json:"load_seconds"`
	ReadySec   float64    `json:"ready_seconds"`
	CPUs       int        `json:"cpus"`
	Kernel     string     `json:"kernel"`
	LoadAvg    string     `json:"loadavg_at_end"`
	Floors     []apiFloor `json:"api_floors"`
	Phases     []phase    `json:"phases"`
}

func run(cfg config) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the daemon runs in a network namespace and programs nftables there")
	}
	selected := strings.Split(cfg.kinds, ",")
	for _, k := range selected {
		if !slices.Contains(kinds, k) {
			return fmt.Errorf("unknown kind %q (kinds: %s)", k, strings.Join(kinds, ", "))
		}
	}
	modes := strings.Split(cfg.modes, ",")
	ctx := context.Background()
	if _, err := cluster.RemoveStale(); err != nil {
		return err
	}
	cp, err := cluster.StartControlPlane(ctx, cluster.ControlPlaneOptions{EtcdArgs: []string{"--quota-backend-bytes=8589934592"}})
	if err != nil {
		return err
	}
	defer cp.Stop()
	env, err := cluster.NewEnv(ctx, cp, cluster.Options{Nodes: 1, DaemonArgs: strings.Fields(cfg.daemonArgs)})
	if err != nil {
		return err
	}
	defer env.Close()
	node := env.Nodes[0]
	p, err := newPlan(cfg.pods, cfg.podsPerNS, cfg.policies, cfg.local, cfg.nodes, node.Name)
	if err != nil {
		return err
	}
	rc := rest.CopyConfig(cp.Config)
	rc.QPS, rc.Burst = 5000, 10000
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	res := result{Pods: p.pods, Policies: p.namespaces * p.policiesPerNS, Namespaces: p.namespaces, LocalPods: len(p.hosting()),
		CPUs: runtime.NumCPU(), Kernel: kernelRelease()}
	fmt.Printf("# latencybench: %d pods, %d policies, %d namespaces, %d pods on the measured node; %d CPUs, kernel %s, load average %s\n",
		res.Pods, res.Policies, res.Namespaces, res.LocalPods, res.CPUs, res.Kernel, bulk.LoadAvg())

	start := time.Now()
	if err := bulk.CreateNamespaces(ctx, client, cfg.workers, p.namespaces); err != nil {
		return err
	}
	if err := bulk.CreatePolicies(ctx, client, cfg.workers, p.namespaces, p.policiesPerNS); err != nil {
		return err
	}
	if err := bulk.CreatePods(ctx, client, cfg.workers, p.pods, p.perNS, p.nodeOf); err != nil {
		return err
	}
	res.LoadSec = time.Since(start).Seconds()
	fmt.Printf("loaded in %.0fs\n", res.LoadSec)
	api, err := watchAPI(ctx, client)
	if err != nil {
		return err
	}
	defer api.close()
	w := newWriter(p, client, cfg.workers, cfg.busy)
	if cfg.apiFloor {
		for _, kind := range selected {
			writes, err := w.prepare(ctx, kind, cfg.burst, true)
			if err != nil {
				return fmt.Errorf("API floor, %s: %w", kind, err)
			}
			if len(writes) == 0 {
				continue
			}
			f, err := measureFloor(ctx, api, kind, writes, cfg.clients, cfg.timeout)
			if err != nil {
				return fmt.Errorf("API floor, %s: %w", kind, err)
			}
			res.Floors = append(res.Floors, f)
			fmt.Printf("no daemon %-18s %4d writes: accepted in %.0f ms, delivered to a watch in %.0f ms\n", kind, f.N, f.AcceptedMS, f.DeliveredMS)
		}
	}

	start = time.Now()
	if err := node.StartDaemon(); err != nil {
		return err
	}
	if err := node.WaitDaemonReady(cfg.readyTimeout); err != nil {
		return err
	}
	res.ReadySec = time.Since(start).Seconds()
	fmt.Printf("daemon ready in %.1fs (log %s)\n", res.ReadySec, node.DaemonLog())

	// The same watch by the daemon's path to the API server: the node's
	// namespace and relay.
	nodeRC := rest.CopyConfig(rc)
	nodeRC.Dial = node.DialAPI
	nodeClient, err := kubernetes.NewForConfig(nodeRC)
	if err != nil {
		return fmt.Errorf("client through the node: %w", err)
	}
	viaNode, err := watchAPI(ctx, nodeClient)
	if err != nil {
		return fmt.Errorf("through the node: %w", err)
	}
	defer viaNode.close()

	watch, err := node.WatchNFTBatches(cfg.table)
	if err != nil {
		return err
	}
	defer watch.Close()
	t := newTracker(watch)
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go t.run(tctx)
	o := modeOptions{gap: cfg.gap, spacing: cfg.spacing, timeout: cfg.timeout, clients: cfg.clients}
	// The first batches after /readyz (the periodic reconcile, CNI socket
	// state) are not any write's.
	if err := t.quiet(ctx, time.Second); err != nil {
		return err
	}
	t.takeOthers()
	for _, mode := range modes {
		n := cfg.samples
		if mode == modeBurst {
			n = cfg.burst
		}
		for _, kind := range selected {
			writes, err := w.prepare(ctx, kind, n, mode == modeBurst)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", mode, kind, err)
			}
			if len(writes) == 0 {
				continue // deletions of what this run did not create
			}
			// What prepare did (pods created without status) is not measured.
			if err := t.quiet(ctx, time.Second); err != nil {
				return err
			}
			t.takeOthers()
			before, err := readCounts(ctx, node)
			if err != nil {
				return err
			}
			samples, err := t.runMode(ctx, mode, writes, o)
			if err != nil {
				return fmt.Errorf("%s, %s: %w (daemon log: %s)", mode, kind, err, node.DaemonLog())
			}
			if err := stamp(ctx, api, viaNode, writes, samples, cfg.timeout); err != nil {
				return fmt.Errorf("%s, %s: %w", mode, kind, err)
			}
			ph := summarize(mode, kind, samples, t.takeOthers())
			after, err := readCounts(ctx, node)
			if err != nil {
				return err
			}
			ph.perWrite(before, after)
			res.Phases = append(res.Phases, ph)
			fmt.Printf("%-8s %-13s %4d writes: after response p50 %.2f ms, p99 %.2f ms; %d batches of %.0f messages (p50); %.2f events, %.2f syncs per write\n",
				mode, kind, ph.N, ph.AfterResponse.P50, ph.AfterResponse.P99, ph.Batches, ph.Messages.P50, ph.EventsPerWrite, ph.FlushesPerWrite)
		}
	}
	res.LoadAvg = bulk.LoadAvg()
	fmt.Printf("\n== %d pods, %d policies, %d namespaces, %d pods on the node; %d CPUs, kernel %s; load average at end %s\n\n",
		res.Pods, res.Policies, res.Namespaces, res.LocalPods, res.CPUs, res.Kernel, res.LoadAvg)
	if len(res.Floors) > 0 {
		printFloors(os.Stdout, res.Floors)
		fmt.Println()
	}
	printTable(os.Stdout, res.Phases)
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

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// readCounts reads the daemon's event and sync counters.
func readCounts(ctx context.Context, n *cluster.Node) (daemonCounts, error) {
	body, err := n.DaemonGet(ctx, "/metrics")
	if err != nil {
		return daemonCounts{}, err
	}
	return countsOf(body)
}
