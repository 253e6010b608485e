package conformance

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// world is the desired cluster of an in-process run: the objects an API server
// would hold. It turns actions into engine upserts and deletes, so the model
// cluster's per-node engines and the oracle see exactly the same objects.
type world struct {
	m        *Model
	ips      map[PodRef][]netip.Addr
	node     func(PodRef) string
	nsLabels map[string]map[string]string
	pods     map[PodRef]map[string]string
	policies map[string]*networkingv1.NetworkPolicy // "ns/name"
	cnps     map[string]*v1beta1.ClusterNetworkPolicy
	nodes    []*corev1.Node // the model's two nodes, for nodes peers
}

func newWorld(m *Model, ips map[PodRef][]netip.Addr, node func(PodRef) string) *world {
	w := &world{
		m: m, ips: ips, node: node,
		nsLabels: map[string]map[string]string{},
		pods:     map[PodRef]map[string]string{},
		policies: map[string]*networkingv1.NetworkPolicy{},
		cnps:     map[string]*v1beta1.ClusterNetworkPolicy{},
	}
	for _, ns := range m.Namespaces() {
		w.nsLabels[ns] = m.DefaultNamespaceLabels(ns)
	}
	for _, p := range m.Pods {
		w.pods[p] = DefaultPodLabels(p.Name)
	}
	for n := range 2 {
		w.nodes = append(w.nodes, KubeNode(NodeName(n), NodeAddrs(n)))
	}
	return w
}

// newEngine is an engine of a model-level run: ClusterNetworkPolicy's
// experimental channel on (nodes peers, named ports), as the packet runs
// of the experimental cases turn it on in the daemons.
func newEngine(node string, dp nft.Dataplane) (*enforcer.Engine, error) {
	return enforcer.New(enforcer.Config{NodeName: node, Dataplane: dp, ClusterNetworkPolicyExperimental: true})
}

func (w *world) pod(p PodRef) *corev1.Pod { return KubePod(p, w.node(p), w.pods[p], w.ips[p]) }

// load feeds the initial objects to an engine.
func (w *world) load(e *enforcer.Engine) error {
	for _, ns := range slices.Sorted(maps.Keys(w.nsLabels)) {
		if err := e.UpsertNamespace(KubeNamespace(ns, w.nsLabels[ns])); err != nil {
			return fmt.Errorf("upsert namespace %s: %w", ns, err)
		}
	}
	for _, n := range w.nodes {
		if err := e.UpsertNode(n.DeepCopy()); err != nil {
			return fmt.Errorf("upsert node %s: %w", n.Name, err)
		}
	}
	for _, p := range w.m.Pods {
		if err := e.UpsertPod(w.pod(p)); err != nil {
			return fmt.Errorf("upsert pod %s: %w", p, err)
		}
	}
	return nil
}

// apply records the action and returns the engine calls that express it.
func (w *world) apply(a Action) ([]func(*enforcer.Engine) error, error) {
	switch a.Kind {
	case CreatePolicy, UpdatePolicy:
		key := a.Policy.Namespace + "/" + a.Policy.Name
		_, exists := w.policies[key]
		if a.Kind == CreatePolicy && exists {
			return nil, fmt.Errorf("%s: policy already exists", a)
		}
		if a.Kind == UpdatePolicy && !exists {
			return nil, fmt.Errorf("%s: no such policy", a)
		}
		p := a.Policy.DeepCopy()
		w.policies[key] = p
		return []func(*enforcer.Engine) error{func(e *enforcer.Engine) error { return e.UpsertNetworkPolicy(p.DeepCopy()) }}, nil
	case DeletePolicy:
		key := a.Namespace + "/" + a.Name
		if _, ok := w.policies[key]; !ok {
			return nil, fmt.Errorf("%s: no such policy", a)
		}
		delete(w.policies, key)
		return []func(*enforcer.Engine) error{func(e *enforcer.Engine) error { e.DeleteNetworkPolicy(a.Namespace, a.Name); return nil }}, nil
	case CreateClusterPolicy, UpdateClusterPolicy:
		_, exists := w.cnps[a.ClusterPolicy.Name]
		if a.Kind == CreateClusterPolicy && exists {
			return nil, fmt.Errorf("%s: cluster policy already exists", a)
		}
		if a.Kind == UpdateClusterPolicy && !exists {
			return nil, fmt.Errorf("%s: no such cluster policy", a)
		}
		p := a.ClusterPolicy.DeepCopy()
		w.cnps[p.Name] = p
		return []func(*enforcer.Engine) error{func(e *enforcer.Engine) error { return e.UpsertClusterNetworkPolicy(p.DeepCopy()) }}, nil
	case DeleteClusterPolicy:
		if _, ok := w.cnps[a.Name]; !ok {
			return nil, fmt.Errorf("%s: no such cluster policy", a)
		}
		delete(w.cnps, a.Name)
		return []func(*enforcer.Engine) error{func(e *enforcer.Engine) error { e.DeleteClusterNetworkPolicy(a.Name); return nil }}, nil
	case DeleteAllPolicies:
		var fns []func(*enforcer.Engine) error
		for _, key := range slices.Sorted(maps.Keys(w.policies)) {
			p := w.policies[key]
			delete(w.policies, key)
			fns = append(fns, func(e *enforcer.Engine) error { e.DeleteNetworkPolicy(p.Namespace, p.Name); return nil })
		}
		for _, name := range slices.Sorted(maps.Keys(w.cnps)) {
			delete(w.cnps, name)
			fns = append(fns, func(e *enforcer.Engine) error { e.DeleteClusterNetworkPolicy(name); return nil })
		}
		return fns, nil
	case SetPodLabels:
		ref := PodRef{Namespace: a.Namespace, Name: a.Name}
		if _, ok := w.pods[ref]; !ok {
			return nil, fmt.Errorf("%s: no such pod", a)
		}
		w.pods[ref] = maps.Clone(a.Labels)
		pod := w.pod(ref)
		return []func(*enforcer.Engine) error{func(e *enforcer.Engine) error { return e.UpsertPod(pod.DeepCopy()) }}, nil
	case SetNamespaceLabels:
		if _, ok := w.nsLabels[a.Namespace]; !ok {
			return nil, fmt.Errorf("%s: no such namespace", a)
		}
		ns := KubeNamespace(a.Namespace, a.Labels)
		w.nsLabels[a.Namespace] = ns.Labels
		return []func(*enforcer.Engine) error{func(e *enforcer.Engine) error { return e.UpsertNamespace(ns.DeepCopy()) }}, nil
	}
	return nil, fmt.Errorf("unknown action kind %q", a.Kind)
}

// Oracle is a model-only engine (no dataplane) that follows a case's actions
// and answers with the reference evaluator. It provides the expected tables
// of generated cases, for any Cluster.
type Oracle struct {
	w   *world
	eng *enforcer.Engine
	ip  func(PodRef) netip.Addr
}

// NewOracle builds the oracle for model m whose pods have addresses ips (all
// families, primary first) and run on nodes given by node.
func NewOracle(m *Model, ips map[PodRef][]netip.Addr, node func(PodRef) string) (*Oracle, error) {
	eng, err := newEngine("conformance-oracle", nil)
	if err != nil {
		return nil, fmt.Errorf("oracle engine: %w", err)
	}
	w := newWorld(m, ips, node)
	if err := w.load(eng); err != nil {
		return nil, fmt.Errorf("oracle: %w", err)
	}
	return &Oracle{w: w, eng: eng, ip: func(p PodRef) netip.Addr { return ips[p][0] }}, nil
}

// Apply follows one action.
func (o *Oracle) Apply(a Action) error {
	fns, err := o.w.apply(a)
	if err != nil {
		return fmt.Errorf("oracle: %w", err)
	}
	for _, fn := range fns {
		if err := fn(o.eng); err != nil {
			return fmt.Errorf("oracle: %s: %w", a, err)
		}
	}
	return nil
}

// Expect returns the evaluator's table for one probe over pods. The error
// lists the flows where the evaluator disagrees with the naive reading of the
// API (semantics.go): a semantic bug of the engine, or of that reading.
func (o *Oracle) Expect(pods []PodRef, port int, proto corev1.Protocol) (*Reachability, error) {
	r := NewReachability(pods, true)
	var errs []error
	for _, from := range pods {
		for _, to := range pods {
			if from == to {
				continue
			}
			d := o.eng.Decide(enforcer.Flow{Src: o.ip(from), Dst: o.ip(to), Protocol: proto, Port: uint16(port)})
			r.Expect(from, to, d.Allowed)
			naive, err := o.w.naiveAllowed(from, to, port, proto)
			if err != nil {
				errs = append(errs, fmt.Errorf("naive evaluation of %s -> %s: %w", from, to, err))
			} else if naive != d.Allowed {
				errs = append(errs, fmt.Errorf("%s -> %s %s/%d: evaluator says %v (%s), the API reading says %v",
					from, to, proto, port, d.Allowed, d.Reason, naive))
			}
		}
	}
	return r, errors.Join(errs...)
}
