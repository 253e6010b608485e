package cluster

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// StopAPIServer simulates an outage of the control plane: it stops kube-apiserver and
// then etcd, each by its PID with SIGTERM (SIGKILL after 10 s), and waits until both
// have ended. Data, certificates and tokens stay, so StartAPIServer brings back the same
// cluster and every kubeconfig keeps working.
//
// While the API server is down, a client in a node namespace sees its connections to
// the node's relay accepted and then closed (EOF, reset), not refused: the relay
// listens inside the node and dials the API server per connection, as a load balancer
// in front of the API would.
func (cp *ControlPlane) StopAPIServer() error {
	if cp.apiserver == nil || cp.etcd == nil {
		return errors.New("control plane not started")
	}
	if done, _ := cp.apiserver.exited(); done {
		return errors.New("kube-apiserver is not running (stopped already?)")
	}
	// API server first: it would otherwise log etcd errors and fail its readiness.
	cp.apiserver.stop(10 * time.Second)
	cp.etcd.stop(10 * time.Second)
	return nil
}

// StartAPIServer starts etcd and kube-apiserver again after StopAPIServer, on the same
// ports, data directory, certificates and tokens, and waits until the API server
// answers /readyz (bounded by ControlPlaneOptions.ReadyTimeout).
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	for _, p := range []*process{cp.etcd, cp.apiserver} {
		if p == nil {
			return errors.New("control plane not started")
		}
		if done, _ := p.exited(); !done {
			return fmt.Errorf("%s still runs: stop it with StopAPIServer first", p.name)
		}
	}
	if err := cp.startServers(ctx, cp.Config.BearerToken); err != nil {
		return fmt.Errorf("restart control plane: %w", err)
	}
	return nil
}

// CutAPI makes the API server unreachable from the node: its relay closes its open
// connections and, until RestoreAPI, closes every new one right after accepting it,
// which is what a client sees of an API server behind a load balancer when the server
// goes away. The test process keeps its own access, so a test can write a change that
// the node's daemon cannot have seen.
func (n *Node) CutAPI() { n.relay.setCut(true) }

// RestoreAPI ends CutAPI: the relay forwards connections again.
func (n *Node) RestoreAPI() { n.relay.setCut(false) }

// blackholeTable is the nftables table (in a node namespace, never the machine's) with
// which BlackholeAPI drops the node's traffic to the API server.
const blackholeTable = "nftw_it_blackhole"

// BlackholeAPI makes the API server silently unreachable from the node, as a dead host
// or a network partition does: packets between the node and its relay to the API
// server are dropped in both directions, so connections stay open without an answer
// and new ones hang in their handshake; nothing is closed or refused, and clients
// notice only by their own timeouts. EndBlackhole lifts it. (CutAPI is the other kind
// of loss: connections closed at once.)
func (n *Node) BlackholeAPI(ctx context.Context) error {
	port := strconv.Itoa(n.env.CP.Port)
	rules := "table inet " + blackholeTable + " {\n" +
		"\tchain out {\n\t\ttype filter hook output priority -300; policy accept;\n" +
		"\t\toifname \"lo\" tcp dport " + port + " drop\n" +
		"\t\toifname \"lo\" tcp sport " + port + " drop\n\t}\n}\n"
	if err := n.nft(ctx, rules); err != nil {
		return fmt.Errorf("blackhole the API server on %s: %w", n.Name, err)
	}
	return nil
}

// EndBlackhole ends BlackholeAPI: packets flow again, and a connection that one end
// closed meanwhile is reset when the other end next sends.
func (n *Node) EndBlackhole(ctx context.Context) error {
	if err := n.nft(ctx, "delete table inet "+blackholeTable+"\n"); err != nil {
		return fmt.Errorf("end the blackhole on %s: %w", n.Name, err)
	}
	return nil
}

// nft feeds a ruleset to the nft tool inside the node's namespace.
func (n *Node) nft(ctx context.Context, ruleset string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Netns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f in %s: %w: %s", n.Netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}
