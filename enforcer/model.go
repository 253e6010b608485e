package enforcer

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nftwarden/nftwarden/nft"
)

// labelNamespaceName is the label the API server puts on every namespace; the
// engine adds it when a caller's object lacks it so that selectors on it work as
// in a real cluster.
const labelNamespaceName = "kubernetes.io/metadata.name"

func namespaceFromAPI(ns *corev1.Namespace) *namespaceRecord {
	l := make(labels.Set, len(ns.Labels)+1)
	for k, v := range ns.Labels {
		l[k] = v
	}
	if _, ok := l[labelNamespaceName]; !ok {
		l[labelNamespaceName] = ns.Name
	}
	return &namespaceRecord{Name: ns.Name, Labels: l}
}

// Pod is a pod as the engine keeps it: parsed once, immutable. NewPod makes
// one; Engine.UpsertParsedPod takes it as it is. A program that holds pods
// anyway (an informer cache) can keep the Pod instead of its own copy, and
// the engine's model then shares it rather than holding a second one.
type Pod struct {
	rec podRecord
	// bad reports malformed fields (nil if none), returned again by
	// UpsertParsedPod: a pointer rather than an error value keeps a Pod in
	// a smaller size class (112 instead of 128 bytes).
	bad *parseError
}

type parseError struct{ err error }

// NewPod parses what policy needs of p (name, namespace, labels, node,
// hostNetwork, phase, IPs, named ports of containers and restartable init
// containers). A malformed IP is left out (the pod is then not reachable by
// that address through policy: fail closed); Err reports it. NewPod(nil) is
// a Pod that UpsertParsedPod refuses.
func NewPod(p *corev1.Pod) *Pod {
	out := &Pod{}
	if p == nil {
		out.bad = &parseError{errors.New("nil pod")}
		return out
	}
	if err := fillPod(&out.rec, p); err != nil {
		out.bad = &parseError{err}
	}
	return out
}

// Err reports the malformed fields NewPod left out (nil if none).
func (p *Pod) Err() error {
	if p.bad == nil {
		return nil
	}
	return p.bad.err
}

// Namespace returns the pod's namespace.
func (p *Pod) Namespace() string { return p.rec.Namespace() }

// Name returns the pod's name.
func (p *Pod) Name() string { return p.rec.Name() }

// Labels returns a new map of the pod's labels.
func (p *Pod) Labels() map[string]string {
	if len(p.rec.Labels) == 0 {
		return nil
	}
	m := make(map[string]string, len(p.rec.Labels))
	for _, l := range p.rec.Labels {
		m[l.Key.Value()] = l.Value.Value()
	}
	return m
}

// Equal reports whether p and q are equal in everything the engine uses.
func (p *Pod) Equal(q *Pod) bool {
	if p == nil || q == nil {
		return p == q
	}
	return samePod(&p.rec, &q.rec)
}

func fillPod(r *podRecord, p *corev1.Pod) error {
	in := getInterner()
	defer in.put()
	*r = podRecord{
		ID:          p.Namespace + "/" + p.Name,
		nsLen:       uint32(len(p.Namespace)),
		Node:        in.make(p.Spec.NodeName),
		HostNetwork: p.Spec.HostNetwork,
		Finished:    p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed,
	}
	r.Labels = makeLabelList(in, p.Labels)
	var errs []error
	raw := make([]string, 0, 2)
	for _, ip := range p.Status.PodIPs {
		raw = append(raw, ip.IP)
	}
	if len(raw) == 0 && p.Status.PodIP != "" {
		raw = append(raw, p.Status.PodIP)
	}
	if len(raw) > 0 {
		r.IPs = make([]netip.Addr, 0, len(raw))
	}
	for _, s := range raw {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			errs = append(errs, fmt.Errorf("pod %s: malformed IP %q ignored", r.ID, s))
			continue
		}
		a = a.Unmap()
		if !slices.Contains(r.IPs, a) {
			r.IPs = append(r.IPs, a)
		}
	}
	slices.SortFunc(r.IPs, func(a, b netip.Addr) int { return a.Compare(b) })
	var ports [8]namedPort // most pods name a few ports: no allocation unless a new list
	r.Ports = sharedPortList(namedPortsOf(in, p, ports[:0]))
	if len(r.IPs) == 0 {
		r.IPs = nil // as if never allocated: every IP was malformed
	}
	return errors.Join(errs...)
}

// namedPortsOf appends the named ports of p's containers and restartable
// init containers to ports, deduplicated and sorted (nil if none).
// Containers are walked by index: they are large structs.
func namedPortsOf(in *interner, p *corev1.Pod, ports []namedPort) []namedPort {
	add := func(c *corev1.Container) {
		for _, cp := range c.Ports {
			if cp.Name == "" || cp.ContainerPort <= 0 || cp.ContainerPort > 65535 {
				continue
			}
			proto, ok := ProtocolNumber(cp.Protocol)
			if !ok {
				continue
			}
			np := namedPort{Name: in.make(cp.Name), Proto: proto, Port: uint16(cp.ContainerPort)}
			if !slices.Contains(ports, np) {
				ports = append(ports, np)
			}
		}
	}
	for i := range p.Spec.InitContainers {
		// Only restartable init containers (sidecars) keep running and serve ports.
		if c := &p.Spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	for i := range p.Spec.Containers {
		add(&p.Spec.Containers[i])
	}
	if len(ports) == 0 {
		return nil
	}
	slices.SortFunc(ports, func(a, b namedPort) int {
		if a.Name != b.Name {
			return strings.Compare(a.Name.Value(), b.Name.Value())
		}
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.Port) - int(b.Port)
	})
	return ports
}

// ProtocolNumber maps a Kubernetes protocol to its IP protocol number (the
// nft.Packet and set-key value); empty is TCP; false for an unknown one.
func ProtocolNumber(p corev1.Protocol) (uint8, bool) {
	switch p {
	case "", corev1.ProtocolTCP:
		return nft.ProtoTCP, true
	case corev1.ProtocolUDP:
		return nft.ProtoUDP, true
	case corev1.ProtocolSCTP:
		return nft.ProtoSCTP, true
	}
	return 0, false
}

// samePod reports whether two records are equal in everything policy uses.
func samePod(a, b *podRecord) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.ID == b.ID && a.Node == b.Node && a.HostNetwork == b.HostNetwork && a.Finished == b.Finished &&
		slices.Equal(a.Labels, b.Labels) && slices.Equal(a.IPs, b.IPs) && slices.Equal(a.Ports.list(), b.Ports.list())
}

// resolve returns the ports of a pod named name with protocol proto.
func (p *podRecord) resolve(name string, proto uint8) []uint16 {
	var out []uint16
	for _, np := range p.Ports.list() {
		if np.Name.Value() == name && np.Proto == proto {
			out = append(out, np.Port)
		}
	}
	return out
}

func (m *model) clusterPolicy(name string) *cnpRecord {
	return byID[*cnpRecord](m, tableClusterPolicies, name)
}

// clusterPolicies returns every ClusterNetworkPolicy, sorted by name.
func (m *model) clusterPolicies() []*cnpRecord {
	return all[*cnpRecord](m, tableClusterPolicies, indexID)
}
