// Command readybench measures how long nftwarden takes to become ready in a
// large cluster held by a real API server: on a fresh node (no table) and on a
// restart (against the table its previous run left in force), and, beside it,
// the floor: what a bare client-go list of the same pods costs.
//
// It starts etcd and kube-apiserver through the integration harness and
// creates the cluster memload creates (namespaces with 10 NetworkPolicies
// each, pods with realistic specs and status over 500 node names). Loading
// 100,000 pods takes about ten minutes, so the loaded cluster serves any
// number of measurements: with -commands FIFO it reads commands from that
// named pipe until "quit", one per line:
//
//	floor                      bare lists of the pods (see measureFloor)
//	run ROUNDS NAME=BIN ...    ROUNDS interleaved rounds of each daemon binary
//	quit
//
// Without -commands it measures the floor (unless -floor=false), runs -rounds
// rounds of the -daemon binaries and ends. A
// round of one binary starts it on a node without a table ("fresh"), waits for
// /readyz, stops it, starts it again ("restart") and waits for /readyz again.
// The times are from the start of the process to /readyz answering 200 (polled
// every 50 ms); the daemon's own log lines of its start are printed with them.
//
// Each command and the loading hold -lock (flock), which keeps heavy runs of
// engineers sharing the machine from overlapping. Run it through
// scripts/bench-restart.sh (as root). Everything is removed at the end, also
// on Ctrl-C.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nftwarden/nftwarden/integration/cluster"
	"github.com/nftwarden/nftwarden/integration/internal/bulk"
)

type config struct {
	pods, podsPerNS, policiesPerNS, nodes, workers, rounds int
	daemons                                                string
	floor                                                  bool
	commands, lock                                         string
	readyTimeout                                           time.Duration
}

func main() {
	var cfg config
	flag.IntVar(&cfg.pods, "pods", 100000, "pods to create")
	flag.IntVar(&cfg.podsPerNS, "pods-per-namespace", 100, "pods per namespace (namespaces = pods / this)")
	flag.IntVar(&cfg.policiesPerNS, "policies-per-namespace", 10, "NetworkPolicies per namespace")
	flag.IntVar(&cfg.nodes, "nodes", 500, "node names the pods are spread over (one of them is the measured daemon's)")
	flag.IntVar(&cfg.workers, "workers", 32, "concurrent API clients while creating objects")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds of the -daemon binaries (without -commands)")
	flag.StringVar(&cfg.daemons, "daemon", "", "daemon binaries to measure, NAME=PATH,NAME=PATH (without -commands)")
	flag.BoolVar(&cfg.floor, "floor", true, "also measure the floor before the rounds (without -commands)")
	flag.StringVar(&cfg.commands, "commands", "", "named pipe to read commands from (see the package doc); created if missing")
	flag.StringVar(&cfg.lock, "lock", "", "a file to lock (flock) while loading and during each command, so that other heavy jobs on the machine wait; empty locks nothing")
	flag.DurationVar(&cfg.readyTimeout, "ready-timeout", 10*time.Minute, "bound for the daemon's /readyz")
	flag.Parse()

	cluster.Main("readybench", func() error { return run(cfg) })
}

// bench is the loaded cluster and its one node.
type bench struct {
	cfg    config
	cp     *cluster.ControlPlane
	node   *cluster.Node
	client kubernetes.Interface
}

func run(cfg config) error {
	if err := bulk.CheckShape(cfg.pods, cfg.podsPerNS, cfg.nodes, cfg.workers); err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := cluster.RemoveStale(); err != nil {
		return err
	}
	unlock, err := lock(cfg.lock)
	if err != nil {
		return err
	}
	b, err := load(ctx, cfg)
	unlock()
	if b != nil {
		defer b.cp.Stop()
	}
	if err != nil {
		return err
	}
	if cfg.commands == "" {
		daemons, err := parseDaemons(strings.Split(cfg.daemons, ","))
		if err != nil {
			return err
		}
		return b.locked(func() error {
			if cfg.floor {
				if err := measureFloor(ctx, b.cp.Config, cfg.pods); err != nil {
					return err
				}
			}
			return b.rounds(cfg.rounds, daemons)
		})
	}
	return b.serve(ctx)
}

// load starts the control plane and creates the cluster's objects.
func load(ctx context.Context, cfg config) (*bench, error) {
	fmt.Printf("# readybench: %d pods, load average %s on %d-CPU machine\n", cfg.pods, bulk.LoadAvg(), runtime.NumCPU())
	start := time.Now()
	cp, err := cluster.StartControlPlane(ctx, cluster.ControlPlaneOptions{
		EtcdArgs: []string{"--quota-backend-bytes=8589934592"},
	})
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, cp: cp}
	env, err := cluster.NewEnv(ctx, cp, cluster.Options{Nodes: 1})
	if err != nil {
		return b, err
	}
	b.node = env.Nodes[0]
	rc := rest.CopyConfig(cp.Config)
	rc.QPS, rc.Burst = 5000, 10000
	if b.client, err = kubernetes.NewForConfig(rc); err != nil {
		return b, fmt.Errorf("client: %w", err)
	}
	nsCount := (cfg.pods + cfg.podsPerNS - 1) / cfg.podsPerNS
	if err := bulk.CreateNamespaces(ctx, b.client, cfg.workers, nsCount); err != nil {
		return b, err
	}
	if err := bulk.CreatePolicies(ctx, b.client, cfg.workers, nsCount, cfg.policiesPerNS); err != nil {
		return b, err
	}
	nodeNames := make([]string, cfg.nodes)
	nodeNames[0] = b.node.Name
	for i := 1; i < cfg.nodes; i++ {
		nodeNames[i] = fmt.Sprintf("bench-node-%03d", i)
	}
	if err := bulk.CreatePods(ctx, b.client, cfg.workers, cfg.pods, cfg.podsPerNS, func(i int) string { return nodeNames[i%cfg.nodes] }); err != nil {
		return b, err
	}
	fmt.Printf("loaded %d namespaces, %d policies, %d pods in %s\n", nsCount, nsCount*cfg.policiesPerNS, cfg.pods, since(start))
	return b, nil
}

// serve runs the commands read from the named pipe until "quit" or EOF of a
// writer that sent "quit".
func (b *bench) serve(ctx context.Context) error {
	if err := syscall.Mkfifo(b.cfg.commands, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", b.cfg.commands, err)
	}
	defer os.Remove(b.cfg.commands)
	fmt.Printf("ready for commands on %s\n", b.cfg.commands)
	for {
		// Opening blocks until a writer comes; its EOF ends its commands.
		f, err := os.Open(b.cfg.commands)
		if err != nil {
			return fmt.Errorf("open %s: %w", b.cfg.commands, err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			if line == "quit" {
				f.Close()
				return nil
			}
			fmt.Printf("\n>>> %s (load average %s)\n", line, bulk.LoadAvg())
			if err := b.locked(func() error { return b.command(ctx, strings.Fields(line)) }); err != nil {
				fmt.Printf("command failed: %v\n", err)
			}
		}
		f.Close()
	}
}

func (b *bench) command(ctx context.Context, args []string) error {
	switch args[0] {
	case "floor":
		return measureFloor(ctx, b.cp.Config, b.cfg.pods)
	case "run":
		if len(args) < 3 {
			return errors.New("usage: run ROUNDS NAME=BIN [NAME=BIN]")
		}
		rounds, err := strconv.Atoi(args[1])
		if err != nil {
			return fmt.Errorf("rounds: %w", err)
		}
		daemons, err := parseDaemons(args[2:])
		if err != nil {
			return err
		}
		return b.rounds(rounds, daemons)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func (b *bench) locked(f func() error) error {
	unlock, err := lock(b.cfg.lock)
	if err != nil {
		return err
	}
	defer unlock()
	return f()
}

// daemon is one binary under test.
type daemon struct{ name, bin string }

func parseDaemons(specs []string) ([]daemon, error) {
	var ds []daemon
	for _, s := range specs {
		name, bin, ok := strings.Cut(s, "=")
		if !ok || name == "" || bin == "" {
			return nil, fmt.Errorf("daemon %q: want NAME=PATH", s)
		}
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("daemon %s: %w", name, err)
		}
		ds = append(ds, daemon{name, bin})
	}
	if len(ds) == 0 {
		return nil, errors.New("no daemon binaries given")
	}
	return ds, nil
}

// rounds measures each daemon fresh and restarted, interleaved, and prints the
// medians.
func (b *bench) rounds(n int, daemons []daemon) error {
	fresh := map[string][]float64{}
	restart := map[string][]float64{}
	for r := range n {
		for _, d := range daemons {
			f, err := b.start(d, true)
			if err != nil {
				return err
			}
			s, err := b.start(d, false)
			if err != nil {
				return err
			}
			fresh[d.name] = append(fresh[d.name], f.Seconds())
			restart[d.name] = append(restart[d.name], s.Seconds())
			fmt.Printf("round %d %-10s fresh %6.2fs  restart %6.2fs  (load average %s)\n", r+1, d.name, f.Seconds(), s.Seconds(), bulk.LoadAvg())
		}
	}
	fmt.Printf("\n%-10s %22s %22s  (median [min-max] of %d rounds)\n", "daemon", "fresh", "restart", n)
	for _, d := range daemons {
		fmt.Printf("%-10s %22s %22s\n", d.name, summary(fresh[d.name]), summary(restart[d.name]))
	}
	return nil
}

// start runs the daemon until /readyz and stops it; fresh removes the table
// first, so that the daemon programs an empty kernel.
func (b *bench) start(d daemon, fresh bool) (time.Duration, error) {
	ctx := context.Background()
	if fresh {
		if _, err := b.node.Exec(ctx, "nft", "delete", "table", "inet", "nftwarden"); err != nil && !strings.Contains(err.Error(), "No such file") {
			return 0, fmt.Errorf("remove the table before a fresh start: %w", err)
		}
	}
	if err := os.Setenv("NFTW_DAEMON", d.bin); err != nil {
		return 0, err
	}
	logStart := logSize(b.node.DaemonLog())
	server := pidsWith(b.cp.Dir)
	serverCPU := cpuOf(server)
	start := time.Now()
	if err := b.node.StartDaemon(); err != nil {
		return 0, err
	}
	defer b.node.StopDaemon()
	if err := b.node.WaitDaemonReady(b.cfg.readyTimeout); err != nil {
		return 0, err
	}
	took := time.Since(start)
	daemonCPU, err := cpuSeconds(b.node.DaemonPID())
	if err != nil {
		return 0, fmt.Errorf("daemon CPU: %w", err)
	}
	kind := "restart"
	if fresh {
		kind = "fresh"
	}
	fmt.Printf("--- %s %s: ready in %s; CPU until then: daemon %.2fs, etcd+kube-apiserver %.2fs; its log:\n",
		d.name, kind, took.Round(10*time.Millisecond), daemonCPU, cpuOf(server)-serverCPU)
	printStartLog(b.node.DaemonLog(), logStart)
	return took, nil
}

// startLines are the messages of the daemon's start that show where the time goes.
var startLines = []string{"starting", "synced", "full reconcile", "ready:", "timing"}

func printStartLog(path string, from int64) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if slices.ContainsFunc(startLines, func(s string) bool { return strings.Contains(line, s) }) {
			fmt.Println("    " + line)
		}
	}
}

func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func summary(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return fmt.Sprintf("%.2fs [%.2f-%.2f]", s[len(s)/2], s[0], s[len(s)-1])
}

// lock takes an exclusive flock on path (none when path is empty) and returns
// its release.
func lock(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }
