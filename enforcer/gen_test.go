package enforcer_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
)

// choices is where the generators take their decisions from: a PRNG for the
// random tests, the fuzzer's bytes for the fuzz test.
type choices interface{ intn(n int) int }

type rngChoices struct{ r *rand.Rand }

func (c rngChoices) intn(n int) int { return c.r.IntN(n) }

// byteChoices reads decisions from fuzz input; when it runs out every decision
// is 0, so every input is a valid (if dull) scenario.
type byteChoices struct {
	b []byte
	i int
}

func (c *byteChoices) intn(n int) int {
	if c.i >= len(c.b) || n <= 1 {
		return 0
	}
	v := int(c.b[c.i])
	c.i++
	return v % n
}

func pick[T any](c choices, xs ...T) T { return xs[c.intn(len(xs))] }

// The generated universe is small on purpose so that selectors overlap a lot:
// 4 namespaces, 12 pod slots, 6 policy slots.
var genNodes = []string{"node-a", "node-b", "node-c"}

const (
	genNamespaces = 4
	genPods       = 12
	genPolicies   = 6
)

// genPodAddrs gives address slot i its addresses: 198.18.128.<i+1> and
// 2001:db8:100::<i+1>. Pod slot i usually takes address slot i; genPod and
// genTwin sometimes give it another pod's, as IP reuse does.
func genPodAddrs(i int) (string, string) {
	return fmt.Sprintf("198.18.128.%d", i+1), fmt.Sprintf("2001:db8:100::%x", i+1)
}

// genPodCIDRs are the first node's pod CIDRs in worlds with first-packet
// isolation: address slots 0-6 of each family are inside, the rest (and
// the grid's unused address) outside; genPodCIDRChoices are what
// TestIncrementalMatchesFreshBuild changes them to (nil: off).
var (
	genPodCIDRs       = []netip.Prefix{netip.MustParsePrefix("198.18.128.0/29"), netip.MustParsePrefix("2001:db8:100::/125")}
	genPodCIDRChoices = [][]netip.Prefix{
		nil,
		genPodCIDRs,
		{netip.MustParsePrefix("198.18.128.0/28")},
		{netip.MustParsePrefix("198.18.128.0/29"), netip.MustParsePrefix("198.18.128.8/30"), netip.MustParsePrefix("2001:db8:100::/125")},
		{netip.MustParsePrefix("2001:db8:100::/120")},
	}
)

func genNamespace(c choices, i int) *corev1.Namespace {
	kv := []string{}
	if v := pick(c, "", "a", "b"); v != "" {
		kv = append(kv, "env", v)
	}
	if c.intn(2) == 0 {
		kv = append(kv, "team", pick(c, "x", "y"))
	}
	return mkNamespace(fmt.Sprintf("ns%d", i), kv...)
}

func genPod(c choices, i int) *corev1.Pod {
	ns := fmt.Sprintf("ns%d", c.intn(genNamespaces))
	addrSlot := i
	if c.intn(4) == 0 {
		addrSlot = c.intn(genPods) // IP reuse: another slot's address
	}
	v4, v6 := genPodAddrs(addrSlot)
	tweaks := []podTweak{onNode(pick(c, genNodes...))}
	kv := []string{}
	if v := pick(c, "", "a", "b", "c"); v != "" {
		kv = append(kv, "app", v)
	}
	if c.intn(2) == 0 {
		kv = append(kv, "tier", pick(c, "fe", "be"))
	}
	tweaks = append(tweaks, podLabels(kv...))
	switch c.intn(8) {
	case 0:
		tweaks = append(tweaks, podIPs(v4))
	case 1:
		tweaks = append(tweaks, podIPs(v6))
	case 2:
		// no address yet
	case 3:
		tweaks = append(tweaks, podIPs(v4, v6), hostNet())
	case 4:
		tweaks = append(tweaks, podIPs(v4, v6), phase(pick(c, corev1.PodSucceeded, corev1.PodFailed)))
	default:
		tweaks = append(tweaks, podIPs(v4, v6))
	}
	switch c.intn(4) {
	case 0:
		tweaks = append(tweaks, containerPort("http", TCP, pick[int32](c, 80, 8080)))
	case 1:
		tweaks = append(tweaks, containerPort("http", TCP, 8080), containerPort("dns", UDP, 53))
	case 2:
		tweaks = append(tweaks, initPort("http", 9090, c.intn(2) == 0))
	}
	return mkPod(ns, fmt.Sprintf("p%d", i), tweaks...)
}

func genSelector(c choices) metav1.LabelSelector {
	switch c.intn(9) {
	case 0, 1:
		return sel()
	case 2:
		return sel("app", pick(c, "a", "b"))
	case 3:
		return expr("app", metav1.LabelSelectorOpIn, "a", "b")
	case 4:
		return expr("app", metav1.LabelSelectorOpNotIn, "c")
	case 5:
		return expr("tier", metav1.LabelSelectorOpExists)
	case 6:
		return expr("tier", metav1.LabelSelectorOpDoesNotExist)
	case 7:
		return sel("app", "a", "tier", "fe")
	}
	return expr("app", metav1.LabelSelectorOpIn) // invalid: In without values
}

func genNSSelector(c choices) metav1.LabelSelector {
	switch c.intn(5) {
	case 0:
		return sel()
	case 1:
		return sel("env", pick(c, "a", "b"))
	case 2:
		return expr("team", metav1.LabelSelectorOpExists)
	case 3:
		return sel("kubernetes.io/metadata.name", fmt.Sprintf("ns%d", c.intn(genNamespaces)))
	}
	return expr("env", metav1.LabelSelectorOpNotIn, "a")
}

func genPeer(c choices) networkingv1.NetworkPolicyPeer {
	switch c.intn(8) {
	case 0, 1:
		return podPeer(genSelector(c))
	case 2:
		return nsPeer(genNSSelector(c))
	case 3:
		return nsPodPeer(genNSSelector(c), genSelector(c))
	case 4:
		return ipBlock("198.18.128.0/28", pick(c, "198.18.128.4/30", "198.18.128.8/31"))
	case 5:
		return ipBlock(pick(c, "2001:db8:100::/120", "198.19.0.0/16", "198.18.128.0/25"))
	case 6:
		return ipBlock("2001:db8:100::/64", "2001:db8:100::/125")
	}
	return ipBlock(pick(c, "198.18.128.0/99", "not-a-cidr")) // invalid
}

func genPort(c choices) networkingv1.NetworkPolicyPort {
	switch c.intn(8) {
	case 0:
		return tcp(80)
	case 1:
		return portRange(TCP, 8000, 8080)
	case 2:
		return protoOnly(UDP)
	case 3:
		return namedPort(TCP, "http")
	case 4:
		return namedPort(UDP, "dns")
	case 5:
		return port(SCTP, 9090)
	case 6:
		return port(UDP, 53)
	}
	return tcp(9090)
}

func genPolicy(c choices, i int) *networkingv1.NetworkPolicy {
	ns := fmt.Sprintf("ns%d", c.intn(genNamespaces))
	tweaks := []polTweak{selecting(genSelector(c))}
	switch c.intn(4) {
	case 1:
		tweaks = append(tweaks, types(networkingv1.PolicyTypeIngress))
	case 2:
		tweaks = append(tweaks, types(networkingv1.PolicyTypeEgress))
	case 3:
		tweaks = append(tweaks, types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
	}
	rule := func() ([]networkingv1.NetworkPolicyPeer, []networkingv1.NetworkPolicyPort) {
		var ps []networkingv1.NetworkPolicyPeer
		for range c.intn(3) {
			ps = append(ps, genPeer(c))
		}
		var pts []networkingv1.NetworkPolicyPort
		for range c.intn(3) {
			pts = append(pts, genPort(c))
		}
		return ps, pts
	}
	for range c.intn(3) {
		ps, pts := rule()
		tweaks = append(tweaks, ingress(ps, pts...))
	}
	for range c.intn(3) {
		ps, pts := rule()
		if c.intn(4) == 0 {
			// An egress rule whose named port resolves on whichever pod holds
			// the destination. Drawn as its own kind: mixed into random peers
			// it is almost never the only rule that allows a flow, so a wrong
			// compilation of it went unnoticed.
			ps = []networkingv1.NetworkPolicyPeer{pick(c, ipBlock("198.18.128.0/24", "198.18.128.8/30"), ipBlock("2001:db8:100::/64"))}
			pts = append(pts, pick(c, namedPort(TCP, "http"), namedPort(UDP, "dns")))
		}
		tweaks = append(tweaks, egress(ps, pts...))
	}
	return mkPolicy(ns, fmt.Sprintf("pol%d", i), tweaks...)
}

// genFlow picks a flow between generated pods and outside addresses.
func genFlow(c choices) (src, dst netip.Addr, proto corev1.Protocol, port uint16) {
	v6 := c.intn(2) == 1 // a packet has one family
	addr := func() netip.Addr {
		i := c.intn(genPods + 2)
		if i >= genPods {
			if v6 {
				return netip.MustParseAddr("2001:db8:ff::5")
			}
			return netip.MustParseAddr(pick(c, "198.19.0.5", "198.18.128.200"))
		}
		v4, v6addr := genPodAddrs(i)
		if v6 {
			return netip.MustParseAddr(v6addr)
		}
		return netip.MustParseAddr(v4)
	}
	src = addr()
	dst = addr()
	return src, dst, pick(c, TCP, TCP, UDP, SCTP), pick[uint16](c, 53, 80, 8080, 8000, 9090, 5432)
}

// namedPortFlows lists flows from every generated pod slot and an outside host
// to every address of every pod of the world, on each port that pod names
// (TCP when the protocol is empty). Random flows rarely land on a named port,
// and named ports are where the readings of the API part (per target, per
// peer pod, per pod at an ipBlock address).
func namedPortFlows(w *world) []enforcer.Flow {
	var out []enforcer.Flow
	for _, name := range sortedNames(w.pods) {
		p := w.pods[name]
		var ports []corev1.ContainerPort
		for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for i := range cs {
				ports = append(ports, cs[i].Ports...)
			}
		}
		for _, ip := range p.Status.PodIPs {
			dst := netip.MustParseAddr(ip.IP)
			srcs := []netip.Addr{netip.MustParseAddr("198.19.0.5")}
			if dst.Is6() {
				srcs[0] = netip.MustParseAddr("2001:db8:ff::5")
			}
			for i := range genPods {
				v4, v6 := genPodAddrs(i)
				if dst.Is6() {
					srcs = append(srcs, netip.MustParseAddr(v6))
				} else {
					srcs = append(srcs, netip.MustParseAddr(v4))
				}
			}
			for _, cp := range ports {
				proto := cp.Protocol
				if proto == "" {
					proto = TCP
				}
				for _, src := range srcs {
					out = append(out, enforcer.Flow{Src: src, Dst: dst, Protocol: proto, Port: uint16(cp.ContainerPort)})
				}
			}
		}
	}
	return out
}

// world is the current model, kept by the tests to rebuild engines from scratch.
type world struct {
	namespaces map[string]*corev1.Namespace
	pods       map[string]*corev1.Pod
	policies   map[string]*networkingv1.NetworkPolicy
	cnps       map[string]*v1beta1.ClusterNetworkPolicy
}

func newWorld() *world {
	return &world{namespaces: map[string]*corev1.Namespace{}, pods: map[string]*corev1.Pod{}, policies: map[string]*networkingv1.NetworkPolicy{},
		cnps: map[string]*v1beta1.ClusterNetworkPolicy{}}
}

// op is one generated change, applied to the world and to engines.
type op struct {
	kind string // "ns", "pod", "pol", "cnp", "-ns", "-pod", "-pol", "-cnp"
	ns   *corev1.Namespace
	pod  *corev1.Pod
	pol  *networkingv1.NetworkPolicy
	cnp  *v1beta1.ClusterNetworkPolicy
	name [2]string
}

// genTwin is pod slot i given the addresses, namespace, labels and ports of
// another live pod of the world, on the same node or another: IP reuse where
// both claimants get the same verdicts (or, on another node, the same ones
// from different chains). Without such a pod it is genPod.
func genTwin(c choices, w *world, i int) *corev1.Pod {
	src := w.pods[fmt.Sprintf("p%d", c.intn(genPods))]
	if src == nil || src.Name == fmt.Sprintf("p%d", i) {
		return genPod(c, i)
	}
	p := src.DeepCopy()
	p.Name = fmt.Sprintf("p%d", i)
	p.Spec.HostNetwork = false
	p.Status.Phase = corev1.PodRunning
	if c.intn(2) == 0 {
		p.Spec.NodeName = pick(c, genNodes...)
	}
	return p
}

func genOp(c choices, w *world) op {
	switch c.intn(13) {
	case 0, 1:
		return op{kind: "ns", ns: genNamespace(c, c.intn(genNamespaces))}
	case 2:
		return op{kind: "-ns", name: [2]string{"", fmt.Sprintf("ns%d", c.intn(genNamespaces))}}
	case 3, 4, 5, 6:
		return op{kind: "pod", pod: genPod(c, c.intn(genPods))}
	case 12:
		return op{kind: "pod", pod: genTwin(c, w, c.intn(genPods))}
	case 7:
		i := c.intn(genPods)
		return op{kind: "-pod", name: [2]string{"", fmt.Sprintf("p%d", i)}}
	case 8, 9, 10:
		return op{kind: "pol", pol: genPolicy(c, c.intn(genPolicies))}
	}
	return op{kind: "-pol", name: [2]string{"", fmt.Sprintf("pol%d", c.intn(genPolicies))}}
}

// apply records the op in the world (pod and policy slots are unique by name
// across namespaces: an upsert of slot i moves it) and returns the engine calls.
func (w *world) apply(o op) []func(e engineAPI) {
	var calls []func(e engineAPI)
	switch o.kind {
	case "ns":
		w.namespaces[o.ns.Name] = o.ns
		calls = append(calls, func(e engineAPI) { _ = e.UpsertNamespace(o.ns) })
	case "-ns":
		delete(w.namespaces, o.name[1])
		calls = append(calls, func(e engineAPI) { e.DeleteNamespace(o.name[1]) })
	case "pod":
		if old := w.pods[o.pod.Name]; old != nil && old.Namespace != o.pod.Namespace {
			calls = append(calls, func(e engineAPI) { e.DeletePod(old.Namespace, old.Name) })
		}
		w.pods[o.pod.Name] = o.pod
		calls = append(calls, func(e engineAPI) { _ = e.UpsertPod(o.pod) })
	case "-pod":
		if old := w.pods[o.name[1]]; old != nil {
			delete(w.pods, o.name[1])
			calls = append(calls, func(e engineAPI) { e.DeletePod(old.Namespace, old.Name) })
		}
	case "pol":
		if old := w.policies[o.pol.Name]; old != nil && old.Namespace != o.pol.Namespace {
			calls = append(calls, func(e engineAPI) { e.DeleteNetworkPolicy(old.Namespace, old.Name) })
		}
		w.policies[o.pol.Name] = o.pol
		calls = append(calls, func(e engineAPI) { _ = e.UpsertNetworkPolicy(o.pol) })
	case "-pol":
		if old := w.policies[o.name[1]]; old != nil {
			delete(w.policies, o.name[1])
			calls = append(calls, func(e engineAPI) { e.DeleteNetworkPolicy(old.Namespace, old.Name) })
		}
	case "cnp":
		w.cnps[o.cnp.Name] = o.cnp
		calls = append(calls, func(e engineAPI) { _ = e.UpsertClusterNetworkPolicy(o.cnp) })
	case "-cnp":
		delete(w.cnps, o.name[1])
		calls = append(calls, func(e engineAPI) { e.DeleteClusterNetworkPolicy(o.name[1]) })
	}
	return calls
}

// load feeds the whole world into an engine (namespaces, then policies,
// then cluster policies, then pods: another order than the incremental one).
func (w *world) load(e engineAPI) {
	for _, k := range sortedNames(w.namespaces) {
		_ = e.UpsertNamespace(w.namespaces[k])
	}
	for _, k := range sortedNames(w.policies) {
		_ = e.UpsertNetworkPolicy(w.policies[k])
	}
	for _, k := range sortedNames(w.cnps) {
		_ = e.UpsertClusterNetworkPolicy(w.cnps[k])
	}
	for _, k := range sortedNames(w.pods) {
		_ = e.UpsertPod(w.pods[k])
	}
}

type engineAPI interface {
	UpsertNamespace(*corev1.Namespace) error
	DeleteNamespace(string)
	UpsertPod(*corev1.Pod) error
	DeletePod(string, string)
	UpsertNetworkPolicy(*networkingv1.NetworkPolicy) error
	DeleteNetworkPolicy(string, string)
	UpsertClusterNetworkPolicy(*v1beta1.ClusterNetworkPolicy) error
	DeleteClusterNetworkPolicy(string)
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
