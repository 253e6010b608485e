package enforcer_test

// IP plan: see helpers_test.go (generated pods: 198.18.128.0/24,
// 2001:db8:100::/64; outside hosts 198.19.0.0/16, 2001:db8:ff::/48). The
// networks peers of generated ClusterNetworkPolicies cover pod addresses,
// parts of the generated range, outside hosts and whole families.

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
)

// genCNPs is the number of ClusterNetworkPolicy slots (cnp0 ...): few, so
// that subjects overlap and priorities tie.
const genCNPs = 5

// rare is a decision taken once in 32: the invalid parts that must fail
// closed (one per policy or rule at most), frequent enough to be drawn and
// rare enough not to deny every flow of a world.
func rare(c choices) bool { return c.intn(32) == 0 }

// genCNP is CNP slot i: a tier, a priority (ties are common), a subject and
// up to three rules per direction, built from the NetworkPolicy generator's
// selectors. Rarely the tier or the subject is invalid (the policy is
// evaluated in the Admin tier over every pod, denying only).
func genCNP(c choices, i int) *v1beta1.ClusterNetworkPolicy {
	ns := genNSSelector(c)
	spec := v1beta1.ClusterNetworkPolicySpec{
		Tier:     pick(c, v1beta1.AdminTier, v1beta1.BaselineTier),
		Priority: pick[int32](c, 0, 1, 1, 2, 1000),
		Subject:  v1beta1.ClusterNetworkPolicySubject{Namespaces: &ns},
	}
	if c.intn(2) == 0 {
		spec.Subject = v1beta1.ClusterNetworkPolicySubject{Pods: &v1beta1.NamespacedPod{NamespaceSelector: ns, PodSelector: genCNPPodSelector(c)}}
	}
	if rare(c) {
		switch c.intn(3) {
		case 0:
			spec.Tier = "Middle"
		case 1:
			spec.Subject = v1beta1.ClusterNetworkPolicySubject{}
		default:
			spec.Subject.Namespaces, spec.Subject.Pods = &ns, &v1beta1.NamespacedPod{PodSelector: genCNPPodSelector(c)}
		}
	}
	for range c.intn(4) {
		action, peers, protos := genCNPRule(c, false)
		r := v1beta1.ClusterNetworkPolicyIngressRule{Name: pick(c, "", "in"), Action: action, Protocols: protos}
		for _, p := range peers {
			r.From = append(r.From, v1beta1.ClusterNetworkPolicyIngressPeer{Namespaces: p.Namespaces, Pods: p.Pods})
		}
		spec.Ingress = append(spec.Ingress, r)
	}
	for range c.intn(4) {
		action, peers, protos := genCNPRule(c, true)
		spec.Egress = append(spec.Egress, v1beta1.ClusterNetworkPolicyEgressRule{Name: pick(c, "", "out"), Action: action, To: peers, Protocols: protos})
	}
	return &v1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp%d", i)}, Spec: spec}
}

// genCNPRule draws a rule's action, one or two peers and up to two protocol
// matches (none: every protocol and port). Rarely one part is invalid or
// unsupported: an unknown action, no peers, a peer of no kind, of two kinds,
// nodes, domainNames or a bad CIDR, a named port, a bad port or range, two
// protocols in one match.
func genCNPRule(c choices, egress bool) (v1beta1.ClusterNetworkPolicyRuleAction, []v1beta1.ClusterNetworkPolicyEgressPeer, []v1beta1.ClusterNetworkPolicyProtocol) {
	action := pick(c, v1beta1.ClusterNetworkPolicyRuleActionAccept, v1beta1.ClusterNetworkPolicyRuleActionDeny, v1beta1.ClusterNetworkPolicyRuleActionPass)
	peers := []v1beta1.ClusterNetworkPolicyEgressPeer{genCNPPeer(c, egress)}
	if c.intn(3) == 0 {
		peers = append(peers, genCNPPeer(c, egress))
	}
	var protos []v1beta1.ClusterNetworkPolicyProtocol
	for range c.intn(3) {
		protos = append(protos, genCNPProtocol(c))
	}
	if !rare(c) {
		return action, peers, protos
	}
	ns := genNSSelector(c)
	bad := v1beta1.ClusterNetworkPolicyEgressPeer{}
	switch c.intn(12) {
	case 0:
		return "Allow", peers, protos
	case 1:
		return action, nil, protos
	case 2:
	case 3:
		bad.Namespaces, bad.Pods = &ns, &v1beta1.NamespacedPod{PodSelector: genCNPPodSelector(c)}
	case 4:
		bad.Nodes = &ns
	case 5:
		bad.DomainNames = []v1beta1.DomainName{"*.example.com"}
	case 6:
		bad.Networks = []v1beta1.CIDR{pick[v1beta1.CIDR](c, "198.18.128.0/33", "::ffff:198.18.128.0/120", "fe80::1%eth0/128")}
	case 7:
		return action, peers, append(protos, v1beta1.ClusterNetworkPolicyProtocol{DestinationNamedPort: "http"})
	case 8:
		return action, peers, append(protos, cnpProtocol(TCP, &v1beta1.Port{Range: &v1beta1.PortRange{Start: 8080, End: 8000}}))
	case 9:
		return action, peers, append(protos, cnpProtocol(UDP, &v1beta1.Port{}))
	case 10:
		p := cnpProtocol(TCP, &v1beta1.Port{Number: 80})
		p.UDP = cnpProtocol(UDP, nil).UDP
		return action, peers, append(protos, p)
	default:
		return action, peers, append(protos, cnpProtocol(TCP, &v1beta1.Port{Number: 80, Range: &v1beta1.PortRange{Start: 1, End: 2}}))
	}
	return action, append(peers, bad), protos
}

// genCNPPodSelector is genSelector, drawn again while invalid unless rare:
// an invalid pod selector breaks a CNP's whole rule or subject, where a
// NetworkPolicy's peer only matches nothing, so genSelector's rate of them
// would have most generated CNPs deny all.
func genCNPPodSelector(c choices) metav1.LabelSelector {
	for {
		s := genSelector(c)
		if _, err := metav1.LabelSelectorAsSelector(&s); err == nil || rare(c) {
			return s
		}
	}
}

// genCNPNetworks are the networks peers draw from: single pods, blocks of
// generated pods (with addresses no pod has), outside hosts, whole families.
var genCNPNetworks = []v1beta1.CIDR{
	"198.18.128.0/28", "198.18.128.4/30", "198.18.128.6/32", "198.18.128.0/24", "198.19.0.0/16", "0.0.0.0/0",
	"2001:db8:100::/120", "2001:db8:100::8/125", "2001:db8:100::3/128", "2001:db8:100::/64", "2001:db8:ff::/48", "::/0",
}

// genCNPPeer is a namespaces or pods peer, or (egress) a networks peer of
// one or two networks.
func genCNPPeer(c choices, egress bool) v1beta1.ClusterNetworkPolicyEgressPeer {
	ns := genNSSelector(c)
	switch c.intn(5) {
	case 0, 1:
		return v1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: &ns}
	case 2, 3:
		return v1beta1.ClusterNetworkPolicyEgressPeer{Pods: &v1beta1.NamespacedPod{NamespaceSelector: ns, PodSelector: genCNPPodSelector(c)}}
	}
	if !egress {
		return v1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: &ns}
	}
	nets := []v1beta1.CIDR{pick(c, genCNPNetworks...)}
	if c.intn(3) == 0 {
		nets = append(nets, pick(c, genCNPNetworks...))
	}
	return v1beta1.ClusterNetworkPolicyEgressPeer{Networks: nets}
}

// genCNPProtocol is a port, a range or a whole protocol.
func genCNPProtocol(c choices) v1beta1.ClusterNetworkPolicyProtocol {
	switch c.intn(7) {
	case 0:
		return cnpProtocol(TCP, &v1beta1.Port{Number: 80})
	case 1:
		return cnpProtocol(TCP, &v1beta1.Port{Range: &v1beta1.PortRange{Start: 8000, End: 8080}})
	case 2:
		return cnpProtocol(TCP, nil)
	case 3:
		return cnpProtocol(UDP, &v1beta1.Port{Number: 53})
	case 4:
		return cnpProtocol(UDP, &v1beta1.Port{Range: &v1beta1.PortRange{Start: 50, End: 60}})
	case 5:
		return cnpProtocol(SCTP, &v1beta1.Port{Number: 9090})
	}
	return cnpProtocol(SCTP, &v1beta1.Port{Range: &v1beta1.PortRange{Start: 9000, End: 9100}})
}

// cnpProtocol is a protocol match with a destination port (nil: every port).
func cnpProtocol(proto corev1.Protocol, port *v1beta1.Port) v1beta1.ClusterNetworkPolicyProtocol {
	switch proto {
	case UDP:
		return v1beta1.ClusterNetworkPolicyProtocol{UDP: &v1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: port}}
	case SCTP:
		return v1beta1.ClusterNetworkPolicyProtocol{SCTP: &v1beta1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: port}}
	}
	return v1beta1.ClusterNetworkPolicyProtocol{TCP: &v1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}}
}

// genMixedOp is genOp with ClusterNetworkPolicy changes mixed in: one op in
// three upserts or deletes a CNP slot.
func genMixedOp(c choices, w *world) op {
	if c.intn(3) != 0 {
		return genOp(c, w)
	}
	i := c.intn(genCNPs)
	if c.intn(4) == 0 {
		return op{kind: "-cnp", name: [2]string{"", fmt.Sprintf("cnp%d", i)}}
	}
	return op{kind: "cnp", cnp: genCNP(c, i)}
}

// gridService is a protocol and destination port of the flow grid.
type gridService struct {
	proto corev1.Protocol
	port  uint16
}

// gridServices are the ports the generators name (CNP ports and ranges,
// NetworkPolicy ports and the pods' named ports), the edges of the ranges
// and a port nothing names, for each protocol.
var gridServices = []gridService{
	{TCP, 80}, {TCP, 81}, {TCP, 7999}, {TCP, 8000}, {TCP, 8080}, {TCP, 8081}, {TCP, 9090},
	{UDP, 53}, {UDP, 61}, {UDP, 80},
	{SCTP, 9090}, {SCTP, 9101}, {SCTP, 80},
}

// gridAddrs are the ends of the grid's flows: every generated pod address
// slot and, per family, an outside host and an unused address of the
// generated range (inside the networks that cover pods).
func gridAddrs() [2][]netip.Addr {
	out := [2][]netip.Addr{
		{netip.MustParseAddr("198.19.0.5"), netip.MustParseAddr("198.18.128.200")},
		{netip.MustParseAddr("2001:db8:ff::5"), netip.MustParseAddr("2001:db8:100::c8")},
	}
	for i := range genPods {
		v4, v6 := genPodAddrs(i)
		out[0] = append(out[0], netip.MustParseAddr(v4))
		out[1] = append(out[1], netip.MustParseAddr(v6))
	}
	return out
}

// gridFlows lists the flows of the grid: each ordered pair of distinct
// addresses of one family, on n of the grid services (all of them for n =
// len(gridServices); fewer rotate through them from pair to pair, starting
// at service first).
func gridFlows(n, first int) []enforcer.Flow {
	var out []enforcer.Flow
	k := first
	for _, fam := range gridAddrs() {
		for _, src := range fam {
			for _, dst := range fam {
				if src == dst {
					continue
				}
				for j := range n {
					s := gridServices[(k+j)%len(gridServices)]
					out = append(out, enforcer.Flow{Src: src, Dst: dst, Protocol: s.proto, Port: s.port})
				}
				k += n
			}
		}
	}
	return out
}
