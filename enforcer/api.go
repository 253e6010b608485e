package enforcer

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftwarden/nftwarden/nft"
)

// Config configures an Engine.
type Config struct {
	// NodeName selects the local pods: pods whose spec.nodeName equals it are
	// policy targets here (vmap elements and pod chains); peer sets hold pod IPs
	// of the whole cluster.
	NodeName string
	// Dataplane receives the transactions (nft.NewKernel or nft.NewFake). It may
	// be nil for a model-only engine (Decide, Desired, Stats), e.g. for the CLI's
	// explain command; Flush and Reconcile then only compute and return an error.
	Dataplane nft.Dataplane
	// Logger is optional; nil means slog.Default().
	Logger *slog.Logger
}

// FlushResult says what a Flush or Reconcile did.
type FlushResult struct {
	Full       bool          // a full reconcile was done
	Operations int           // nft.Transaction.Size() of what was sent (0 = no-op)
	Duration   time.Duration
}

// Stats counts the model and the desired state.
type Stats struct {
	Pods, LocalPods, Namespaces, Policies, Sets, Chains, Elements int
}

// Flow is a new connection to evaluate.
type Flow struct {
	Src, Dst netip.Addr
	Protocol corev1.Protocol // TCP, UDP, SCTP
	Port     uint16          // destination port
}

// Decision is the verdict for a Flow with the reasons.
type Decision struct {
	Allowed bool
	Egress  DirectionDecision // of the source pod (if Src is a pod)
	Ingress DirectionDecision // of the destination pod (if Dst is a pod)
	Reason  string            // one human sentence
}

// DirectionDecision is the verdict of one direction.
type DirectionDecision struct {
	Pod      string   // "ns/name" of the pod this direction concerns, "" if not a pod
	Isolated bool     // some policy selects the pod for this direction
	Allowed  bool
	Policies []string // "ns/name": allowing policies (allowed) or isolating ones (denied), sorted
}

var errNotImplemented = errors.New("enforcer: not implemented yet")

// Engine is the policy engine.
type Engine struct{}

// New returns an engine.
func New(cfg Config) (*Engine, error) { return nil, errNotImplemented }

func (e *Engine) UpsertNamespace(ns *corev1.Namespace) error { return errNotImplemented }
func (e *Engine) DeleteNamespace(name string)                {}
func (e *Engine) UpsertPod(p *corev1.Pod) error              { return errNotImplemented }
func (e *Engine) DeletePod(namespace, name string)           {}
func (e *Engine) UpsertNetworkPolicy(np *networkingv1.NetworkPolicy) error {
	return errNotImplemented
}
func (e *Engine) DeleteNetworkPolicy(namespace, name string) {}
func (e *Engine) Flush(ctx context.Context) (FlushResult, error) {
	return FlushResult{}, errNotImplemented
}
func (e *Engine) Reconcile(ctx context.Context) (FlushResult, error) {
	return FlushResult{}, errNotImplemented
}
func (e *Engine) Desired() *nft.State                               { return nft.NewState() }
func (e *Engine) Stats() Stats                                      { return Stats{} }
func (e *Engine) Decide(f Flow) Decision                            { return Decision{Reason: "not implemented"} }
func (e *Engine) PodIPs(namespace, name string) ([]netip.Addr, bool) { return nil, false }
