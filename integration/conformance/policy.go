package conformance

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// PolicyOption tweaks a policy under construction.
type PolicyOption func(*networkingv1.NetworkPolicy)

// NewPolicy returns a policy named name that selects target, tweaked by opts.
// The namespace is set by the action that creates it.
func NewPolicy(name string, target metav1.LabelSelector, opts ...PolicyOption) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.PodSelector = target
	for _, o := range opts {
		o(p)
	}
	return p
}

// Ingress adds ingress rules; the first use also declares the Ingress policy
// type, so Ingress() with no rules isolates without allowing anything (upstream's
// SetSpecIngressRules).
func Ingress(rules ...networkingv1.NetworkPolicyIngressRule) PolicyOption {
	return func(p *networkingv1.NetworkPolicy) {
		if p.Spec.Ingress == nil {
			p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
			p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
		p.Spec.Ingress = append(p.Spec.Ingress, rules...)
	}
}

// Egress is Ingress for egress rules.
func Egress(rules ...networkingv1.NetworkPolicyEgressRule) PolicyOption {
	return func(p *networkingv1.NetworkPolicy) {
		if p.Spec.Egress == nil {
			p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
			p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
		p.Spec.Egress = append(p.Spec.Egress, rules...)
	}
}

// PolicyTypes sets spec.policyTypes explicitly.
func PolicyTypes(types ...networkingv1.PolicyType) PolicyOption {
	return func(p *networkingv1.NetworkPolicy) { p.Spec.PolicyTypes = types }
}

// In is an ingress rule; no peers means from anywhere, no ports all ports.
func In(from []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: from, Ports: ports}
}

// Out is an egress rule; no peers means to anywhere, no ports all ports.
func Out(to []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: to, Ports: ports}
}

// Peers lists peers (reads better than a slice literal in the cases).
func Peers(p ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return p }

// Labels is a matchLabels selector from key/value pairs; no pairs is the empty
// selector (all pods, or all namespaces).
func Labels(kv ...string) metav1.LabelSelector {
	if len(kv)%2 != 0 {
		panic("Labels: odd number of arguments")
	}
	s := metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

// Sel is Labels as a pointer, for peers.
func Sel(kv ...string) *metav1.LabelSelector {
	s := Labels(kv...)
	return &s
}

// Expr is a selector with one matchExpressions requirement.
func Expr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// PodPeer selects pods of the policy's namespace.
func PodPeer(pods *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: pods}
}

// NsPeer selects all pods of the selected namespaces.
func NsPeer(namespaces *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: namespaces}
}

// NsPodPeer selects the selected pods of the selected namespaces.
func NsPodPeer(namespaces, pods *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: namespaces, PodSelector: pods}
}

// CIDRPeer is an ipBlock peer.
func CIDRPeer(cidr netip.Prefix, except ...netip.Prefix) networkingv1.NetworkPolicyPeer {
	b := &networkingv1.IPBlock{CIDR: cidr.String()}
	for _, e := range except {
		b.Except = append(b.Except, e.String())
	}
	return networkingv1.NetworkPolicyPeer{IPBlock: b}
}

// HostPrefix is the /32 or /128 of an address.
func HostPrefix(ip netip.Addr) netip.Prefix { return netip.PrefixFrom(ip, ip.BitLen()) }

// LargePrefix is upstream's makeLargeCIDRForIP: the /4 that holds ip.
func LargePrefix(ip netip.Addr) netip.Prefix { return netip.PrefixFrom(ip, 4).Masked() }

// Proto returns a pointer to a protocol; nil in a port means TCP by default.
func Proto(p corev1.Protocol) *corev1.Protocol { return &p }

// PortNum is a numbered port (proto may be nil).
func PortNum(proto *corev1.Protocol, port int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(port)
	return networkingv1.NetworkPolicyPort{Protocol: proto, Port: &v}
}

// PortNamed is a named port (proto may be nil).
func PortNamed(proto *corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: proto, Port: &v}
}

// PortRange is port..end.
func PortRange(proto *corev1.Protocol, port, end int32) networkingv1.NetworkPolicyPort {
	p := PortNum(proto, port)
	p.EndPort = &end
	return p
}

// AnyPort is a port entry with only a protocol.
func AnyPort(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: Proto(proto)}
}
