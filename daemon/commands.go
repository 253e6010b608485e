package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/podwatch"
)

// cleanupCommand deletes the table. Policy is no longer enforced afterwards.
func cleanupCommand(ctx context.Context, table string, log *slog.Logger) error {
	if err := requireNetAdmin(); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	k, err := nft.NewKernel(nft.WithTable(table))
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	defer k.Close()
	if err := k.Cleanup(ctx); err != nil {
		return fmt.Errorf("cleanup: delete table inet %s: %w", table, err)
	}
	log.Info("table deleted (if it existed); network policy is no longer enforced on this node", "table", "inet "+table)
	return nil
}

// dumpKernel prints the table as the kernel holds it.
func dumpKernel(ctx context.Context, table string, out io.Writer) error {
	if err := requireNetAdmin(); err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	k, err := nft.NewKernel(nft.WithTable(table))
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	defer k.Close()
	st, err := k.Read(ctx)
	if nft.IsNotFound(err) {
		return fmt.Errorf("dump: table inet %s does not exist (nftwarden has not programmed this host, or it was cleaned up): %w", table, err)
	}
	if err != nil {
		return fmt.Errorf("dump: read table inet %s: %w", table, err)
	}
	_, err = io.WriteString(out, nft.Render(table, st))
	return err
}

// modelEngine lists the cluster into an engine without a dataplane, through
// the daemon's own informers (podwatch.Sync): what explain and dump --desired
// show is what `nftwarden run` would program. Objects the engine rejects are
// logged by it; they fail closed in the model as in the daemon.
//
// ClusterNetworkPolicies are listed when the API server serves them, unless
// cnpMode is off; with the experimental channel, Nodes too. prog is the
// program's shape as run's flags set it (log rules, audit mode, counters).
func modelEngine(ctx context.Context, clients apiClients, nodeName, cnpMode string, prog programConfig, log *slog.Logger) (*enforcer.Engine, error) {
	routeClientGoLogs(log)
	cfg := enforcer.Config{NodeName: nodeName, Logger: log, ClusterNetworkPolicyExperimental: experimentalChannel(cnpMode)}
	prog.engineConfig(&cfg)
	eng, err := enforcer.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("create policy engine: %w", err)
	}
	opts := podwatch.Options{Logger: log, Nodes: experimentalChannel(cnpMode)}
	if cnpMode != cnpOff {
		opts.ClusterNetworkPolicies.Client = clients.cnp
	}
	if err := podwatch.Sync(ctx, clients.kube, eng, opts); err != nil {
		return nil, fmt.Errorf("API server %s: %w", clients.host, err)
	}
	return eng, nil
}

// dumpDesired prints the table that the API server's objects compile to for
// nodeName, without touching the kernel, shaped by prog as the daemon's is.
func dumpDesired(ctx context.Context, kubeconfig, nodeName, table, cnpMode string, prog programConfig, log *slog.Logger, out io.Writer) error {
	clients, err := newClient(kubeconfig, nil)
	if err != nil {
		return fmt.Errorf("dump --desired: %w", err)
	}
	eng, err := modelEngine(ctx, clients, nodeName, cnpMode, prog, log)
	if err != nil {
		return fmt.Errorf("dump --desired: %w", err)
	}
	_, err = io.WriteString(out, nft.Render(table, eng.Desired()))
	return err
}

// explainQueryFrom checks and parses the --from, --to and --port of explain.
func explainQueryFrom(from, to, port string) (explainQuery, error) {
	var q explainQuery
	for _, f := range []struct{ name, val string }{{"from", from}, {"to", to}, {"port", port}} {
		if f.val == "" {
			return q, usagef("explain: --%s is required", f.name)
		}
	}
	var err error
	if q.From, err = parseEndpoint(from); err != nil {
		return q, usagef("explain: --from %w", err)
	}
	if q.To, err = parseEndpoint(to); err != nil {
		return q, usagef("explain: --to %w", err)
	}
	if q.Port, err = parsePort(port); err != nil {
		return q, usagef("explain: --port %w", err)
	}
	if q.Port.Name != "" && !q.To.isPod() {
		return q, usagef("explain: --port %s: a port name needs a destination pod (--to NS/POD), whose container ports name it", q.Port)
	}
	return q, nil
}

// explainOptions are the flags of explain besides the query.
type explainOptions struct {
	Kubeconfig, CNPMode string
	Output              string // outputText or outputJSON
	// Trace follows the flow through the kernel's table Table of this node
	// (Node) too.
	Trace       bool
	Node, Table string
	// Program evaluates and compiles as a daemon run with the same flags
	// does (--audit: node-wide audit mode; the log rules and counters that
	// --trace compares).
	Program programConfig
}

// model returns the node and the program shape explain compiles for. The
// evaluator does not depend on the node: every pod's policies are known.
// The node matters only to the table traced, compiled for it, and so does
// first-packet isolation (a pod is known where it is local: without a node,
// every address of the pod CIDRs would be unknown, and denied).
func (opts explainOptions) model() (node string, prog programConfig) {
	prog = opts.Program
	if !opts.Trace {
		prog.FirstPacket.PodCIDRs = nil
		return "", prog
	}
	return opts.Node, prog
}

// Values of explain's --output.
const (
	outputText = "text"
	outputJSON = "json"
)

// explainCommand evaluates the query against the cluster and prints the
// answer; with opts.Trace beside the kernel's.
func explainCommand(ctx context.Context, opts explainOptions, q explainQuery, log *slog.Logger, out io.Writer) error {
	if opts.Trace {
		if err := requireNetAdmin(); err != nil {
			return fmt.Errorf("explain --trace: %w", err)
		}
	}
	clients, err := newClient(opts.Kubeconfig, nil)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	node, prog := opts.model()
	eng, err := modelEngine(ctx, clients, node, opts.CNPMode, prog, log)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	// A port name is resolved once the API server has answered the lists.
	if err := resolveQueryPort(&q, func(ns, name string) (*corev1.Pod, error) {
		return clients.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	}); err != nil {
		return err
	}
	var tables *traceTables
	if opts.Trace {
		k, err := nft.NewKernel(nft.WithTable(opts.Table))
		if err != nil {
			return fmt.Errorf("explain --trace: %w", err)
		}
		defer k.Close()
		if tables, err = readTraceTables(ctx, k, opts.Node, opts.Table, eng.Desired()); err != nil {
			return fmt.Errorf("explain --trace: %w", err)
		}
	}
	return explain(eng, q, tables, opts.Output, out)
}

// decider is what explain needs of the engine.
type decider interface {
	podIPs
	Decide(f enforcer.Flow) enforcer.Decision
}

// explain answers q from eng (and tables, with --trace) and writes the
// answer as output (text or json).
func explain(eng decider, q explainQuery, tables *traceTables, output string, out io.Writer) error {
	flows, err := explainFlows(eng, q, tables)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	if output == outputJSON {
		return writeExplainJSON(out, flows)
	}
	for i, f := range flows {
		if i > 0 {
			fmt.Fprintln(out)
		}
		formatFlow(out, f)
	}
	return nil
}
