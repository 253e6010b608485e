package enforcer_test

// IP plan of the enforcer tests (only the test ranges 198.18.0.0/15 and
// 2001:db8::/32 are used):
//
//	198.18.0.0/24,  2001:db8:0::/64   node addresses (hostNetwork pods)
//	198.18.1.0/24,  2001:db8:1::/64   pods on node-a
//	198.18.2.0/24,  2001:db8:2::/64   pods on node-b
//	198.19.0.0/16,  2001:db8:ff::/48  hosts outside the cluster (ipBlock peers)
//	198.18.128.0/17, 2001:db8:100::/40 generated pods of the fuzz, random and benchmark tests

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// --- object builders with tweaks ---

func mkNamespace(name string, kv ...string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labelMap(kv...)}}
}

func labelMap(kv ...string) map[string]string {
	if len(kv) == 0 {
		return nil
	}
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

type podTweak func(*corev1.Pod)

// mkPod builds a running pod on node-a; tweaks change it.
func mkPod(ns, name string, tweaks ...podTweak) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "main"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, t := range tweaks {
		t(p)
	}
	return p
}

func podLabels(kv ...string) podTweak { return func(p *corev1.Pod) { p.Labels = labelMap(kv...) } }
func onNode(n string) podTweak        { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func podIPs(ips ...string) podTweak {
	return func(p *corev1.Pod) {
		p.Status.PodIPs = nil
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		if len(ips) > 0 {
			p.Status.PodIP = ips[0]
		}
	}
}
func hostNet() podTweak                 { return func(p *corev1.Pod) { p.Spec.HostNetwork = true } }
func phase(ph corev1.PodPhase) podTweak { return func(p *corev1.Pod) { p.Status.Phase = ph } }
func containerPort(name string, proto corev1.Protocol, port int32) podTweak {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: name, Protocol: proto, ContainerPort: port})
	}
}

// initPort adds an init container with a port; restartable makes it a sidecar.
func initPort(name string, port int32, restartable bool) podTweak {
	return func(p *corev1.Pod) {
		c := corev1.Container{Name: "init-" + name, Ports: []corev1.ContainerPort{{Name: name, ContainerPort: port}}}
		if restartable {
			always := corev1.ContainerRestartPolicyAlways
			c.RestartPolicy = &always
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
}

type polTweak func(*networkingv1.NetworkPolicy)

// mkPolicy builds a policy selecting every pod of ns with no rules.
func mkPolicy(ns, name string, tweaks ...polTweak) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, t := range tweaks {
		t(np)
	}
	return np
}

func selecting(sel metav1.LabelSelector) polTweak {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PodSelector = sel }
}
func types(ts ...networkingv1.PolicyType) polTweak {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PolicyTypes = ts }
}
func ingress(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) polTweak {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
	}
}
func egress(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) polTweak {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
	}
}

func sel(kv ...string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchLabels: labelMap(kv...)}
}
func expr(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func peers(ps ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return ps }
func podPeer(s metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &s}
}
func nsPeer(s metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &s}
}
func nsPodPeer(ns, pod metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &ns, PodSelector: &pod}
}
func ipBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func port(proto corev1.Protocol, p int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(p)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}
func tcp(p int32) networkingv1.NetworkPolicyPort { return port(corev1.ProtocolTCP, p) }
func portRange(proto corev1.Protocol, from, to int32) networkingv1.NetworkPolicyPort {
	np := port(proto, from)
	np.EndPort = &to
	return np
}
func namedPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}
func protoOnly(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}

// --- engines and checks ---

// cluster is one model programmed into one engine per node, each with its Fake.
type cluster struct {
	t testing.TB
	// cfg is of every engine, but its node and dataplane, and PodCIDRs,
	// which are the first node's alone (config).
	cfg     enforcer.Config
	engines map[string]*enforcer.Engine
	fakes   map[string]*nft.Fake
	nodes   []string
}

var testNodes = []string{"node-a", "node-b"}

func newCluster(t testing.TB, nodes ...string) *cluster {
	t.Helper()
	return newClusterWith(t, enforcer.Config{}, nodes...)
}

// newClusterWith is newCluster with the engines configured as cfg (its
// node, dataplane and logger set for each; cfg.PodCIDRs for the first node
// only: see config).
func newClusterWith(t testing.TB, cfg enforcer.Config, nodes ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, cfg: cfg, engines: map[string]*enforcer.Engine{}, fakes: map[string]*nft.Fake{}, nodes: nodes}
	for _, n := range nodes {
		f := nft.NewFake(nft.DefaultTable)
		ecfg := c.config(n)
		ecfg.Dataplane = f
		e, err := enforcer.New(ecfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		c.engines[n], c.fakes[n] = e, f
	}
	return c
}

// config is the configuration of node n's engine, without a dataplane.
// The pod CIDRs of first-packet isolation (cfg.PodCIDRs) are the first
// node's: a node's pod CIDRs are its own, the generated worlds place pods
// on any node whatever their address, and with one node isolating, its
// Decide answers for the cluster (an address in its CIDRs that a pod of
// another node claims is unknown there, and dropped: fail closed).
func (c *cluster) config(n string) enforcer.Config {
	cfg := c.cfg
	cfg.NodeName, cfg.Logger = n, quietLogger
	if n != c.nodes[0] {
		cfg.PodCIDRs = nil
	}
	return cfg
}

// setPodCIDRs changes the first node's pod CIDRs (Engine.SetPodCIDRs) and
// the configuration fresh builds are compared with.
func (c *cluster) setPodCIDRs(cidrs []netip.Prefix) {
	c.t.Helper()
	if err := c.engines[c.nodes[0]].SetPodCIDRs(cidrs); err != nil {
		c.t.Fatal(err)
	}
	c.cfg.PodCIDRs = cidrs
}

func (c *cluster) each(fn func(*enforcer.Engine) error) error {
	var first error
	for _, n := range c.nodes {
		if err := fn(c.engines[n]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (c *cluster) flush() {
	c.t.Helper()
	for _, n := range c.nodes {
		if _, err := c.engines[n].Flush(context.Background()); err != nil {
			c.t.Fatalf("flush %s: %v", n, err)
		}
	}
}

// endpoint resolves "ns/pod" (IPv4), "ns/pod@6" (IPv6) or a literal address.
func (c *cluster) endpoint(s string) netip.Addr {
	c.t.Helper()
	if a, err := netip.ParseAddr(s); err == nil {
		return a
	}
	fam6 := false
	if n := len(s); n > 2 && s[n-2:] == "@6" {
		fam6, s = true, s[:n-2]
	}
	var ns, name string
	for i := range s {
		if s[i] == '/' {
			ns, name = s[:i], s[i+1:]
		}
	}
	ips, ok := c.engines[c.nodes[0]].PodIPs(ns, name)
	if !ok {
		c.t.Fatalf("no pod %s", s)
	}
	for _, a := range ips {
		if a.Is6() == fam6 {
			return a
		}
	}
	c.t.Fatalf("pod %s has no address of that family (%v)", s, ips)
	return netip.Addr{}
}

// checkFlow holds the expected verdict against Decide (on every engine) and
// against the compiled rulesets: a packet crosses the forward hook of the
// source's node and of the destination's node, so the cluster verdict is the
// conjunction of the traces on all nodes (a node with neither pod passes it).
func (c *cluster) checkFlow(src, dst string, proto corev1.Protocol, port uint16, want bool) {
	c.t.Helper()
	f := enforcer.Flow{Src: c.endpoint(src), Dst: c.endpoint(dst), Protocol: proto, Port: port}
	desc := fmt.Sprintf("%s -> %s %s/%d", src, dst, proto, port)
	for _, n := range c.nodes {
		if d := c.engines[n].Decide(f); d.Allowed != want {
			c.t.Errorf("%s: Decide on %s = %v (%s), want %v", desc, n, d.Allowed, d.Reason, want)
		}
	}
	traced := true
	var paths []string
	for _, n := range c.nodes {
		ok, path := trace(c.fakes[n], f)
		traced = traced && ok
		paths = append(paths, fmt.Sprintf("%s: %v %s", n, ok, path))
	}
	if traced != want {
		c.t.Errorf("%s: traced %v, want %v\n%v", desc, traced, want, paths)
	}
}

// quietLogger keeps the expected fail-closed errors out of the test output.
var quietLogger = slog.New(slog.DiscardHandler)
