package enforcer

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
)

// ClusterNetworkPolicy (CNP) in the model: the record as written and its
// parsed form, read by the reference evaluator (cnpdecide.go) and the
// compiler (tiers.go, TIERS.md); Engine.UpsertClusterNetworkPolicy and
// DeleteClusterNetworkPolicy (cnpapi.go) feed them.

// cnpRecord is a CNP as written (ID = its name) with its parsed form.
type cnpRecord struct {
	ID   string
	Spec v1beta1.ClusterNetworkPolicySpec
	// Audit: annotated for audit mode; Enforcement is the annotation's
	// value as written (EnforcementAnnotation).
	Audit       bool
	Enforcement string
	parsed      *cnpParsed
}

// cnpTier is the tier a CNP sits in; an unknown tier is evaluated as Admin,
// degraded (see cnpParsed.degraded).
type cnpTier uint8

const (
	tierAdmin cnpTier = iota
	tierBaseline
)

func (t cnpTier) String() string {
	if t == tierBaseline {
		return "baseline"
	}
	return "admin"
}

// cnpParsed is a CNP parsed once: selectors, CIDRs and ports.
type cnpParsed struct {
	tier     cnpTier
	priority int32
	// subject selects pods by namespace labels and (pods subject) pod
	// labels; podSel is nil for a namespaces subject.
	subjectNS, subjectPod labels.Selector
	// degraded: the tier or the subject could not be read. The policy then
	// applies to every pod in the Admin tier and can only deny: its Accept
	// rules match nothing and its Pass rules deny, since whom it would pass
	// (or where to) is unknown.
	degraded bool
	rules    [2][]cnpRule // by Direction
}

// cnpRule is one rule, parsed. A rule that cannot be parsed (broken) fails
// closed as the API requires: an Accept matches nothing, a Deny or Pass
// denies every connection of its direction.
type cnpRule struct {
	index  int
	name   string
	action v1beta1.ClusterNetworkPolicyRuleAction
	broken bool
	peers  []cnpPeer
	ports  []cnpPort // nil: every protocol and port
}

// cnpPeer matches pods (ns and, for a pods peer, pod selectors) or, for
// egress, addresses in networks or of nodes (experimental: the addresses of
// the Node records whose labels nodes selects, nodes.go).
type cnpPeer struct {
	ns, pod  labels.Selector // ns nil: a networks or nodes peer
	nodes    labels.Selector // non-nil: a nodes peer
	networks []netip.Prefix
}

// cnpPort matches one protocol and a destination port interval, or
// (experimental) a named container port of the pod at the destination
// address, whatever its protocol (named set, proto 0).
type cnpPort struct {
	proto  uint8
	lo, hi uint16
	named  string
}

// parseCNP parses a CNP; the error describes every part that fails closed.
// experimental accepts the experimental channel's nodes peers and named
// ports; without it they fail closed like any unsupported part.
func parseCNP(spec *v1beta1.ClusterNetworkPolicySpec, experimental bool) (*cnpParsed, error) {
	var errs []error
	p := &cnpParsed{priority: spec.Priority}
	switch spec.Tier {
	case v1beta1.AdminTier:
	case v1beta1.BaselineTier:
		p.tier = tierBaseline
	default:
		p.degraded = true
		errs = append(errs, fmt.Errorf("unknown tier %q (evaluated in the Admin tier, denying only)", spec.Tier))
	}
	ns, pod, err := parseNamespacedSelector(spec.Subject.Namespaces, spec.Subject.Pods)
	if err != nil {
		p.degraded = true
		ns, pod = labels.Everything(), nil
		errs = append(errs, fmt.Errorf("subject: %w (the policy applies to every pod, denying only)", err))
	}
	p.subjectNS, p.subjectPod = ns, pod
	for i, r := range spec.Ingress {
		peers := make([]v1beta1.ClusterNetworkPolicyEgressPeer, len(r.From))
		for j, f := range r.From {
			peers[j] = v1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods}
		}
		rule, err := parseCNPRule(i, r.Name, r.Action, peers, r.Protocols, experimental)
		if err != nil {
			errs = append(errs, fmt.Errorf("ingress rule %d: %w", i, err))
		}
		p.rules[Ingress] = append(p.rules[Ingress], rule)
	}
	for i, r := range spec.Egress {
		rule, err := parseCNPRule(i, r.Name, r.Action, r.To, r.Protocols, experimental)
		if err != nil {
			errs = append(errs, fmt.Errorf("egress rule %d: %w", i, err))
		}
		p.rules[Egress] = append(p.rules[Egress], rule)
	}
	return p, errors.Join(errs...)
}

// parseNamespacedSelector parses a subject or peer that has exactly one of a
// namespaces selector and a pods one; pod is nil for a namespaces selector.
func parseNamespacedSelector(namespaces *metav1.LabelSelector, pods *v1beta1.NamespacedPod) (ns, pod labels.Selector, err error) {
	switch {
	case namespaces != nil && pods != nil:
		return nil, nil, errors.New("both namespaces and pods are set")
	case namespaces != nil:
		ns, err = metav1.LabelSelectorAsSelector(namespaces)
		if err != nil {
			return nil, nil, fmt.Errorf("namespaces: %w", err)
		}
		return ns, nil, nil
	case pods != nil:
		ns, err = metav1.LabelSelectorAsSelector(&pods.NamespaceSelector)
		if err != nil {
			return nil, nil, fmt.Errorf("pods.namespaceSelector: %w", err)
		}
		pod, err = metav1.LabelSelectorAsSelector(&pods.PodSelector)
		if err != nil {
			return nil, nil, fmt.Errorf("pods.podSelector: %w", err)
		}
		return ns, pod, nil
	}
	return nil, nil, errors.New("neither namespaces nor pods is set (a field this version does not know?)")
}

// parseCNPRule parses one rule (ingress peers are given as egress peers,
// which have the same fields and more). Any invalid or unsupported part
// breaks the whole rule: the API's fail-closed meaning is per rule.
func parseCNPRule(i int, name string, action v1beta1.ClusterNetworkPolicyRuleAction, peers []v1beta1.ClusterNetworkPolicyEgressPeer, protos []v1beta1.ClusterNetworkPolicyProtocol, experimental bool) (cnpRule, error) {
	r := cnpRule{index: i, name: name, action: action}
	var errs []error
	switch action {
	case v1beta1.ClusterNetworkPolicyRuleActionAccept, v1beta1.ClusterNetworkPolicyRuleActionDeny, v1beta1.ClusterNetworkPolicyRuleActionPass:
	default:
		errs = append(errs, fmt.Errorf("unknown action %q", action))
	}
	if len(peers) == 0 {
		errs = append(errs, errors.New("no peers (at least one is required)"))
	}
	for j := range peers {
		peer, err := parseCNPPeer(&peers[j], experimental)
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %d: %w", j, err))
		}
		r.peers = append(r.peers, peer)
	}
	for j := range protos {
		port, err := parseCNPProtocol(&protos[j], experimental)
		if err != nil {
			errs = append(errs, fmt.Errorf("protocol %d: %w", j, err))
		}
		r.ports = append(r.ports, port)
	}
	if err := namedPortsNeedPods(r.peers, r.ports); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err != nil {
		r.broken = true
		r.peers, r.ports = nil, nil
		if action == v1beta1.ClusterNetworkPolicyRuleActionAccept {
			err = fmt.Errorf("%w (the Accept rule matches nothing)", err)
		} else {
			err = fmt.Errorf("%w (the rule denies every connection of its direction)", err)
		}
	}
	return r, err
}

func parseCNPPeer(p *v1beta1.ClusterNetworkPolicyEgressPeer, experimental bool) (cnpPeer, error) {
	set := 0
	for _, on := range []bool{p.Namespaces != nil, p.Pods != nil, p.Nodes != nil, len(p.Networks) > 0, len(p.DomainNames) > 0} {
		if on {
			set++
		}
	}
	switch {
	case set != 1:
		return cnpPeer{}, fmt.Errorf("%d peer kinds set, exactly one is required (a field this version does not know?)", set)
	case p.Nodes != nil && !experimental:
		return cnpPeer{}, errors.New("nodes peers are not supported with the experimental channel off")
	case p.Nodes != nil:
		sel, err := metav1.LabelSelectorAsSelector(p.Nodes)
		if err != nil {
			return cnpPeer{}, fmt.Errorf("nodes: %w", err)
		}
		return cnpPeer{nodes: sel}, nil
	case len(p.DomainNames) > 0:
		return cnpPeer{}, errors.New("domainNames peers are not supported")
	case len(p.Networks) > 0:
		var out cnpPeer
		for _, c := range p.Networks {
			pfx, err := netip.ParsePrefix(strings.TrimSpace(string(c)))
			if err != nil || pfx.Addr().Zone() != "" || pfx.Addr().Is4In6() {
				return cnpPeer{}, fmt.Errorf("network %q is not a CIDR", c)
			}
			out.networks = append(out.networks, pfx.Masked())
		}
		return out, nil
	}
	ns, pod, err := parseNamespacedSelector(p.Namespaces, p.Pods)
	return cnpPeer{ns: ns, pod: pod}, err
}

func parseCNPProtocol(p *v1beta1.ClusterNetworkPolicyProtocol, experimental bool) (cnpPort, error) {
	var (
		proto uint8
		dport *v1beta1.Port
		set   int
	)
	if p.TCP != nil {
		proto, dport, set = nft.ProtoTCP, p.TCP.DestinationPort, set+1
	}
	if p.UDP != nil {
		proto, dport, set = nft.ProtoUDP, p.UDP.DestinationPort, set+1
	}
	if p.SCTP != nil {
		proto, dport, set = nft.ProtoSCTP, p.SCTP.DestinationPort, set+1
	}
	if p.DestinationNamedPort != "" {
		if !experimental {
			return cnpPort{}, fmt.Errorf("destinationNamedPort %q: named ports are not supported with the experimental channel off", p.DestinationNamedPort)
		}
		if set != 0 {
			return cnpPort{}, fmt.Errorf("destinationNamedPort %q and %d protocols set, exactly one is required", p.DestinationNamedPort, set)
		}
		return cnpPort{named: p.DestinationNamedPort}, nil
	}
	if set != 1 {
		return cnpPort{}, fmt.Errorf("%d protocols set, exactly one is required (a field this version does not know?)", set)
	}
	out := cnpPort{proto: proto, lo: 0, hi: 65535}
	switch {
	case dport == nil:
	case dport.Range != nil && dport.Number != 0:
		return cnpPort{}, errors.New("destinationPort has both number and range")
	case dport.Range != nil:
		s, e := dport.Range.Start, dport.Range.End
		if s < 1 || e > 65535 || s >= e {
			return cnpPort{}, fmt.Errorf("destinationPort range %d-%d is invalid (1 <= start < end <= 65535)", s, e)
		}
		out.lo, out.hi = uint16(s), uint16(e)
	default:
		if dport.Number < 1 || dport.Number > 65535 {
			return cnpPort{}, fmt.Errorf("destinationPort %d is out of range", dport.Number)
		}
		out.lo, out.hi = uint16(dport.Number), uint16(dport.Number)
	}
	return out, nil
}

// namedPortsNeedPods fails a rule that has a named port and a networks or
// nodes peer: the API forbids it (a name resolves on a pod), and a rule that
// breaks it fails closed rather than matching only some of its peers.
func namedPortsNeedPods(peers []cnpPeer, ports []cnpPort) error {
	if !slices.ContainsFunc(ports, func(p cnpPort) bool { return p.named != "" }) {
		return nil
	}
	if slices.ContainsFunc(peers, func(p cnpPeer) bool { return p.ns == nil }) {
		return errors.New("destinationNamedPort with a networks or nodes peer (a named port resolves only on pods)")
	}
	return nil
}
