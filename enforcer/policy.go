package enforcer

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftwarden/nftwarden/nft"
)

// policy is the compiled form of one NetworkPolicy. It is rebuilt on every change
// of the policy; selectors are parsed once here.
type policy struct {
	id, ns string
	rec    *policyRecord // as written: Decide reads it
	// podSel selects the targets in ns. An invalid selector selects every pod of
	// the namespace and the policy allows nothing (fail closed).
	podSel labels.Selector
	dirs   [2]*policyDir // nil when the policyTypes exclude the direction
}

// policyDir is one direction of a policy. It is active (its chain and sets exist
// in the desired state) while the policy's namespace has a local pod.
type policyDir struct {
	pol   *policy
	dir   Direction
	chain string
	// jump is the rule of a selected pod's chain that jumps to chain, made
	// once: a pod that thousands of policies select has its chain listed
	// again on each change of them.
	jump    nft.Rule
	rules   []*policyRule
	targets map[string]*podRecord
	active  bool
}

// policyRule is one ingress or egress rule.
type policyRule struct {
	// anyPeer: from/to absent or empty, so every address matches.
	anyPeer bool
	peers   []peerSpec
	// anyPort: ports absent or empty.
	anyPort bool
	// numeric is the interval set of protocol . port ranges (nil: no numeric port).
	numeric *sharedSpec
	// named lists the named ports. A named port resolves on the pod that holds
	// the destination address: for ingress a target of the policy, for egress
	// a peer pod of the rule, or any pod at all when the rule has no peers or
	// the peer is an ipBlock (as Cyclonus and Calico read the API).
	named []portName
	// id is "<ns>/<policy>/<direction>/<index>", for the sets' comments.
	id string
	// namedKey names the sets of (pod IP, proto, port) over the policy's
	// targets (ingress) or the rule's selector peers (egress); allKey the
	// egress sets over every pod, matched by rules without peers and by
	// ipBlock peers, for the families in allFams. Empty: the rule needs no
	// such set. Every-pod sets hold the same elements for every rule with the
	// same named ports, so allKey is made of those ports (and families) alone
	// and rules share the sets.
	namedKey, allKey string
	allFams          familySet
	namedSet, allSet *namedSet // while active
}

// usesPeerChain reports whether the rule's selector peers are matched by a
// jump to their group's peer chain (numeric or no ports) rather than by
// lookups of their sets in the rule (named ports, per family).
func (r *policyRule) usesPeerChain() bool { return r.anyPort || r.numeric != nil }

type portName struct {
	Name  string
	Proto uint8
}

// peerSpec is one valid peer: a pod/namespace selector group or an ipBlock.
type peerSpec struct {
	group *groupSpec
	cidr  *sharedSpec
	fam   Family // ipBlock family
}

// groupSpec identifies a peer selector pair; equal keys share one group.
type groupSpec struct {
	key    string
	local  string          // namespace of a namespace-local podSelector peer
	nsSel  labels.Selector // nil for namespace-local peers
	podSel labels.Selector
	desc   string
}

// sharedSpec is the content of a set that depends only on the policy text (an
// ipBlock or a port list); equal contents share one set.
type sharedSpec struct {
	name  string
	set   nft.Set // definition
	elems []nft.Element
	// inline holds, for a port list of at most maxInlinePorts entries, the
	// comparisons that match each entry (`meta l4proto tcp th dport 80`):
	// rules use them instead of the set, which is then never created.
	inline [][]nft.Expr
}

// maxInlinePorts is the longest port list matched by comparisons in rules
// (one rule per entry) rather than by a set lookup. Most policies name one to
// a few ports; each set costs the kernel a walk over the table's sets when it
// is created and when a rule names it, while a comparison is as cheap as it
// gets per packet.
const maxInlinePorts = 4

// parsePolicy compiles a policy. Errors describe the invalid parts; the returned
// policy is always usable and fails closed on them.
func parsePolicy(r *policyRecord) (*policy, error) {
	var errs []error
	p := &policy{id: r.ID, ns: r.Namespace, rec: r}
	sel, err := asSelector(&r.Spec.PodSelector)
	invalid := false
	if err != nil {
		errs = append(errs, fmt.Errorf("podSelector: %w (the policy isolates every pod of namespace %s and allows nothing)", err, r.Namespace))
		sel = labels.Everything()
		invalid = true
	}
	p.podSel = sel
	ingress, egress, err := policyTypes(&r.Spec)
	if err != nil {
		errs = append(errs, fmt.Errorf("%w (the policy isolates its pods for ingress and egress and allows nothing)", err))
		invalid = true
	}
	for _, dir := range directions {
		if on := [2]bool{Ingress: ingress, Egress: egress}[dir]; !on {
			continue
		}
		d := &policyDir{pol: p, dir: dir, chain: policyChainName(dir, r.ID), targets: map[string]*podRecord{}}
		d.jump = nft.Rule{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: d.chain}}}
		if !wholeName(d.chain) {
			d.jump.Comment = comment(p.id)
		}
		if !invalid {
			for i, sr := range specRules(&r.Spec, dir) {
				rule, err := parseRule(r, dir, i, sr.peers, sr.ports)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s rule %d: %w", dir, i, err))
				}
				d.rules = append(d.rules, rule)
			}
		}
		p.dirs[dir] = d
	}
	if err := errors.Join(errs...); err != nil {
		return p, fmt.Errorf("networkpolicy %s: %w", r.ID, err)
	}
	return p, nil
}

// policyTypes applies the defaults: Ingress always, Egress when egress rules
// exist. A type other than Ingress and Egress is an error, and then both are
// returned: such a policy must fail closed, whatever its author meant.
func policyTypes(spec *networkingv1.NetworkPolicySpec) (ingress, egress bool, err error) {
	if len(spec.PolicyTypes) == 0 {
		return true, len(spec.Egress) > 0, nil
	}
	for _, t := range spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		default:
			return true, true, fmt.Errorf("policyTypes: unknown type %q", t)
		}
	}
	return ingress, egress, nil
}

// specRule is one ingress or egress rule of a NetworkPolicy spec.
type specRule struct {
	peers []networkingv1.NetworkPolicyPeer
	ports []networkingv1.NetworkPolicyPort
}

// specRules returns the rules of a spec for one direction as (peers, ports)
// pairs: the one reading of a spec's rules, shared by the compiler and by
// Decide, so that both directions go through the same code in each.
func specRules(spec *networkingv1.NetworkPolicySpec, dir Direction) []specRule {
	var out []specRule
	if dir == Ingress {
		for _, r := range spec.Ingress {
			out = append(out, specRule{r.From, r.Ports})
		}
		return out
	}
	for _, r := range spec.Egress {
		out = append(out, specRule{r.To, r.Ports})
	}
	return out
}

func parseRule(r *policyRecord, dir Direction, idx int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) (*policyRule, error) {
	var errs []error
	rule := &policyRule{anyPeer: len(peers) == 0, anyPort: len(ports) == 0}
	for i := range peers {
		ps, err := parsePeer(r.Namespace, &peers[i])
		if err != nil {
			// An invalid peer matches nothing; the rule keeps its other peers.
			errs = append(errs, fmt.Errorf("peer %d: %w", i, err))
			continue
		}
		rule.peers = append(rule.peers, ps)
	}
	var numeric []protoRange
	for i, pp := range ports {
		proto := corev1.ProtocolTCP
		if pp.Protocol != nil {
			proto = *pp.Protocol
		}
		pn, ok := ProtocolNumber(proto)
		if !ok {
			errs = append(errs, fmt.Errorf("port %d: unknown protocol %q", i, proto))
			continue
		}
		switch {
		case pp.Port == nil:
			if pp.EndPort != nil {
				errs = append(errs, fmt.Errorf("port %d: endPort without port", i))
				continue
			}
			numeric = append(numeric, protoRange{pn, 0, 65535})
		case pp.Port.Type == intstr.String:
			if pp.EndPort != nil || pp.Port.StrVal == "" {
				errs = append(errs, fmt.Errorf("port %d: named port %q with endPort or empty", i, pp.Port.StrVal))
				continue
			}
			n := portName{pp.Port.StrVal, pn}
			if !slices.Contains(rule.named, n) {
				rule.named = append(rule.named, n)
			}
		default:
			from := pp.Port.IntVal
			to := from
			if pp.EndPort != nil {
				to = *pp.EndPort
			}
			if from < 1 || from > 65535 || to < from || to > 65535 {
				errs = append(errs, fmt.Errorf("port %d: invalid port range %d-%d", i, from, to))
				continue
			}
			numeric = append(numeric, protoRange{pn, uint16(from), uint16(to)})
		}
	}
	if len(numeric) > 0 {
		rule.numeric = portsSpec(numeric)
	}
	if len(rule.named) > 0 {
		rule.id = fmt.Sprintf("%s/%s/%d", r.ID, dir, idx)
		hasGroup := slices.ContainsFunc(rule.peers, func(p peerSpec) bool { return p.group != nil })
		hasCIDR := slices.ContainsFunc(rule.peers, func(p peerSpec) bool { return p.cidr != nil })
		if dir == Ingress || hasGroup {
			rule.namedKey = rule.id
		}
		if dir == Egress && (rule.anyPeer || hasCIDR) {
			// Only the families some peer matches against: the set mirrors
			// every pod's named ports, so an unused family would cost as much
			// as a used one.
			rule.allFams = familySet{rule.anyPeer, rule.anyPeer}
			for _, p := range rule.peers {
				if p.cidr != nil {
					rule.allFams[p.fam] = true
				}
			}
			rule.allKey = everyPodNamedKey(rule.named, rule.allFams)
		}
	}
	return rule, errors.Join(errs...)
}

func parsePeer(ns string, p *networkingv1.NetworkPolicyPeer) (peerSpec, error) {
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			return peerSpec{}, errors.New("ipBlock combined with a selector")
		}
		fam, ranges, canonical, err := parseIPBlock(p.IPBlock)
		if err != nil {
			return peerSpec{}, err
		}
		name := cidrSetName(fam, canonical)
		elems := make([]nft.Element, 0, len(ranges))
		for _, r := range ranges {
			e := nft.Element{Key: []nft.Value{nft.AddrValue(r.From)}}
			if r.From != r.To {
				e.KeyEnd = []nft.Value{nft.AddrValue(r.To)}
			}
			elems = append(elems, e)
		}
		return peerSpec{fam: fam, cidr: &sharedSpec{
			name:  name,
			set:   nft.Set{Name: name, Key: []nft.KeyType{fam.addrType()}, Interval: true, Comment: "ipBlock " + canonical},
			elems: elems,
		}}, nil
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return peerSpec{}, errors.New("peer without podSelector, namespaceSelector or ipBlock")
	}
	podSel := labels.Everything()
	if p.PodSelector != nil {
		s, err := asSelector(p.PodSelector)
		if err != nil {
			return peerSpec{}, fmt.Errorf("podSelector: %w", err)
		}
		podSel = s
	}
	g := &groupSpec{podSel: podSel}
	if p.NamespaceSelector == nil {
		g.local = ns
		g.key = "ns=" + ns + ";pods=" + podSel.String()
		g.desc = fmt.Sprintf("pods of namespace %s matching {%s}", ns, podSel)
	} else {
		s, err := asSelector(p.NamespaceSelector)
		if err != nil {
			return peerSpec{}, fmt.Errorf("namespaceSelector: %w", err)
		}
		g.nsSel = s
		g.key = "nssel=" + s.String() + ";pods=" + podSel.String()
		g.desc = fmt.Sprintf("pods matching {%s} in namespaces matching {%s}", podSel, s)
	}
	return peerSpec{group: g}, nil
}

// protoRange is a port range of one protocol.
type protoRange struct {
	Proto    uint8
	From, To uint16
}

// portsSpec merges the ranges per protocol (so the interval set holds no overlap)
// and names the set after its content.
func portsSpec(rs []protoRange) *sharedSpec {
	slices.SortFunc(rs, func(a, b protoRange) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		if a.From != b.From {
			return int(a.From) - int(b.From)
		}
		return int(a.To) - int(b.To)
	})
	var merged []protoRange
	for _, r := range rs {
		if n := len(merged); n > 0 && merged[n-1].Proto == r.Proto && uint32(r.From) <= uint32(merged[n-1].To)+1 {
			if r.To > merged[n-1].To {
				merged[n-1].To = r.To
			}
			continue
		}
		merged = append(merged, r)
	}
	var key []string
	elems := make([]nft.Element, 0, len(merged))
	for _, r := range merged {
		e := nft.Element{Key: []nft.Value{nft.ProtoValue(r.Proto), nft.PortValue(r.From)}}
		k := fmt.Sprintf("%s . %d", nft.FormatValue(nft.TypeInetProto, nft.ProtoValue(r.Proto)), r.From)
		if r.From != r.To {
			e.KeyEnd = []nft.Value{nft.ProtoValue(r.Proto), nft.PortValue(r.To)}
			k += fmt.Sprintf("-%d", r.To)
		}
		elems = append(elems, e)
		key = append(key, k)
	}
	canonical := strings.Join(key, ", ")
	name := portsSetName(canonical)
	spec := &sharedSpec{
		name:  name,
		set:   nft.Set{Name: name, Key: []nft.KeyType{nft.TypeInetProto, nft.TypeInetService}, Interval: true, Comment: "ports " + canonical},
		elems: elems,
	}
	if len(merged) <= maxInlinePorts {
		for _, r := range merged {
			entry := []nft.Expr{nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(r.Proto)}}
			switch {
			case r.From == 0 && r.To == 65535: // protocol only
			case r.From == r.To:
				entry = append(entry, nft.Cmp{Field: nft.FieldTHDport, Value: nft.PortValue(r.From)})
			default:
				entry = append(entry, nft.Range{Field: nft.FieldTHDport, From: nft.PortValue(r.From), To: nft.PortValue(r.To)})
			}
			spec.inline = append(spec.inline, entry)
		}
	}
	return spec
}

// everyPodNamedKey is the key of the every-pod named set for these named
// ports and families, and its comment: the canonical port list, so that rules
// share the set, e.g. "named ports tcp/http, udp/dns of every pod (v4, v6)".
func everyPodNamedKey(named []portName, fams familySet) string {
	ports := make([]string, 0, len(named))
	for _, pn := range named {
		ports = append(ports, nft.FormatValue(nft.TypeInetProto, nft.ProtoValue(pn.Proto))+"/"+pn.Name)
	}
	slices.Sort(ports)
	var fs []string
	for _, f := range families {
		if fams.has(f) {
			fs = append(fs, f.String())
		}
	}
	return fmt.Sprintf("named ports %s of every pod (%s)", strings.Join(slices.Compact(ports), ", "), strings.Join(fs, ", "))
}
