package enforcer

import (
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
)

// tiers owns the compiled ClusterNetworkPolicy tiers (TIERS.md, "The
// plan"): for each direction and tier, the subject groups of local pods (the
// pods selected by the same precedence-ordered list of CNPs of the tier with
// rules in the direction), and per group its class chains and class maps.
// A pod chain (dispatch.go) looks the peer address up in its groups' class
// maps: the element jumps to the chain of the address's peer class, whose
// rules are the port matches of the class's rules in first-match order,
// ending in accept, drop or return (Pass); no element, or no port match,
// returns to the pod chain.
//
// This first version recomputes every group on each change that may affect
// one (a CNP, a pod, a namespace) and writes the objects whole; the writer's
// diff sends only what differs. It reads the CNPs as parsed (cnp.go) and
// follows the evaluator (cnpdecide.go) rule for rule: byPrecedence,
// selects, effectiveAction, and the peers' matches over an address's
// claimants.
type tiers struct {
	w *writer
	m *model
	// groups[dir][tier][podID] is the group of a local pod.
	groups [2][2]map[string]*tierGroup
	// objects are the chains and sets written last time (true: a set).
	objects map[string]bool
	// none: the model held no CNP at the last CNP change, so that pod and
	// namespace changes skip the tiers without reading the model.
	none bool
}

// tierGroup is one subject group: its class maps, per family ("" where no
// address has a class).
type tierGroup struct {
	maps [2]string
}

// tierRule is one rule of a group's rule list, with the action it takes
// (effectiveAction: failing closed).
type tierRule struct {
	r      *cnpRule
	action v1beta1.ClusterNetworkPolicyRuleAction
	ref    string
}

func newTiers(w *writer, m *model) *tiers {
	return &tiers{w: w, m: m, objects: map[string]bool{}, none: true}
}

// hasGroups reports whether some local pod is in a group.
func (t *tiers) hasGroups() bool {
	for _, dir := range directions {
		for _, tier := range []cnpTier{tierAdmin, tierBaseline} {
			if len(t.groups[dir][tier]) > 0 {
				return true
			}
		}
	}
	return false
}

// concerns reports whether a tier has a group for local pod id in dir.
func (t *tiers) concerns(id string, dir Direction) bool {
	return t.groups[dir][tierAdmin][id] != nil || t.groups[dir][tierBaseline][id] != nil
}

// podRules are the rules a pod chain starts with (tier Admin) or ends with
// (tier Baseline, when no NetworkPolicy isolates the pod): a class-map
// lookup of the peer address per family.
func (t *tiers) podRules(id string, dir Direction, tier cnpTier) []nft.Rule {
	g := t.groups[dir][tier][id]
	if g == nil {
		return nil
	}
	var rules []nft.Rule
	for _, f := range families {
		if g.maps[f] != "" {
			rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.VerdictMapLookup{Fields: []nft.Field{dir.peerField(f)}, Map: g.maps[f]}}})
		}
	}
	return rules
}

// selecting lists, in precedence order, the CNPs of tier tier with rules in
// dir whose subject selects pod (cnps sorted by byPrecedence).
func (t *tiers) selecting(cnps []*cnpRecord, tier cnpTier, dir Direction, pod *podRecord) []*cnpRecord {
	var out []*cnpRecord
	for _, c := range cnps {
		if c.parsed.tier == tier && len(c.parsed.rules[dir]) > 0 && c.parsed.selects(t.m, pod) {
			out = append(out, c)
		}
	}
	return out
}

// signature names the CNP lists that select pod (local or not) in each
// tier for dir: claimants with equal signatures are judged alike.
func (t *tiers) signature(dir Direction, pod *podRecord) string {
	cnps := t.m.clusterPolicies()
	byPrecedence(cnps)
	var b strings.Builder
	for _, tier := range []cnpTier{tierAdmin, tierBaseline} {
		b.WriteString(groupKey(dir, tier, t.selecting(cnps, tier, dir, pod)))
		b.WriteByte(0)
	}
	return b.String()
}

// rebuild recomputes every group of every local pod and writes what
// changed; cnpChanged says a CNP was stored or removed. It reports whether
// tiers had or have anything (false: nothing to resync).
func (t *tiers) rebuild(cnpChanged bool) bool {
	if t.none && !cnpChanged && len(t.objects) == 0 {
		return false
	}
	cnps := t.m.clusterPolicies()
	t.none = len(cnps) == 0
	if t.none && len(t.objects) == 0 && !t.hasGroups() {
		return false
	}
	byPrecedence(cnps)
	objects := map[string]bool{}
	built := map[string]*tierGroup{}
	var groups [2][2]map[string]*tierGroup
	for _, dir := range directions {
		for _, tier := range []cnpTier{tierAdmin, tierBaseline} {
			groups[dir][tier] = map[string]*tierGroup{}
		}
	}
	ids := slices.Sorted(maps.Keys(t.m.local.byID))
	for _, id := range ids {
		rec := t.m.local.get(id).rec
		if rec == nil || !rec.active() {
			continue
		}
		for _, dir := range directions {
			for _, tier := range []cnpTier{tierAdmin, tierBaseline} {
				sel := t.selecting(cnps, tier, dir, rec)
				if len(sel) == 0 {
					continue
				}
				key := groupKey(dir, tier, sel)
				g := built[key]
				if g == nil {
					g = t.build(dir, tier, sel, key, objects)
					built[key] = g
				}
				groups[dir][tier][id] = g
			}
		}
	}
	for name, isSet := range t.objects {
		if _, keep := objects[name]; keep {
			continue
		}
		if isSet {
			t.w.deleteSet(name)
		} else {
			t.w.deleteChain(name)
		}
	}
	t.objects, t.groups = objects, groups
	return true
}

// groupKey identifies a group: direction, tier and its CNPs in order.
func groupKey(dir Direction, tier cnpTier, sel []*cnpRecord) string {
	names := make([]string, len(sel))
	for i, c := range sel {
		names[i] = c.ID
	}
	return tier.String() + " " + dir.String() + " " + strings.Join(names, ",")
}

// groupName is a group's name prefix, e.g. "adm-in-<hash>".
func groupName(dir Direction, tier cnpTier, key string) string {
	return tier.String()[:3] + "-" + dir.short() + "-" + shortHash(key)
}

// build writes a group's class chains and class maps.
func (t *tiers) build(dir Direction, tier cnpTier, sel []*cnpRecord, key string, objects map[string]bool) *tierGroup {
	var rules []tierRule
	for _, c := range sel {
		for i := range c.parsed.rules[dir] {
			r := &c.parsed.rules[dir][i]
			if action, ok := r.effectiveAction(c.parsed.degraded); ok {
				rules = append(rules, tierRule{r: r, action: action, ref: ruleRef(tier, c.ID, r)})
			}
		}
	}
	name := groupName(dir, tier, key)
	g := &tierGroup{}
	for _, f := range families {
		elems := t.partition(rules, f)
		if len(elems) == 0 {
			continue
		}
		g.maps[f] = name + "-" + f.String()
		t.w.putSet(nft.Set{Name: g.maps[f], Key: []nft.KeyType{f.addrType()}, Interval: true, VerdictMap: true,
			Comment: "peer classes of " + key}, len(elems))
		objects[g.maps[f]] = true
		for _, e := range elems {
			chain := classChainName(name, e.class)
			if _, done := objects[chain]; !done {
				t.putClassChain(chain, rules, e.members)
				objects[chain] = false
			}
			el := nft.Element{Key: []nft.Value{nft.AddrValue(e.lo)}, Verdict: &nft.Verdict{Kind: nft.VerdictJump, Chain: chain}}
			if e.hi != e.lo {
				el.KeyEnd = []nft.Value{nft.AddrValue(e.hi)}
			}
			t.w.addElement(g.maps[f], el)
		}
	}
	return g
}

// putClassChain writes the chain of a peer class: the port matches of its
// rules in order, each ending in the rule's verdict; a rule without ports
// decides every packet, so the rules after it are left out.
func (t *tiers) putClassChain(name string, rules []tierRule, members []int) {
	var out []nft.Rule
	var refs []string
	for _, i := range members {
		tr := rules[i]
		refs = append(refs, strconv.Itoa(i))
		v := nft.Verdict{Kind: nft.VerdictDrop}
		switch tr.action {
		case v1beta1.ClusterNetworkPolicyRuleActionAccept:
			v.Kind = nft.VerdictAccept
		case v1beta1.ClusterNetworkPolicyRuleActionPass:
			v.Kind = nft.VerdictReturn
		}
		if tr.r.broken || tr.r.ports == nil {
			out = append(out, nft.Rule{Exprs: []nft.Expr{v}, Comment: tr.ref})
			break
		}
		for _, p := range tr.r.ports {
			exprs := []nft.Expr{nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(p.proto)}}
			switch {
			case p.lo == 0 && p.hi == 65535:
			case p.lo == p.hi:
				exprs = append(exprs, nft.Cmp{Field: nft.FieldTHDport, Value: nft.PortValue(p.lo)})
			default:
				exprs = append(exprs, nft.Range{Field: nft.FieldTHDport, From: nft.PortValue(p.lo), To: nft.PortValue(p.hi)})
			}
			out = append(out, nft.Rule{Exprs: append(exprs, v), Comment: tr.ref})
		}
	}
	if old := t.w.chain(name); old == nil || !sameRuleList(old.Rules, out) {
		t.w.putChain(&nft.Chain{Name: name, Comment: "peer class: rules " + strings.Join(refs, ","), Rules: out})
	}
}

// classRange is one element of a class map: an address interval whose
// addresses match the same rules (members, indexes into the rule list).
type classRange struct {
	lo, hi  netip.Addr
	members []int
	class   string // members as a name part, e.g. "0.2"
}

// partition splits the address space of family f into intervals of equal
// peer class and returns those with a non-empty class: networks peers are
// intervals (a broken rule's covers the whole family), cut around each pod
// address whose claimants make its class differ from the networks'.
func (t *tiers) partition(rules []tierRule, f Family) []classRange {
	first, last := familyBounds(f)
	cuts := map[netip.Addr]struct{}{first: {}}
	cut := func(lo, hi netip.Addr) {
		cuts[lo] = struct{}{}
		if hi != last {
			cuts[hi.Next()] = struct{}{}
		}
	}
	for _, tr := range rules {
		if tr.r.broken {
			continue // the whole family: no cut
		}
		for _, p := range tr.r.peers {
			for _, n := range p.networks {
				if familyOf(n.Addr()) == f {
					cut(n.Addr(), prefixLast(n))
				}
			}
		}
	}
	for _, p := range t.m.pods() {
		if !p.active() {
			continue
		}
		for _, a := range p.IPs {
			if familyOf(a) == f && !slices.Equal(classOf(t.m, rules, a, t.m.podsByIP(a)), classOf(t.m, rules, a, nil)) {
				cut(a, a)
			}
		}
	}
	starts := slices.SortedFunc(maps.Keys(cuts), netip.Addr.Compare)
	var out []classRange
	for k, lo := range starts {
		hi := last
		if k+1 < len(starts) {
			hi = starts[k+1].Prev()
		}
		members := classOf(t.m, rules, lo, t.m.podsByIP(lo))
		if n := len(out); n > 0 && out[n-1].hi.Next() == lo && slices.Equal(out[n-1].members, members) {
			out[n-1].hi = hi
			continue
		}
		if len(members) == 0 {
			continue
		}
		parts := make([]string, len(members))
		for i, m := range members {
			parts[i] = strconv.Itoa(m)
		}
		out = append(out, classRange{lo: lo, hi: hi, members: members, class: strings.Join(parts, ".")})
	}
	return out
}

// classOf lists the rules whose peers match address a claimed by claimants,
// as the evaluator's cnpRule.matches does without the ports.
func classOf(m *model, rules []tierRule, a netip.Addr, claimants []*podRecord) []int {
	var out []int
	for i, tr := range rules {
		if tr.r.broken || slices.ContainsFunc(tr.r.peers, func(p cnpPeer) bool { return p.matches(m, a, claimants) }) {
			out = append(out, i)
		}
	}
	return out
}

// familyBounds are the first and last addresses of a family.
func familyBounds(f Family) (netip.Addr, netip.Addr) {
	if f == IPv6 {
		return netip.IPv6Unspecified(), netip.AddrFrom16([16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	return netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{0xff, 0xff, 0xff, 0xff})
}

// classChainName names a class chain after its rules ("<group>-c0.2"), or
// a hash of them when they are many.
func classChainName(group, class string) string {
	if len(class) > 32 {
		class = shortHash(class)
	}
	return group + "-c" + class
}
