package cluster

import (
	"context"
	"errors"
	"fmt"
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

// CutAPI makes the API server unreachable from every node of the environment: each
// node's relay closes its open connections and, until RestoreAPI, closes every new one
// right after accepting it, which is what a client sees of an API server behind a load
// balancer when the server goes away. The test process keeps its own access, so a test
// can write a change that the daemons cannot have seen.
func (e *Env) CutAPI() {
	for _, n := range e.Nodes {
		n.relay.setCut(true)
	}
}

// RestoreAPI ends CutAPI: the relays forward connections again.
func (e *Env) RestoreAPI() {
	for _, n := range e.Nodes {
		n.relay.setCut(false)
	}
}
