package conformance

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Case is one conformance test: the pods it needs and the steps it runs.
type Case struct {
	// Name is the upstream ginkgo It(...) text for ported cases (prefixed with
	// the suite for the UDP and SCTP suites), "generated/<seed>/<k>" otherwise.
	Name string
	// Pods lists the pods to create as "x/a"; empty means all nine.
	Pods []string
	// Steps builds the steps once the cluster exists: policies refer to real
	// namespace names and ipBlocks to real pod addresses, as upstream builds
	// them after initializing its resources.
	Steps func(e *Env) []Step
}

// Env is what a case sees of the cluster while it builds its steps.
type Env struct {
	*Model
	podIP func(PodRef) netip.Addr
}

// NewEnv returns the environment of a model whose pods have the primary
// addresses podIP returns.
func NewEnv(m *Model, podIP func(PodRef) netip.Addr) *Env { return &Env{Model: m, podIP: podIP} }

// PodIP is the primary address of a pod, the one probes are sent to.
func (e *Env) PodIP(p PodRef) netip.Addr { return e.podIP(p) }

// Reach returns a table over the case's pods with every flow expected allowed,
// upstream's NewReachability(k8s.AllPodStrings(), true).
func (e *Env) Reach() *Reachability { return NewReachability(e.Pods, true) }

// Step applies its actions in order, then runs its probes and its node pokes.
type Step struct {
	Name    string // upstream's ginkgo.By text when there is one
	Actions []Action
	Probes  []Probe
	// NodePokes probe servers that run in a node's own network namespace
	// (upstream's hostNetwork pods), for ClusterNetworkPolicy nodes peers.
	NodePokes []NodePoke
}

// NodePoke is one connection from a pod to the primary-family address of a
// node (0 or 1, Model.Node's numbering), where a server in the node's own
// network namespace listens on NodeServerPorts; Allowed is whether it must
// get through.
type NodePoke struct {
	From     PodRef
	Node     int
	Port     int
	Protocol corev1.Protocol
	Allowed  bool
}

func (p NodePoke) String() string {
	return fmt.Sprintf("%s -> node %d %s/%d", p.From, p.Node, p.Protocol, p.Port)
}

// Probe checks every flow between the case's pods (self excluded) on one
// destination port and protocol, or only the flows its table expects something
// of (NewPokes). A nil Reach means the expected table comes from the reference
// evaluator (generated cases).
type Probe struct {
	Port     int
	Protocol corev1.Protocol
	Reach    *Reachability
}

func (p Probe) String() string { return fmt.Sprintf("%s/%d", p.Protocol, p.Port) }

// ActionKind is what an Action changes.
type ActionKind string

// The actions a step can take; a Cluster implements all of them.
const (
	CreatePolicy       ActionKind = "create-policy"
	UpdatePolicy       ActionKind = "update-policy"
	DeletePolicy       ActionKind = "delete-policy"
	DeleteAllPolicies  ActionKind = "delete-all-policies"  // in the model's namespaces, and every ClusterNetworkPolicy
	SetPodLabels       ActionKind = "set-pod-labels"       // replaces all labels
	SetNamespaceLabels ActionKind = "set-namespace-labels" // replaces all labels but the name label
	// ClusterNetworkPolicy (cluster-scoped, sigs.k8s.io/network-policy-api v1beta1).
	CreateClusterPolicy ActionKind = "create-cluster-policy"
	UpdateClusterPolicy ActionKind = "update-cluster-policy"
	DeleteClusterPolicy ActionKind = "delete-cluster-policy"
)

// Action is one change to the cluster.
type Action struct {
	Kind          ActionKind
	Policy        *networkingv1.NetworkPolicy   // create, update (Namespace set)
	ClusterPolicy *v1beta1.ClusterNetworkPolicy // create, update cluster policy
	Namespace     string                        // delete policy, pod and namespace labels
	Name          string                        // delete policy or cluster policy, pod labels
	Labels        map[string]string
}

func (a Action) String() string {
	switch a.Kind {
	case CreatePolicy, UpdatePolicy:
		return fmt.Sprintf("%s %s/%s", a.Kind, a.Policy.Namespace, a.Policy.Name)
	case DeletePolicy:
		return fmt.Sprintf("%s %s/%s", a.Kind, a.Namespace, a.Name)
	case CreateClusterPolicy, UpdateClusterPolicy:
		return fmt.Sprintf("%s %s", a.Kind, a.ClusterPolicy.Name)
	case DeleteClusterPolicy:
		return fmt.Sprintf("%s %s", a.Kind, a.Name)
	case DeleteAllPolicies:
		return string(a.Kind)
	case SetPodLabels:
		return fmt.Sprintf("%s %s/%s %s", a.Kind, a.Namespace, a.Name, labelString(a.Labels))
	case SetNamespaceLabels:
		return fmt.Sprintf("%s %s %s", a.Kind, a.Namespace, labelString(a.Labels))
	}
	return string(a.Kind)
}

func labelString(l map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// Create returns the action creating policy in namespace ns.
func Create(ns string, policy *networkingv1.NetworkPolicy) Action {
	p := policy.DeepCopy()
	p.Namespace = ns
	return Action{Kind: CreatePolicy, Policy: p}
}

// Update returns the action replacing the spec of policy in namespace ns.
func Update(ns string, policy *networkingv1.NetworkPolicy) Action {
	p := policy.DeepCopy()
	p.Namespace = ns
	return Action{Kind: UpdatePolicy, Policy: p}
}

// Delete returns the action deleting policy ns/name.
func Delete(ns, name string) Action { return Action{Kind: DeletePolicy, Namespace: ns, Name: name} }

// CreateCNP returns the action creating a ClusterNetworkPolicy.
func CreateCNP(policy *v1beta1.ClusterNetworkPolicy) Action {
	return Action{Kind: CreateClusterPolicy, ClusterPolicy: policy.DeepCopy()}
}

// UpdateCNP returns the action replacing the spec of a ClusterNetworkPolicy
// (upstream's PatchClusterNetworkPolicy).
func UpdateCNP(policy *v1beta1.ClusterNetworkPolicy) Action {
	return Action{Kind: UpdateClusterPolicy, ClusterPolicy: policy.DeepCopy()}
}

// DeleteCNP returns the action deleting the ClusterNetworkPolicy name.
func DeleteCNP(name string) Action { return Action{Kind: DeleteClusterPolicy, Name: name} }

// DeleteAll returns upstream's cleanNetworkPolicies (and deletes every
// ClusterNetworkPolicy too).
func DeleteAll() Action { return Action{Kind: DeleteAllPolicies} }

// PodLabels returns the action setting a pod's labels to exactly labels.
func PodLabels(p PodRef, labels map[string]string) Action {
	return Action{Kind: SetPodLabels, Namespace: p.Namespace, Name: p.Name, Labels: maps.Clone(labels)}
}

// AddPodLabels is upstream's AddPodLabels on a pod that still has its default
// labels: the result is the default labels plus add.
func AddPodLabels(p PodRef, add map[string]string) Action {
	l := DefaultPodLabels(p.Name)
	maps.Copy(l, add)
	return PodLabels(p, l)
}

// NamespaceLabels returns the action setting a namespace's labels to exactly
// labels (the name label is kept by every cluster, as the API server does).
func NamespaceLabels(ns string, labels map[string]string) Action {
	return Action{Kind: SetNamespaceLabels, Namespace: ns, Labels: maps.Clone(labels)}
}

// AddNamespaceLabel is upstream's AddNamespaceLabel on a namespace that still
// has its default labels.
func (e *Env) AddNamespaceLabel(ns, key, value string) Action {
	l := e.DefaultNamespaceLabels(ns)
	l[key] = value
	return NamespaceLabels(ns, l)
}
