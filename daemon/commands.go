package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	corev1 "k8s.io/api/core/v1"

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
// cnpMode is off.
func modelEngine(ctx context.Context, kubeconfig, nodeName, cnpMode string, log *slog.Logger) (*enforcer.Engine, error) {
	routeClientGoLogs(log)
	clients, err := newClient(kubeconfig, nil)
	if err != nil {
		return nil, err
	}
	eng, err := enforcer.New(enforcer.Config{NodeName: nodeName, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("create policy engine: %w", err)
	}
	opts := podwatch.Options{Logger: log}
	if cnpMode != cnpOff {
		opts.ClusterNetworkPolicies.Client = clients.cnp
	}
	if err := podwatch.Sync(ctx, clients.kube, eng, opts); err != nil {
		return nil, fmt.Errorf("API server %s: %w", clients.host, err)
	}
	return eng, nil
}

// dumpDesired prints the table that the API server's objects compile to for
// nodeName, without touching the kernel.
func dumpDesired(ctx context.Context, kubeconfig, nodeName, table, cnpMode string, log *slog.Logger, out io.Writer) error {
	eng, err := modelEngine(ctx, kubeconfig, nodeName, cnpMode, log)
	if err != nil {
		return fmt.Errorf("dump --desired: %w", err)
	}
	_, err = io.WriteString(out, nft.Render(table, eng.Desired()))
	return err
}

// explainQuery is a parsed `nftwarden explain`.
type explainQuery struct {
	From, To endpoint
	Protocol corev1.Protocol
	Port     uint16
}

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
	proto, n, err := parsePort(port)
	if err != nil {
		return q, usagef("explain: --port %w", err)
	}
	q.Protocol, q.Port = proto, n
	return q, nil
}

// explainCommand evaluates the query against the cluster and prints the answer.
func explainCommand(ctx context.Context, kubeconfig, cnpMode string, q explainQuery, log *slog.Logger, out io.Writer) error {
	// The evaluator does not depend on the node: every pod's policies are known.
	eng, err := modelEngine(ctx, kubeconfig, "", cnpMode, log)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	return explain(eng, q, out)
}

// decider is what explain needs of the engine.
type decider interface {
	podIPs
	Decide(f enforcer.Flow) enforcer.Decision
}

func explain(eng decider, q explainQuery, out io.Writer) error {
	src, err := addresses(eng, q.From)
	if err != nil {
		return fmt.Errorf("explain: --from: %w", err)
	}
	dst, err := addresses(eng, q.To)
	if err != nil {
		return fmt.Errorf("explain: --to: %w", err)
	}
	pairs := addressPairs(src, dst)
	if len(pairs) == 0 {
		return fmt.Errorf("explain: %s %v and %s %v have no address family in common", q.From, src, q.To, dst)
	}
	for i, p := range pairs {
		if i > 0 {
			fmt.Fprintln(out)
		}
		f := enforcer.Flow{Src: p[0], Dst: p[1], Protocol: q.Protocol, Port: q.Port}
		formatDecision(out, label(q.From, p[0]), label(q.To, p[1]), f, eng.Decide(f))
	}
	return nil
}
