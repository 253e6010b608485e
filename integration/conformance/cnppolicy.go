package conformance

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Builders for ClusterNetworkPolicy v1beta1 (sigs.k8s.io/network-policy-api),
// the counterpart of policy.go: cases read like the upstream manifests.

// The rule actions, short for the cases.
const (
	Accept = v1beta1.ClusterNetworkPolicyRuleActionAccept
	Deny   = v1beta1.ClusterNetworkPolicyRuleActionDeny
	Pass   = v1beta1.ClusterNetworkPolicyRuleActionPass
)

// CNPOption tweaks a ClusterNetworkPolicy under construction.
type CNPOption func(*v1beta1.ClusterNetworkPolicy)

// NewCNP returns the ClusterNetworkPolicy name of tier and priority for
// subject, tweaked by opts.
func NewCNP(name string, tier v1beta1.Tier, priority int32, subject v1beta1.ClusterNetworkPolicySubject, opts ...CNPOption) *v1beta1.ClusterNetworkPolicy {
	p := &v1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec = v1beta1.ClusterNetworkPolicySpec{Tier: tier, Priority: priority, Subject: subject}
	for _, o := range opts {
		o(p)
	}
	return p
}

// SubjectNamespaces selects every pod of the selected namespaces.
func SubjectNamespaces(namespaces *metav1.LabelSelector) v1beta1.ClusterNetworkPolicySubject {
	return v1beta1.ClusterNetworkPolicySubject{Namespaces: namespaces}
}

// SubjectPods selects the selected pods of the selected namespaces.
func SubjectPods(namespaces, pods *metav1.LabelSelector) v1beta1.ClusterNetworkPolicySubject {
	return v1beta1.ClusterNetworkPolicySubject{Pods: namespacedPod(namespaces, pods)}
}

func namespacedPod(namespaces, pods *metav1.LabelSelector) *v1beta1.NamespacedPod {
	return &v1beta1.NamespacedPod{NamespaceSelector: *namespaces, PodSelector: *pods}
}

// CNPPeer is a peer of either direction; Networks and Nodes (experimental
// channel) only in egress rules.
type CNPPeer struct {
	Namespaces *metav1.LabelSelector
	Pods       *v1beta1.NamespacedPod
	Networks   []v1beta1.CIDR
	Nodes      *metav1.LabelSelector
}

// NsCNPPeer selects every pod of the selected namespaces.
func NsCNPPeer(namespaces *metav1.LabelSelector) CNPPeer { return CNPPeer{Namespaces: namespaces} }

// PodsCNPPeer selects the selected pods of the selected namespaces.
func PodsCNPPeer(namespaces, pods *metav1.LabelSelector) CNPPeer {
	return CNPPeer{Pods: namespacedPod(namespaces, pods)}
}

// NetsCNPPeer is an egress peer of CIDRs.
func NetsCNPPeer(cidrs ...netip.Prefix) CNPPeer {
	p := CNPPeer{}
	for _, c := range cidrs {
		p.Networks = append(p.Networks, v1beta1.CIDR(c.String()))
	}
	return p
}

// NodesCNPPeer is an egress peer of the addresses of the selected Nodes
// (experimental channel).
func NodesCNPPeer(nodes *metav1.LabelSelector) CNPPeer { return CNPPeer{Nodes: nodes} }

// CNPIngress appends ingress rules (in order: the first match decides).
func CNPIngress(rules ...v1beta1.ClusterNetworkPolicyIngressRule) CNPOption {
	return func(p *v1beta1.ClusterNetworkPolicy) { p.Spec.Ingress = append(p.Spec.Ingress, rules...) }
}

// CNPEgress appends egress rules.
func CNPEgress(rules ...v1beta1.ClusterNetworkPolicyEgressRule) CNPOption {
	return func(p *v1beta1.ClusterNetworkPolicy) { p.Spec.Egress = append(p.Spec.Egress, rules...) }
}

// CNPIn is an ingress rule; no protocols means every port of every protocol.
func CNPIn(name string, action v1beta1.ClusterNetworkPolicyRuleAction, from []CNPPeer, protocols ...v1beta1.ClusterNetworkPolicyProtocol) v1beta1.ClusterNetworkPolicyIngressRule {
	r := v1beta1.ClusterNetworkPolicyIngressRule{Name: name, Action: action, Protocols: protocols}
	for _, p := range from {
		r.From = append(r.From, v1beta1.ClusterNetworkPolicyIngressPeer{Namespaces: p.Namespaces, Pods: p.Pods})
	}
	return r
}

// CNPOut is an egress rule.
func CNPOut(name string, action v1beta1.ClusterNetworkPolicyRuleAction, to []CNPPeer, protocols ...v1beta1.ClusterNetworkPolicyProtocol) v1beta1.ClusterNetworkPolicyEgressRule {
	r := v1beta1.ClusterNetworkPolicyEgressRule{Name: name, Action: action, Protocols: protocols}
	for _, p := range to {
		r.To = append(r.To, v1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: p.Namespaces, Pods: p.Pods, Networks: p.Networks, Nodes: p.Nodes})
	}
	return r
}

// CNPPeers lists peers.
func CNPPeers(p ...CNPPeer) []CNPPeer { return p }

// CNPPort is a protocol with one destination port.
func CNPPort(proto corev1.Protocol, port int32) v1beta1.ClusterNetworkPolicyProtocol {
	return cnpProtocol(proto, &v1beta1.Port{Number: port})
}

// CNPPortRange is a protocol with the destination ports start..end.
func CNPPortRange(proto corev1.Protocol, start, end int32) v1beta1.ClusterNetworkPolicyProtocol {
	return cnpProtocol(proto, &v1beta1.Port{Range: &v1beta1.PortRange{Start: start, End: end}})
}

// CNPNamedPort is the destination port of that name, whatever its protocol
// (experimental channel).
func CNPNamedPort(name string) v1beta1.ClusterNetworkPolicyProtocol {
	return v1beta1.ClusterNetworkPolicyProtocol{DestinationNamedPort: name}
}

func cnpProtocol(proto corev1.Protocol, port *v1beta1.Port) v1beta1.ClusterNetworkPolicyProtocol {
	switch proto {
	case corev1.ProtocolUDP:
		return v1beta1.ClusterNetworkPolicyProtocol{UDP: &v1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: port}}
	case corev1.ProtocolSCTP:
		return v1beta1.ClusterNetworkPolicyProtocol{SCTP: &v1beta1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: port}}
	}
	return v1beta1.ClusterNetworkPolicyProtocol{TCP: &v1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}}
}
