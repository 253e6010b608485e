package conformance

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The upstream model: three namespaces with three pods each, every pod serving
// ports 80 and 81 on TCP, UDP and SCTP.
var (
	ModelNamespaces = []string{"x", "y", "z"}
	ModelPods       = []string{"a", "b", "c"}
	ModelPorts      = []int32{80, 81}
	ModelProtocols  = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
)

// HouseNamespace is a fourth namespace, "w", for the ported network-policy-api
// cases (upstream_cnp.go), whose topology has four namespaces ("houses"). It
// exists in every cluster; only cases that list its pods (w/a, w/b, w/c) have
// pods there, so the NetworkPolicy cases and the generator never see it.
const HouseNamespace = "w"

// allNamespaces are the model names of every namespace of a Model, in order.
var allNamespaces = append(slices.Clone(ModelNamespaces), HouseNamespace)

// HousePorts are the ports the network-policy-api conformance servers listen
// on (conformance/base/manifests.yaml: TCP 80 and 8080, UDP 53 and 5353, SCTP
// 9003 and 9005). Every model pod serves them besides ModelPorts, so that the
// ported ClusterNetworkPolicy cases probe the ports upstream probes and their
// port numbers and ranges need no translation.
var HousePorts = map[corev1.Protocol][]int32{
	corev1.ProtocolTCP:  {80, 8080},
	corev1.ProtocolUDP:  {53, 5353},
	corev1.ProtocolSCTP: {9003, 9005},
}

// HouseNamedPorts are the names upstream's server containers give two of
// HousePorts (conformance/base/manifests.yaml: "web" is TCP 80, "dns" UDP 53),
// which the experimental named-port cases use. Every model pod declares them
// besides its serve-<port>-<proto> names (a second name for the same port, as
// upstream's pods have one name per port).
var HouseNamedPorts = []corev1.ContainerPort{
	{Name: "web", ContainerPort: 80, Protocol: corev1.ProtocolTCP},
	{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
}

// Label keys the model uses. The namespace-name label is set by the API server
// on real clusters; model-only clusters set it themselves (KubeNamespace).
const (
	PodLabelKey       = "pod"
	NamespaceLabelKey = corev1.LabelMetadataName // kubernetes.io/metadata.name
	// NsLabelKey carries the model name (x, y, z) of a namespace, independent
	// of any suffix, so generated selectors stay valid across runs.
	NsLabelKey = "ns"
)

// PodRef names a pod by its real namespace and name; it prints as "ns/name"
// like upstream's PodString.
type PodRef struct {
	Namespace string
	Name      string
}

func (p PodRef) String() string { return p.Namespace + "/" + p.Name }

// PortName is the container port name of a model server, e.g. "serve-80-tcp".
func PortName(port int32, proto corev1.Protocol) string {
	return fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto)))
}

// Model is one run's concrete topology: the real names of x, y, z (and w) and
// the pods present (upstream creates only the pods a test lists).
type Model struct {
	X, Y, Z, W string
	Pods       []PodRef
}

// NewModel maps the model namespaces to real names by appending suffix
// ("x-<suffix>"; no suffix keeps "x") and creates the pods listed as "x/a";
// no pods means the nine of x, y and z.
func NewModel(suffix string, pods []string) (*Model, error) {
	name := func(base string) string {
		if suffix == "" {
			return base
		}
		return base + "-" + suffix
	}
	m := &Model{X: name("x"), Y: name("y"), Z: name("z"), W: name(HouseNamespace)}
	if len(pods) == 0 {
		for _, ns := range ModelNamespaces {
			for _, p := range ModelPods {
				pods = append(pods, ns+"/"+p)
			}
		}
	}
	for _, s := range pods {
		ns, pod, ok := strings.Cut(s, "/")
		if !ok || !slices.Contains(allNamespaces, ns) || !slices.Contains(ModelPods, pod) {
			return nil, fmt.Errorf("model pod %q: want <x|y|z|w>/<a|b|c>", s)
		}
		ref := PodRef{Namespace: m.Real(ns), Name: pod}
		if slices.Contains(m.Pods, ref) {
			return nil, fmt.Errorf("model pod %q listed twice", s)
		}
		m.Pods = append(m.Pods, ref)
	}
	// Keep upstream's order (namespace, then pod) whatever order the case lists.
	slices.SortFunc(m.Pods, func(a, b PodRef) int { return m.ordinal(a) - m.ordinal(b) })
	return m, nil
}

// Namespaces returns the real names of x, y, z and w: every namespace of a
// cluster, whether or not the case has pods in it.
func (m *Model) Namespaces() []string { return []string{m.X, m.Y, m.Z, m.W} }

// Real maps a model namespace name (x, y, z, w) to its real name.
func (m *Model) Real(model string) string {
	switch model {
	case "x":
		return m.X
	case "y":
		return m.Y
	case "z":
		return m.Z
	case HouseNamespace:
		return m.W
	}
	panic(fmt.Sprintf("unknown model namespace %q", model))
}

// ModelName maps a real namespace name back to x, y, z or w.
func (m *Model) ModelName(real string) string {
	for i, ns := range m.Namespaces() {
		if ns == real {
			return allNamespaces[i]
		}
	}
	panic(fmt.Sprintf("namespace %q is not part of the model", real))
}

// Pod returns the reference of model pod ns/name ("x", "a").
func (m *Model) Pod(ns, name string) PodRef { return PodRef{Namespace: m.Real(ns), Name: name} }

// ordinal is a pod's position among all model pods (x/a = 0 ... z/c = 8,
// w/a = 9 ... w/c = 11).
func (m *Model) ordinal(p PodRef) int {
	return slices.Index(allNamespaces, m.ModelName(p.Namespace))*len(ModelPods) + slices.Index(ModelPods, p.Name)
}

// Node is the index (0 or 1) of the node a pod runs on. Pods alternate between
// two nodes by their position among the model pods, so that in every
// upstream topology about half of the flows cross nodes and every namespace has
// pods on both nodes.
func (m *Model) Node(p PodRef) int { return m.ordinal(p) % 2 }

// Ordinal is exported for clusters that derive addresses from it.
func (m *Model) Ordinal(p PodRef) int { return m.ordinal(p) }

// DefaultPodLabels are a model pod's labels at creation.
func DefaultPodLabels(name string) map[string]string { return map[string]string{PodLabelKey: name} }

// DefaultNamespaceLabels are a model namespace's labels at creation, including
// the name label the API server would add.
func (m *Model) DefaultNamespaceLabels(real string) map[string]string {
	return map[string]string{NamespaceLabelKey: real, NsLabelKey: m.ModelName(real)}
}

// KubeNamespace builds the namespace object with the given labels (the
// kubernetes.io/metadata.name label is always forced, as the API server does).
func KubeNamespace(name string, labels map[string]string) *corev1.Namespace {
	l := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		l[k] = v
	}
	l[NamespaceLabelKey] = name
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

// ContainerPorts are the named ports of a model server (serve-<port>-<proto>):
// ModelPorts and HousePorts on each protocol, then HouseNamedPorts.
func ContainerPorts() []corev1.ContainerPort {
	var ports []corev1.ContainerPort
	for _, proto := range ModelProtocols {
		for _, port := range ModelPorts {
			ports = append(ports, corev1.ContainerPort{Name: PortName(port, proto), ContainerPort: port, Protocol: proto})
		}
		for _, port := range HousePorts[proto] {
			if !slices.Contains(ModelPorts, port) {
				ports = append(ports, corev1.ContainerPort{Name: PortName(port, proto), ContainerPort: port, Protocol: proto})
			}
		}
	}
	return append(ports, HouseNamedPorts...)
}

// NodeAddrs are the addresses of node n (0 or 1) in every cluster of this
// package, IPv4 then IPv6: 198.18.0.<n+1> and 2001:db8::<n+1>, the underlay
// addresses of the packet harness (package cluster).
func NodeAddrs(n int) []netip.Addr {
	return []netip.Addr{
		netip.AddrFrom4([4]byte{198, 18, 0, byte(n + 1)}),
		netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(n + 1)}),
	}
}

// nodeAddrLike is node n's address of addr's family.
func nodeAddrLike(n int, addr netip.Addr) netip.Addr {
	if addr.Is4() {
		return NodeAddrs(n)[0]
	}
	return NodeAddrs(n)[1]
}

// KubeNode builds a Node with the labels a kubelet sets (hostname, and
// kubernetes.io/os: linux, which upstream's node-peer tests select) and its
// addresses as InternalIPs.
func KubeNode(name string, addrs []netip.Addr) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux"}}}
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a.String()})
	}
	return n
}

// KubePod builds a running pod on node with the given addresses (first is the
// primary) and labels.
func KubePod(ref PodRef, node string, labels map[string]string, ips []netip.Addr) *corev1.Pod {
	l := make(map[string]string, len(labels))
	for k, v := range labels {
		l[k] = v
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ref.Namespace, Labels: l},
		Spec: corev1.PodSpec{
			NodeName: node,
			Containers: []corev1.Container{{
				Name:    "server",
				Image:   "registry.k8s.io/e2e-test-images/agnhost",
				Command: []string{"/agnhost", "porter"},
				Ports:   ContainerPorts(),
			}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0].String()
	}
	return p
}
