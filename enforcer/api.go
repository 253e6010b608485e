package enforcer

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nftwarden/nftwarden/nft"
)

// Config configures an Engine.
type Config struct {
	// NodeName selects the local pods: pods whose spec.nodeName equals it are
	// policy targets here (vmap elements and pod chains); peer sets hold pod IPs
	// of the whole cluster. Empty means no pod is local (nothing is isolated).
	NodeName string
	// Dataplane receives the transactions (nft.NewKernel or nft.NewFake). It may
	// be nil for a model-only engine (Decide, Desired, Stats), e.g. for the CLI's
	// explain command; Flush and Reconcile then return ErrNoDataplane.
	Dataplane nft.Dataplane
	// Logger is optional; nil means slog.Default().
	Logger *slog.Logger
	// ClusterNetworkPolicyExperimental turns on the experimental channel of
	// ClusterNetworkPolicy: nodes egress peers (matched against the Node
	// records given to UpsertNode) and destinationNamedPort. Off, both fail
	// closed as unsupported parts (doc.go, "ClusterNetworkPolicy").
	ClusterNetworkPolicyExperimental bool

	// The verdict log and counters (PROGRAM.md, "Logging, audit and
	// counters"). All off, the program is what it always was.

	// LogGroup is the NFLOG group the log rules copy packets to.
	LogGroup uint16
	// LogDenied logs every new connection policy drops ("nftw deny ..."),
	// at most LogRate per second per node (the drop still happens).
	LogDenied bool
	// LogAllowed logs every new connection the policy chains let through
	// ("nftw allow - flow"), with a bucket of its own of the same size.
	LogAllowed bool
	// LogRate is the packets per second the deny and audit log take at most
	// on this node (0: DefaultLogRate); LogBurst how many more at once (0:
	// DefaultLogBurst).
	LogRate  uint64
	LogBurst uint32
	// Audit puts every policy in audit mode: what policy would drop is
	// logged ("nftw audit ...") and accepted. A policy annotated
	// EnforcementAnnotation: EnforcementAudit is in audit mode alone (its
	// audit lines are logged whether or not LogDenied is on, under the
	// same limit).
	Audit bool
	// Counters gives every NetworkPolicy chain, default deny and
	// ClusterNetworkPolicy rule a named counter (CounterInfo).
	Counters bool

	// PodCIDRs turns on first-packet isolation (PROGRAM.md, "First-packet
	// isolation"): a new connection from or to an address inside them that
	// is not the address of a known local pod (active, not hostNetwork) is
	// dropped until the pod is programmed. Empty: off (the program is
	// byte-identical to before). An invalid prefix is logged and left out
	// (SetPodCIDRs reports it as an error); a non-canonical one is masked.
	PodCIDRs []netip.Prefix
}

// FlushResult says what a Flush or Reconcile did.
type FlushResult struct {
	Full       bool // a full reconcile was done
	Operations int  // nft.Transaction.Size() of what was sent (0 = no-op)
	Duration   time.Duration

	// Restricts: what was sent may deny connections that were allowed
	// before, whose conntrack entries RevokeDenied then deletes (false after
	// pure additions of peers, ports and blocks, and after a failure).
	Restricts bool
	// Batch numbers the engine's successful Flushes and Reconciles from 1 (0
	// after a failure). StartPod and StopPod return the result of the batch
	// that carried their change, which may be another caller's: the same
	// number in two results is the same batch, to be counted once.
	Batch uint64
	// ReadDataplane: a Reconcile that read the table from the dataplane.
	// False for one that trusted the engine's record of what it programmed,
	// because the dataplane proved that nobody else changed the table since
	// it last read it (nft.TamperEvident): such a Reconcile costs what a
	// Flush costs.
	ReadDataplane bool
	// Repaired: a Reconcile read the table, found it different from what the
	// engine had programmed, and converged it: drift (someone else changed
	// the table), repaired. A Reconcile at start-up or after a failed Flush
	// is expected to send operations and does not count.
	Repaired bool
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
	Pod      string // "ns/name" of the pod this direction concerns, "" if not a pod
	Isolated bool   // some policy selects the pod for this direction
	Allowed  bool
	Policies []string // "ns/name": allowing policies (allowed) or isolating ones (denied), sorted
	// Claimants lists, sorted, the live pods claiming the address when there
	// are several (IP reuse; Pod is then the first): they are judged as one
	// (doc.go, "Two live pods claiming one address").
	Claimants []string
	// Conflict: the claimants are selected by different policies for this
	// direction, which is then denied; Policies lists every one of those
	// (for a ClusterNetworkPolicy tier: the rules each claimant met).
	Conflict bool
	// Unknown: the address is inside the node's pod CIDRs but is no known
	// local pod's; first-packet isolation drops the connection (PROGRAM.md,
	// "First-packet isolation"). Pod names a claimant of another node, if
	// any; no policy is evaluated for the direction.
	Unknown bool
	// Tier is the tier that decided when the model holds
	// ClusterNetworkPolicies: "admin", "networkpolicy" or "baseline"; ""
	// for the default allow, and always "" without ClusterNetworkPolicies
	// (so a NetworkPolicy-only cluster reads exactly what it always did).
	// Policies and Isolated then concern NetworkPolicies only.
	Tier string
	// Rule names the deciding ClusterNetworkPolicy rule in the admin and
	// baseline tiers: "admin policy deny-to-secrets rule 2" (0-based, with
	// the rule's name in parentheses when it has one).
	Rule string
	// Passes lists the Pass rules that ended a tier before the decision,
	// e.g. "admin policy p rule 0".
	Passes []string
	// Audit is set when a policy in audit mode would deny the direction
	// (the program then logs "nftw audit ..."): the decision the first
	// such tier would give, with Tier, Rule or Policies naming what would
	// deny. Policies in audit mode change no verdict; an audited
	// NetworkPolicy counts when audited ones alone isolate the pod, an
	// audited ClusterNetworkPolicy rule when it would be its tier's first
	// match, in each tier the connection reaches. With Config.Audit every
	// direction is allowed and Audit is the verdict policy would give,
	// when it denies.
	Audit *DirectionDecision
}

// ErrNoDataplane is returned by Flush and Reconcile of a model-only engine.
var ErrNoDataplane = errors.New("enforcer: engine has no dataplane")

// Engine is the policy engine: it keeps the cluster model, compiles it into the
// desired nftables state incrementally, and sends deltas to the dataplane.
//
// All methods are safe for concurrent use. Upserts and deletes only change
// the model and the desired state and record what they touched; nothing
// reaches the dataplane until Flush or Reconcile. The upserts log what they
// reject or leave out once per version of an object (an identical upsert
// returns the same error without logging it again): callers need only count
// errors.
//
// The engine never holds its lock (mu) while the dataplane works: Flush and
// Reconcile compute what to send under it, send it without it, and take it
// again to record the result. So Stats, Decide, Desired and upserts answer
// at once during a kernel batch of any size. Flushes and Reconciles are
// serialised among themselves by applyMu, taken first, which also guards the
// engine's record of the table.
type Engine struct {
	// applyMu serialises Flush and Reconcile (the dataplane's Apply and
	// Reconcile are called by one caller at a time), and guards programmed
	// and needFull. It is taken before mu, never after, and released with
	// unlockApply, which wakes the StartPods and StopPods waiting for it.
	applyMu sync.Mutex
	mu      sync.Mutex
	cfg     Config
	log     *slog.Logger
	m       *model
	c       *compiler
	// programmed is what the dataplane holds after the last successful Flush or
	// Reconcile.
	programmed *nft.State
	// needFull forces the next Flush to reconcile (after a failed Apply).
	needFull bool
	// polErrs keeps each policy's compile error, returned again for an
	// identical upsert.
	polErrs map[string]error
	// cnpErrs keeps each ClusterNetworkPolicy's parse error, by name
	// (cnpapi.go).
	cnpErrs                       map[string]error
	nPods, nNamespaces, nPolicies int
	// revivals are the UDP flows RevokeDenied deleted recently, whose
	// reversal its next sweeps delete (revival.go).
	revivals revivalWatch

	// The synchronous pod API's bookkeeping (cnipods.go), under mu.
	// changes numbers the changes of local pods; flushedChanges is the
	// number the last successful Flush or Reconcile carried, lastFlush its
	// result, and synced says that one has succeeded. podSyncs holds each
	// local pod's last change number and what StartPod and StopPod said of
	// its addresses (local pods only: memory per pod matters).
	// batches counts the successful Flushes and Reconciles (FlushResult.Batch).
	changes, flushedChanges, batches uint64
	lastFlush                        FlushResult
	synced                           bool
	podSyncs                         map[string]*podSync
	// applyFreed is closed when applyMu is next released (nil while nobody
	// waits for it): StartPod and StopPod wait on it for their turn.
	applyFreed chan struct{}
}

// New returns an engine with an empty model. The first Flush programs the
// static part of the table (base chain, ingress chain and dispatch maps).
func New(cfg Config) (*Engine, error) {
	m, err := newModel()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{
		cfg:        cfg,
		log:        log,
		m:          m,
		c:          newCompiler(&cfg, m),
		programmed: nft.NewState(),
		// Start with a full reconcile: we know nothing about the table yet.
		needFull: true,
		polErrs:  map[string]error{},
		cnpErrs:  map[string]error{},
	}
	e.c.w.untracked = true
	return e, nil
}

// UpsertNamespace adds or updates a namespace. Only its labels matter.
func (e *Engine) UpsertNamespace(ns *corev1.Namespace) error {
	if ns == nil || ns.Name == "" {
		return errors.New("enforcer: upsert namespace: nil or unnamed namespace")
	}
	rec := namespaceFromAPI(ns)
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.m.namespace(rec.Name)
	if old != nil && labels.Equals(old.Labels, rec.Labels) {
		return nil
	}
	if err := e.m.put(tableNamespaces, rec.Name, rec); err != nil {
		err = fmt.Errorf("enforcer: upsert namespace %s: %w", rec.Name, err)
		e.log.Error("namespace not stored", "namespace", rec.Name, "error", err)
		return err
	}
	if old == nil {
		e.nNamespaces++
	}
	e.c.namespaceChanged(rec.Name, rec.Labels, true)
	e.c.collectGroups()
	return nil
}

// DeleteNamespace removes a namespace (its pods and policies are deleted by
// their own events).
func (e *Engine) DeleteNamespace(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m.namespace(name) == nil {
		return
	}
	e.m.remove(tableNamespaces, name)
	e.nNamespaces--
	e.c.namespaceChanged(name, nil, false)
	e.c.collectGroups()
}

// UpsertPod adds or updates a pod. A malformed pod IP is reported and left out
// (the pod is then not matched by that address: fail closed).
func (e *Engine) UpsertPod(p *corev1.Pod) error {
	if p == nil || p.Name == "" || p.Namespace == "" {
		return errors.New("enforcer: upsert pod: nil pod or missing name/namespace")
	}
	return e.UpsertParsedPod(NewPod(p))
}

// UpsertParsedPod adds or updates a pod parsed by NewPod, as UpsertPod does.
// The engine keeps p itself (it is immutable): a caller that holds its pods
// anyway shares them with the engine instead of both holding a copy.
//
// A local pod's addresses are those StartPod announced while its upserts
// carry none, and leave out those StopPod released (cnipods.go); the engine
// then keeps a copy of p with them.
func (e *Engine) UpsertParsedPod(p *Pod) error {
	if err := checkParsedPod(p); err != nil {
		return fmt.Errorf("enforcer: upsert pod: %w", err)
	}
	perr := p.Err()
	if perr != nil {
		perr = fmt.Errorf("enforcer: upsert pod: %w", perr)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.upsertPod(&p.rec, perr)
	return perr
}

// checkParsedPod refuses a pod that NewPod did not make from a named pod.
func checkParsedPod(p *Pod) error {
	if p == nil || p.rec.ID == "" || p.rec.nsLen == 0 || p.Name() == "" {
		return errors.New("nil pod or missing name/namespace (use NewPod)")
	}
	return nil
}

// upsertPod stores pod raw as its caller gives it (the caller holds mu),
// logging perr, its malformed fields, once per version (an identical upsert
// changes nothing and logs nothing).
func (e *Engine) upsertPod(raw *podRecord, perr error) {
	old := e.m.pod(raw.ID)
	rec := e.storedPod(raw)
	if samePod(old, rec) {
		return
	}
	if perr != nil {
		e.log.Warn("pod has invalid fields", "pod", rec.ID, "error", perr)
	}
	e.storePod(old, rec)
}

// storePod puts rec in the place of old (nil: none) in the model and the
// compiler, and numbers the change. The caller holds mu.
func (e *Engine) storePod(old, rec *podRecord) {
	n := e.m.putPod(old, rec)
	if old == nil {
		e.nPods++
	}
	e.c.podChanged(n, old, rec)
	e.c.collectGroups()
	e.podStored(old, rec)
}

// DeletePod removes a pod; a missing pod is not an error. It forgets what
// StartPod and StopPod said of the pod.
func (e *Engine) DeletePod(namespace, name string) {
	id := namespace + "/" + name
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.m.pod(id)
	if old == nil {
		return
	}
	n := e.m.removePod(old)
	e.nPods--
	e.c.podChanged(n, old, nil)
	e.c.collectGroups()
	e.podStored(old, nil)
}

// UpsertNetworkPolicy adds or updates a policy. Invalid parts are returned as an
// error and compiled to fail closed: an invalid podSelector isolates every pod of
// the namespace and allows nothing; an invalid peer or port matches nothing.
func (e *Engine) UpsertNetworkPolicy(np *networkingv1.NetworkPolicy) error {
	if np == nil || np.Name == "" || np.Namespace == "" {
		return errors.New("enforcer: upsert networkpolicy: nil policy or missing name/namespace")
	}
	rec := &policyRecord{ID: np.Namespace + "/" + np.Name, Namespace: np.Namespace, Name: np.Name, Spec: *np.Spec.DeepCopy()}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.m.policy(rec.ID)
	rec.Audit, rec.Enforcement = auditAnnotated(np.Annotations), np.Annotations[EnforcementAnnotation]
	if old != nil && old.Enforcement == rec.Enforcement && equality.Semantic.DeepEqual(old.Spec, rec.Spec) {
		return e.polErrs[rec.ID]
	}
	if err := e.m.put(tablePolicies, rec.ID, rec); err != nil {
		err = fmt.Errorf("enforcer: upsert networkpolicy %s: %w", rec.ID, err)
		e.log.Error("network policy not stored", "policy", rec.ID, "error", err)
		return err
	}
	if old == nil {
		e.nPolicies++
	}
	warnEnforcement(e.log, np.Annotations, KindNetworkPolicy, rec.ID)
	pol, err := parsePolicy(rec)
	if err != nil {
		err = fmt.Errorf("enforcer: %w", err)
		e.log.Error("invalid network policy compiled to fail closed", "policy", rec.ID, "error", err)
		e.polErrs[rec.ID] = err
	} else {
		delete(e.polErrs, rec.ID)
	}
	e.c.removePolicy(rec.ID)
	e.c.addPolicy(pol)
	e.c.collectGroups()
	return err
}

// DeleteNetworkPolicy removes a policy; a missing policy is not an error.
func (e *Engine) DeleteNetworkPolicy(namespace, name string) {
	id := namespace + "/" + name
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m.policy(id) == nil {
		return
	}
	e.m.remove(tablePolicies, id)
	e.nPolicies--
	delete(e.polErrs, id)
	e.c.removePolicy(id)
	e.c.collectGroups()
}

// Desired returns a deep copy of the full desired state.
func (e *Engine) Desired() *nft.State {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.c.settle()
	return e.c.w.withPending(e.c.w.desired.Clone())
}

// Stats counts the model and the desired state.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.c.settle()
	s := Stats{
		Pods:       e.nPods,
		LocalPods:  e.c.m.local.len(),
		Namespaces: e.nNamespaces,
		Policies:   e.nPolicies,
		Sets:       len(e.c.w.desired.Sets),
		Chains:     len(e.c.w.desired.Chains),
	}
	for _, set := range e.c.w.desired.Sets {
		s.Elements += set.Elements.Len()
	}
	s.Elements += e.c.w.pendingCount()
	return s
}

// Decide answers from the model alone whether a new connection is allowed and
// which policies decide it. It is the reference the compiled ruleset is tested
// against. Only pod addresses are known: an address that belongs to no active pod
// (an external host, a node, a hostNetwork pod) is not subject to policy.
func (e *Engine) Decide(f Flow) Decision {
	e.mu.Lock()
	defer e.mu.Unlock()
	return decide(e.m, f, e.cfg.Audit)
}

// PodIPs returns the addresses of a pod as the engine knows them.
func (e *Engine) PodIPs(namespace, name string) ([]netip.Addr, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.m.pod(namespace + "/" + name)
	if p == nil {
		return nil, false
	}
	return slices.Clone(p.IPs), true
}

// PodByIP returns the active pod that has address a (of any node), for
// naming the ends of a logged connection. While several live pods claim
// the address (IP reuse) it returns the one of lowest "ns/name".
func (e *Engine) PodByIP(a netip.Addr) (namespace, name string, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pods := claimantsAt(e.m, a)
	if len(pods) == 0 {
		return "", "", false
	}
	return pods[0].Namespace(), pods[0].Name(), true
}

// CounterInfo says what each named counter of the node's program counts
// now (Config.Counters; none when off), sorted by name. A counter keeps its
// name while it counts the same thing: a NetworkPolicy direction's chain
// while the policy's namespace has a pod here, a pod's default deny while
// NetworkPolicies isolate it (Policies follows them), a
// ClusterNetworkPolicy rule while a class chain of this node holds it with
// that action (a policy whose subjects have no pod here has none).
func (e *Engine) CounterInfo() []CounterInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.c.settle()
	return e.c.counters.list()
}
