package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nftwarden/nftwarden/daemon/cniwire"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/podwatch"
)

// Exit codes of the command.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // bad flags or arguments
)

// usageError marks errors in flags and arguments (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// Main runs the nftwarden command line (args[0] is the program name) and
// returns the process exit code; cmd/nftwarden passes it to os.Exit.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := &cliEnv{stdout: stdout, stderr: stderr, run: runCommand}
	return env.exec(ctx, args)
}

// cliEnv is what the commands write to and the daemon entry point, replaceable
// in tests.
type cliEnv struct {
	stdout, stderr io.Writer
	run            func(ctx context.Context, cfg runConfig, log *slog.Logger) error
}

func (env *cliEnv) exec(ctx context.Context, args []string) int {
	app, notFound := env.newApp()
	err := app.RunContext(ctx, args)
	if err == nil && *notFound != "" {
		err = usagef("unknown command %q", *notFound)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(env.stderr, "nftwarden: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(env.stderr, "Run 'nftwarden --help' for usage.")
		return exitUsage
	}
	return exitError
}

// runConfig is the configuration of `nftwarden run`.
type runConfig struct {
	Kubeconfig     string
	NodeName       string
	Table          string
	MetricsAddress string // "" disables the HTTP server
	ResyncPeriod   time.Duration
	// PodName and PodNamespace name the daemon's own pod when it runs as one
	// (from the downward API); empty otherwise.
	PodName, PodNamespace string
	// CleanupOnUninstall deletes the table at shutdown when the pod's
	// DaemonSet is being deleted (see uninstalling).
	CleanupOnUninstall bool
	CNIConfDir         string // cniflags.go: take nftwarden-cni out of it on uninstall
	// RevokeEstablished deletes the conntrack entries of connections that a
	// change denies.
	RevokeEstablished bool
	// ClusterNetworkPolicy is cnpAuto (watch them while the API server
	// serves them), cnpExperimental (the same with the experimental channel:
	// nodes peers, named ports) or cnpOff; CNPDiscoveryPeriod is how often
	// discovery is asked whether it does.
	ClusterNetworkPolicy string
	CNPDiscoveryPeriod   time.Duration
	// VerdictLog configures the deny/flow log, audit mode and the
	// per-policy counters (logflags.go), and first-packet isolation
	// (podcidrs_flags.go), which dump --desired and explain share.
	VerdictLog verdictLogConfig
	// CNISocket is where the chained CNI plugin reaches the daemon
	// (cnisocket.go); "" serves no socket.
	CNISocket string
}

// firstPacket is the configuration of first-packet isolation.
func (c runConfig) firstPacket() firstPacketConfig { return c.VerdictLog.FirstPacket }

// Flag names.
const (
	flagKubeconfig         = "kubeconfig"
	flagNodeName           = "node-name"
	flagTable              = "table"
	flagMetricsAddress     = "metrics-address"
	flagLogFormat          = "log-format"
	flagLogLevel           = "log-level"
	flagResyncPeriod       = "resync-period"
	flagPodName            = "pod-name"
	flagPodNamespace       = "pod-namespace"
	flagCleanupOnUninstall = "cleanup-on-uninstall"
	flagTimeout            = "timeout"

	flagRevokeEstablished = "revoke-established"

	flagOutput = "output"
	flagTrace  = "trace"

	flagClusterNetworkPolicy          = "cluster-network-policy"
	flagClusterNetworkPolicyDiscovery = "cluster-network-policy-discovery-period"

	flagCNISocket = "cni-socket"
)

// Values of --cluster-network-policy.
const (
	cnpAuto = "auto" // enforce them while their CRD is installed
	cnpOff  = "off"  // NetworkPolicy only
	// cnpExperimental is auto plus the experimental channel's nodes peers
	// (Nodes watched) and named ports; under auto they fail closed.
	cnpExperimental = "experimental"
)

// experimentalChannel reports whether mode turns on ClusterNetworkPolicy's
// experimental channel: the engine accepts nodes peers and named ports, and
// the watcher feeds it Nodes.
func experimentalChannel(mode string) bool { return mode == cnpExperimental }

func clusterNetworkPolicyFlag() cli.Flag {
	return &cli.StringFlag{
		Name: flagClusterNetworkPolicy,
		Usage: "`MODE` of ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1): auto enforces them whenever " +
			"their CRD is installed (picked up and dropped without a restart), experimental does so with the experimental " +
			"channel's nodes peers and named ports too (watches Nodes), off enforces NetworkPolicy only",
		Value:   cnpAuto,
		EnvVars: []string{"NFTWARDEN_CLUSTER_NETWORK_POLICY"},
	}
}

// clusterNetworkPolicyMode reads and checks --cluster-network-policy.
func clusterNetworkPolicyMode(c *cli.Context) (string, error) {
	switch m := c.String(flagClusterNetworkPolicy); m {
	case cnpAuto, cnpExperimental, cnpOff:
		return m, nil
	default:
		return "", usagef("--%s %q: want %s, %s or %s", flagClusterNetworkPolicy, m, cnpAuto, cnpExperimental, cnpOff)
	}
}

func kubeconfigFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    flagKubeconfig,
		Usage:   "kubeconfig `FILE` (one path); the in-cluster service account when empty",
		EnvVars: []string{"NFTWARDEN_KUBECONFIG", "KUBECONFIG"},
	}
}

func tableFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    flagTable,
		Usage:   "`NAME` of the inet table nftwarden owns",
		Value:   nft.DefaultTable,
		EnvVars: []string{"NFTWARDEN_TABLE"},
	}
}

// nodeName normalises a node name the way the kubelet does with its hostname
// (or --hostname-override) before it registers the Node: surrounding blanks
// removed, lowercased. A host named "Worker-1" registers as node "worker-1";
// compared as written, no pod would ever be local here.
func nodeName(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func nodeNameFlag(hostname string) cli.Flag {
	return &cli.StringFlag{
		Name:    flagNodeName,
		Usage:   "`NAME` of this node: pods scheduled to it are the ones whose policies are enforced here",
		Value:   hostname,
		EnvVars: []string{"NODE_NAME", "NFTWARDEN_NODE_NAME"},
	}
}

func timeoutFlag() cli.Flag {
	return &cli.DurationFlag{
		Name:    flagTimeout,
		Usage:   "give up reaching the API server after `DURATION`",
		Value:   30 * time.Second,
		EnvVars: []string{"NFTWARDEN_TIMEOUT"},
	}
}

func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagLogFormat, Usage: "log `FORMAT`: text or json (of the deny/flow log of run too)", Value: "text", EnvVars: []string{"NFTWARDEN_LOG_FORMAT"}},
		&cli.StringFlag{Name: flagLogLevel, Usage: "log `LEVEL`: debug, info, warn or error", Value: "info", EnvVars: []string{"NFTWARDEN_LOG_LEVEL"}},
	}
}

// logger builds the command's logger from the log flags.
func (env *cliEnv) logger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String(flagLogLevel))); err != nil {
		return nil, usagef("--%s %q: want debug, info, warn or error", flagLogLevel, c.String(flagLogLevel))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String(flagLogFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(env.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.stderr, opts)), nil
	}
	return nil, usagef("--%s %q: want text or json", flagLogFormat, c.String(flagLogFormat))
}

func validTable(name string) error {
	if name == "" || len(name) > 255 || strings.ContainsAny(name, " \t\n/\"'") {
		return usagef("--%s %q: want a non-empty nftables table name without blanks, quotes or slashes", flagTable, name)
	}
	return nil
}

// runConfigFrom reads and checks the flags of `nftwarden run`.
func runConfigFrom(c *cli.Context) (runConfig, error) {
	cfg := runConfig{
		Kubeconfig:         c.String(flagKubeconfig),
		NodeName:           nodeName(c.String(flagNodeName)),
		Table:              c.String(flagTable),
		MetricsAddress:     c.String(flagMetricsAddress),
		ResyncPeriod:       c.Duration(flagResyncPeriod),
		PodName:            c.String(flagPodName),
		PodNamespace:       c.String(flagPodNamespace),
		CleanupOnUninstall: c.Bool(flagCleanupOnUninstall),
		CNIConfDir:         c.String(flagCNIConfDir),
		RevokeEstablished:  c.Bool(flagRevokeEstablished),
		CNPDiscoveryPeriod: c.Duration(flagClusterNetworkPolicyDiscovery),
		CNISocket:          c.String(flagCNISocket),
	}
	var err error
	if cfg.ClusterNetworkPolicy, err = clusterNetworkPolicyMode(c); err != nil {
		return cfg, err
	}
	if cfg.VerdictLog, err = verdictLogConfigFrom(c); err != nil {
		return cfg, err
	}
	if cfg.CNPDiscoveryPeriod <= 0 {
		return cfg, usagef("--%s %v: must be positive", flagClusterNetworkPolicyDiscovery, cfg.CNPDiscoveryPeriod)
	}
	if cfg.NodeName == "" {
		return cfg, usagef("--%s is empty and the hostname is unknown: set --%s or NODE_NAME", flagNodeName, flagNodeName)
	}
	if err := validTable(cfg.Table); err != nil {
		return cfg, err
	}
	if cfg.MetricsAddress != "" {
		if _, port, err := net.SplitHostPort(cfg.MetricsAddress); err != nil || port == "" {
			return cfg, usagef("--%s %q: want HOST:PORT (or empty to disable)", flagMetricsAddress, cfg.MetricsAddress)
		}
	}
	if cfg.ResyncPeriod <= 0 {
		return cfg, usagef("--%s %v: must be positive", flagResyncPeriod, cfg.ResyncPeriod)
	}
	if s := cfg.CNISocket; s != "" && (!filepath.IsAbs(s) || len(s) > maxCNISocketPath) {
		return cfg, usagef("--%s %q: want an absolute path of at most %d bytes (or empty to serve no socket)", flagCNISocket, s, maxCNISocketPath)
	}
	return cfg, nil
}

// newApp declares the command line. It is long because it is one literal,
// the whole command tree with every flag, which reads best in one place the
// way `nftwarden --help` shows it.
func (env *cliEnv) newApp() (*cli.App, *string) {
	hostname, _ := os.Hostname()
	notFound := new(string)
	onUsageError := func(_ *cli.Context, err error, _ bool) error { return usageError{err} }

	app := &cli.App{
		Name:           "nftwarden",
		Usage:          "enforce Kubernetes NetworkPolicy on this node with nftables",
		Version:        buildVersion(),
		Writer:         env.stdout,
		ErrWriter:      env.stderr,
		OnUsageError:   onUsageError,
		ExitErrHandler: func(*cli.Context, error) {}, // main decides the exit code
		CommandNotFound: func(_ *cli.Context, name string) {
			*notFound = name
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown command %q", c.Args().First())
			}
			_ = cli.ShowAppHelp(c)
			return usagef("no command given")
		},
		Commands: []*cli.Command{
			{
				Name:  "run",
				Usage: "watch the API server and enforce network policy on this node (the daemon)",
				Description: "Programs the inet table from the cluster's Pods, Namespaces, NetworkPolicies and ClusterNetworkPolicies and keeps it\n" +
					"in sync. On SIGTERM or SIGINT it stops and leaves the rules in place; the next start takes over\n" +
					"without a gap. Serves /metrics, /healthz and /readyz on --metrics-address.",
				OnUsageError: onUsageError,
				Flags: append([]cli.Flag{
					kubeconfigFlag(),
					nodeNameFlag(hostname),
					tableFlag(),
					&cli.StringFlag{
						Name:    flagMetricsAddress,
						Usage:   "`HOST:PORT` serving /metrics, /healthz and /readyz (empty disables)",
						Value:   "127.0.0.1:9640",
						EnvVars: []string{"NFTWARDEN_METRICS_ADDRESS"},
					},
					&cli.DurationFlag{
						Name:    flagResyncPeriod,
						Usage:   "`PERIOD` of the full reconcile that repairs drift in the kernel",
						Value:   podwatch.DefaultResyncPeriod,
						EnvVars: []string{"NFTWARDEN_RESYNC_PERIOD"},
					},
					&cli.StringFlag{
						Name:    flagPodName,
						Usage:   "`NAME` of the daemon's own pod, when it runs as a DaemonSet pod (downward API)",
						EnvVars: []string{"POD_NAME"},
					},
					&cli.StringFlag{
						Name:    flagPodNamespace,
						Usage:   "`NAMESPACE` of the daemon's own pod (downward API)",
						EnvVars: []string{"POD_NAMESPACE"},
					},
					&cli.BoolFlag{
						Name: flagCleanupOnUninstall,
						Usage: "when stopped because the pod's DaemonSet is being deleted, delete the table first " +
							"(a restart or rolling update never does); needs --pod-name and --pod-namespace",
						Value:   true,
						EnvVars: []string{"NFTWARDEN_CLEANUP_ON_UNINSTALL"},
					},
					cniConfDirFlag(),
					&cli.BoolFlag{
						Name: flagRevokeEstablished,
						Usage: "when a change denies connections that were allowed, delete their conntrack entries so that " +
							"established ones stop too (false: they last until they end)",
						Value:   true,
						EnvVars: []string{"NFTWARDEN_REVOKE_ESTABLISHED"},
					},
					clusterNetworkPolicyFlag(),
					&cli.DurationFlag{
						Name: flagClusterNetworkPolicyDiscovery,
						Usage: "`PERIOD` of the discovery check that notices the ClusterNetworkPolicy CRD installed " +
							"or removed",
						Value:   podwatch.DefaultCNPDiscoveryPeriod,
						EnvVars: []string{"NFTWARDEN_CLUSTER_NETWORK_POLICY_DISCOVERY_PERIOD"},
					},
					&cli.StringFlag{
						Name: flagCNISocket,
						Usage: "unix socket `PATH` (root only) where the chained CNI plugin nftwarden-cni asks the daemon to program " +
							"a new pod before it starts (empty serves none)",
						Value:   cniwire.DefaultSocket,
						EnvVars: []string{"NFTWARDEN_CNI_SOCKET"},
					},
				}, append(verdictLogFlags(), logFlags()...)...),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					log, err := env.logger(c)
					if err != nil {
						return err
					}
					cfg, err := runConfigFrom(c)
					if err != nil {
						return err
					}
					return env.run(c.Context, cfg, log)
				},
			},
			{
				Name:         "cleanup",
				Usage:        "delete the table (and nothing else): policy is no longer enforced on this node",
				OnUsageError: onUsageError,
				Flags:        append([]cli.Flag{tableFlag()}, logFlags()...),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					log, err := env.logger(c)
					if err != nil {
						return err
					}
					if err := validTable(c.String(flagTable)); err != nil {
						return err
					}
					return cleanupCommand(c.Context, c.String(flagTable), log)
				},
			},
			{
				Name:  "dump",
				Usage: "print the programmed table in nft syntax",
				Description: "Reads the table from the kernel. With --desired, lists the cluster from the API server instead\n" +
					"and prints the table that this node should have (nothing is programmed).",
				OnUsageError: onUsageError,
				Flags: append([]cli.Flag{
					tableFlag(),
					&cli.BoolFlag{Name: "desired", Usage: "print the table compiled from the API server's objects instead of the kernel's"},
					kubeconfigFlag(),
					nodeNameFlag(hostname),
					timeoutFlag(),
					clusterNetworkPolicyFlag(),
				}, append(programFlags(), logFlags()...)...),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					log, err := env.logger(c)
					if err != nil {
						return err
					}
					table := c.String(flagTable)
					if err := validTable(table); err != nil {
						return err
					}
					if !c.Bool("desired") {
						return dumpKernel(c.Context, table, env.stdout)
					}
					if nodeName(c.String(flagNodeName)) == "" {
						return usagef("--%s is empty and the hostname is unknown", flagNodeName)
					}
					cnpMode, err := clusterNetworkPolicyMode(c)
					if err != nil {
						return err
					}
					ctx, cancel := context.WithTimeout(c.Context, c.Duration(flagTimeout))
					defer cancel()
					prog, err := programConfigFrom(c)
					if err != nil {
						return err
					}
					return dumpDesired(ctx, c.String(flagKubeconfig), nodeName(c.String(flagNodeName)), table, cnpMode, prog, log, env.stdout)
				},
			},
			{
				Name:      "explain",
				Usage:     "say whether a new connection is allowed and which policies decide it",
				UsageText: "nftwarden explain --from NS/POD|IP --to NS/POD|IP --port PORT|FROM-TO|NAME[/tcp|udp|sctp] [-o text|json] [--trace]",
				Description: "Lists Pods, Namespaces, NetworkPolicies and ClusterNetworkPolicies from the API server and asks the policy engine's\n" +
					"reference evaluator. Dual-stack pods are explained once per address family; a port range once per run of ports\n" +
					"answered alike; a port name is resolved on the destination pod's container ports. With --trace (on the node,\n" +
					"as root) the flow's first packet is also traced through the table the kernel holds, printing each rule it passes\n" +
					"with its counters, and through the table the cluster compiles to for --node-name; a disagreement is reported.",
				OnUsageError: onUsageError,
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "from", Usage: "source: `NS/POD` or an IP address"},
					&cli.StringFlag{Name: "to", Usage: "destination: `NS/POD` or an IP address"},
					&cli.StringFlag{Name: "port", Usage: "destination `PORT/PROTO`: a number (8080/tcp), a range (8000-8100/tcp) or a name of the " +
						"destination pod's container ports (http/tcp); the protocol defaults to tcp"},
					&cli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Usage: "output `FORMAT`: text or json (a stable shape, see the README)", Value: outputText},
					&cli.BoolFlag{Name: flagTrace, Usage: "also trace the flow through the table programmed in this node's kernel (needs CAP_NET_ADMIN)"},
					kubeconfigFlag(),
					nodeNameFlag(hostname),
					tableFlag(),
					timeoutFlag(),
					clusterNetworkPolicyFlag(),
				}, append(programFlags(), logFlags()...)...),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					log, err := env.logger(c)
					if err != nil {
						return err
					}
					q, err := explainQueryFrom(c.String("from"), c.String("to"), c.String("port"))
					if err != nil {
						return err
					}
					opts, err := explainOptionsFrom(c)
					if err != nil {
						return err
					}
					ctx, cancel := context.WithTimeout(c.Context, c.Duration(flagTimeout))
					defer cancel()
					return explainCommand(ctx, opts, q, log, env.stdout)
				},
			},
			env.cniCommand(onUsageError),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					_, err := fmt.Fprintln(env.stdout, versionLine())
					return err
				},
			},
		},
	}
	return app, notFound
}

// explainOptionsFrom reads and checks explain's flags besides the query.
func explainOptionsFrom(c *cli.Context) (explainOptions, error) {
	opts := explainOptions{
		Kubeconfig: c.String(flagKubeconfig),
		Output:     c.String(flagOutput),
		Trace:      c.Bool(flagTrace),
		Node:       nodeName(c.String(flagNodeName)),
		Table:      c.String(flagTable),
	}
	var err error
	if opts.CNPMode, err = clusterNetworkPolicyMode(c); err != nil {
		return opts, err
	}
	if opts.Program, err = programConfigFrom(c); err != nil {
		return opts, err
	}
	if opts.Output != outputText && opts.Output != outputJSON {
		return opts, usagef("explain: --%s %q: want %s or %s", flagOutput, opts.Output, outputText, outputJSON)
	}
	if opts.Trace {
		if opts.Node == "" {
			return opts, usagef("explain --%s: --%s is empty and the hostname is unknown", flagTrace, flagNodeName)
		}
		if err := validTable(opts.Table); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

func noArgs(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("%s: unexpected argument %q (all options are flags)", c.Command.Name, c.Args().First())
	}
	return nil
}
