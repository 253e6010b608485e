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
// plan"): for each direction and tier, the subject groups of local pods, and
// per group a class map per family whose elements jump to the chains of the
// peer classes (tierclasses.go). A pod chain (dispatch.go) looks the peer
// address up in its groups' class maps: the element jumps to the chain of the
// address's peer class, whose rules are the port matches of the class's rules
// in first-match order, ending in accept, drop or return (Pass); no element,
// or no port match, returns to the pod chain.
//
// A subject group is keyed by the distinct subjects (selector pairs) of the
// tier's policies with rules in the direction that select the pod: policies
// with equal subjects select the same pods, so that set determines the
// group's policy list, and a policy added to or removed from a subject that
// exists changes the group's rules without renaming it.
//
// Everything is incremental (TIERS.md, "Incremental costs"):
//   - a pod change re-evaluates the shared selector peers of its namespace
//     once (tierpeers.go), recomputes the class of each of its addresses in
//     each group (one element or a few around it), and its own groups;
//   - a policy change touches the groups whose subjects include the
//     policy's (old or new): the addresses its peers match get their class
//     again, the networks part is recomputed only if it has networks peers
//     or a rule that failed to parse, and the chains of the classes holding
//     its rules are rewritten; local pods change groups only if a subject
//     appeared or went away;
//   - a namespace label change re-evaluates the peers and subjects for that
//     namespace.
//
// It reads the CNPs as parsed (cnp.go) and follows the evaluator
// (cnpdecide.go) rule for rule: byPrecedence, selects, effectiveAction, and
// the peers' matches over an address's claimants.
type tiers struct {
	w     *writer
	m     *model
	node  string
	peers *tierPeers
	// named are the every-pod named-port sets of the rules (tiernamed.go).
	named tierNamedPorts
	// cnps are the compiled policies by name.
	cnps map[string]*tierCNP
	// rules are the rules of every policy by identity (ruleID).
	rules map[string]*tierRule
	// subjects[dir][tier] are the distinct subjects of the policies of the
	// tier with rules in dir, by selectorKey.
	subjects [2][2]map[string]*tierSubject
	// groups by groupID; member[dir][tier][podID] is a local pod's group.
	groups map[string]*tierGroup
	member [2][2]map[string]*tierGroup
	// classes by key; touched are those to write or collect at the end of
	// the operation (tierclasses.go), rewrite those whose chain's content
	// may have changed (new chain, rules or named-port sets changed).
	classes map[string]*tierClass
	touched map[*tierClass]struct{}
	rewrite map[*tierClass]struct{}
	// chains are the written classes by chain name; sent are the
	// class-map element changes of the operation (finishClasses).
	chains map[string]*tierClass
	sent   []sentElement
	// spans are sendRuns's buffers.
	spans [2][]classSpan
	// byRule indexes the live classes by the identities of their rules: a
	// policy change rewrites the chains of its rules' classes only.
	byRule map[string]map[*tierClass]struct{}
	// pending are the groups whose class maps wait for settle (refill).
	pending map[*tierGroup]*tierFill
	// unions and selMemo are the memos of one operation (union, selClass).
	unions  map[[2]*tierClass]*tierClass
	selMemo map[*tierGroup]map[string]*tierClass
	// log ends the Deny rules (drop sites) and logs the audited ones;
	// counters count the enforced rules (logs.go, counters.go).
	log      *logging
	counters *counters
}

// tierCNP is a policy as compiled: its subject and rules per direction
// (nil and none for a direction without rules).
type tierCNP struct {
	rec     *cnpRecord
	subject [2]*tierSubject
	rules   [2][]*tierRule
}

// tierSubject is one distinct subject of a tier and direction, with the
// policies that have it.
type tierSubject struct {
	key  string
	cnp  *cnpParsed // one of the policies: its selectors (selects)
	cnps map[string]struct{}
}

// tierGroup is one subject group.
type tierGroup struct {
	dir      Direction
	tier     cnpTier
	id       string
	subjects map[string]bool // selector keys
	pods     map[string]struct{}
	// byPeer are the group's rules per selector peer; nets those with
	// networks peers or that failed to parse.
	byPeer map[*tierPeer]map[string]struct{}
	nets   map[string]*tierRule
	maps   [2]*classMap
}

// tierRule is one rule of a policy with the action it takes
// (effectiveAction: failing closed) and its shared selector peers.
type tierRule struct {
	id     string
	dir    Direction
	cnp    *cnpRecord
	r      *cnpRule
	action v1beta1.ClusterNetworkPolicyRuleAction
	ref    string
	// audited: the policy is in audit mode (the rule decides nothing);
	// counter is the rule's named counter (Name "" without counters),
	// which exists while a class chain counts into it.
	audited bool
	counter CounterInfo
	peers   []*tierPeer
	nets    bool // networks or nodes peers, or broken: part of a class map's networks part
	// nodes are the addresses of the nodes its nodes peers select, as of
	// the last refill of a group with it (tiernodes.go).
	nodes []netip.Prefix
}

func newTiers(w *writer, m *model, node string, named *namedPorts, log *logging, cs *counters) *tiers {
	t := &tiers{w: w, m: m, node: node, log: log, counters: cs, peers: newTierPeers(m), named: newTierNamedPorts(named), cnps: map[string]*tierCNP{}, rules: map[string]*tierRule{},
		groups: map[string]*tierGroup{}, classes: map[string]*tierClass{}, touched: map[*tierClass]struct{}{}, rewrite: map[*tierClass]struct{}{}, chains: map[string]*tierClass{},
		byRule: map[string]map[*tierClass]struct{}{}, unions: map[[2]*tierClass]*tierClass{}, selMemo: map[*tierGroup]map[string]*tierClass{},
		pending: map[*tierGroup]*tierFill{}}
	for _, dir := range directions {
		for _, tier := range []cnpTier{tierAdmin, tierBaseline} {
			t.subjects[dir][tier] = map[string]*tierSubject{}
			t.member[dir][tier] = map[string]*tierGroup{}
		}
	}
	return t
}

// ruleID identifies a rule across changes: tier, direction, policy, index.
func ruleID(tier cnpTier, dir Direction, cnp string, index int) string {
	return tier.String()[:1] + dir.short() + "/" + strconv.Itoa(index) + "/" + cnp
}

// concerns reports whether a tier has a group for local pod id in dir.
func (t *tiers) concerns(id string, dir Direction) bool {
	return t.member[dir][tierAdmin][id] != nil || t.member[dir][tierBaseline][id] != nil
}

// podRules are the rules a pod chain starts with (tier Admin) or ends with
// (tier Baseline, when no NetworkPolicy isolates the pod): a class-map
// lookup of the peer address per family.
func (t *tiers) podRules(id string, dir Direction, tier cnpTier) []nft.Rule {
	g := t.member[dir][tier][id]
	if g == nil {
		return nil
	}
	rules := make([]nft.Rule, 0, len(families))
	for _, f := range families {
		rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.VerdictMapLookup{Fields: []nft.Field{dir.peerField(f)}, Map: g.maps[f].name}}})
	}
	return rules
}

// signature names the subjects that select pod (local or not) in each tier
// for dir: claimants with equal signatures are judged by the same policies.
func (t *tiers) signature(dir Direction, pod *podRecord) string {
	return t.groupKey(dir, tierAdmin, pod) + "\x01" + t.groupKey(dir, tierBaseline, pod)
}

// groupKey lists, sorted, the subjects of tier and dir that select pod.
func (t *tiers) groupKey(dir Direction, tier cnpTier, pod *podRecord) string {
	var keys []string
	for key, s := range t.subjects[dir][tier] {
		if s.cnp.selects(t.m, pod) {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return strings.Join(keys, "\x00")
}

// isLocal reports whether rec is a pod this node enforces for.
func (t *tiers) isLocal(rec *podRecord) bool {
	return rec.active() && t.node != "" && rec.Node.Value() == t.node
}

// --- changes ---

// podChanged follows a pod change (old or cur nil): its memberships of the
// shared peers, the class of its addresses in every group, and, for a local
// pod, its own groups. It reports whether the pod's groups changed.
func (t *tiers) podChanged(old, cur *podRecord) bool {
	p := cur
	if p == nil {
		p = old
	}
	t.peers.podChanged(p.ID, p.Namespace(), old, cur)
	if len(t.groups) > 0 {
		// Gathered only here: without ClusterNetworkPolicy subjects on this
		// node every pod change would allocate the list for nothing.
		var addrs []netip.Addr
		for _, rec := range [2]*podRecord{old, cur} {
			if rec.active() {
				addrs = append(addrs, rec.IPs...)
			}
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		addrs = slices.Compact(addrs)
		for _, id := range slices.Sorted(maps.Keys(t.groups)) {
			t.updateAddrs(t.groups[id], addrs)
		}
	}
	if !t.isLocal(cur) {
		cur = nil
	}
	return t.assign(p.ID, cur)
}

// namespaceChanged follows a namespace's labels: the peers matching it and
// the groups of its local pods. It returns the local pods whose groups
// changed.
func (t *tiers) namespaceChanged(name string) []string {
	addrs := t.peers.namespaceChanged(name)
	if len(addrs) > 0 {
		slices.SortFunc(addrs, netip.Addr.Compare)
		addrs = slices.Compact(addrs)
		for _, id := range slices.Sorted(maps.Keys(t.groups)) {
			t.updateAddrs(t.groups[id], addrs)
		}
	}
	var moved []string
	locals := t.m.local.inNamespace(name)
	for _, id := range slices.Sorted(maps.Keys(locals)) {
		if rec := locals[id].rec; rec != nil && t.assign(id, rec) {
			moved = append(moved, id)
		}
	}
	return moved
}

// cnpChanged compiles a policy change (old or cur nil: added, deleted) and
// returns the local pods whose groups changed.
func (t *tiers) cnpChanged(name string, cur *cnpRecord) []string {
	prev := t.cnps[name]
	var next *tierCNP
	var affected [2][]netip.Addr
	var subjectsChanged [2][2]bool
	if prev != nil {
		for _, dir := range directions {
			affected[dir] = append(affected[dir], peerAddrs(prev.rules[dir])...)
		}
	}
	// The previous version leaves its subjects and rule identities first, so
	// that the new one (often the same subject) takes them back.
	var gone [2][2]map[string]bool
	if prev != nil {
		tier := prev.rec.parsed.tier
		for _, dir := range directions {
			if s := prev.subject[dir]; s != nil {
				if delete(s.cnps, name); len(s.cnps) == 0 {
					delete(t.subjects[dir][tier], s.key)
					gone[dir][tier] = map[string]bool{s.key: true}
				}
			}
			for _, r := range prev.rules[dir] {
				delete(t.rules, r.id)
			}
		}
		delete(t.cnps, name)
	}
	if cur != nil {
		next = &tierCNP{rec: cur}
		t.cnps[name] = next
		tier := cur.parsed.tier
		for _, dir := range directions {
			if len(cur.parsed.rules[dir]) == 0 {
				continue
			}
			s, created := t.addSubject(dir, cur)
			next.subject[dir] = s
			subjectsChanged[dir][tier] = created && !gone[dir][tier][s.key]
			delete(gone[dir][tier], s.key)
			next.rules[dir] = t.newRules(dir, cur)
			for _, r := range next.rules[dir] {
				t.rules[r.id] = r
			}
			affected[dir] = append(affected[dir], peerAddrs(next.rules[dir])...)
		}
	}
	for _, dir := range directions {
		for _, tier := range []cnpTier{tierAdmin, tierBaseline} {
			subjectsChanged[dir][tier] = subjectsChanged[dir][tier] || len(gone[dir][tier]) > 0
		}
	}
	if prev != nil {
		t.rulesChanged(prev)
	}
	for _, id := range slices.Sorted(maps.Keys(t.groups)) {
		g := t.groups[id]
		var removed, added []*tierRule
		if prev != nil && prev.subject[g.dir] != nil && prev.rec.parsed.tier == g.tier && g.subjects[prev.subject[g.dir].key] {
			removed = prev.rules[g.dir]
		}
		if next != nil && next.subject[g.dir] != nil && cur.parsed.tier == g.tier && g.subjects[next.subject[g.dir].key] {
			added = next.rules[g.dir]
		}
		if removed != nil || added != nil {
			t.changeRules(g, removed, added, affected[g.dir])
		}
	}
	if prev != nil {
		for _, dir := range directions {
			for _, r := range prev.rules[dir] {
				for _, p := range r.peers {
					t.peers.release(p)
				}
			}
		}
	}
	var moved []string
	for _, dir := range directions {
		for _, tier := range []cnpTier{tierAdmin, tierBaseline} {
			if !subjectsChanged[dir][tier] {
				continue
			}
			for _, id := range slices.Sorted(maps.Keys(t.m.local.byID)) {
				if rec := t.m.local.get(id).rec; rec != nil && t.assignOne(dir, tier, id, rec) {
					moved = append(moved, id)
				}
			}
		}
	}
	slices.Sort(moved)
	return slices.Compact(moved)
}

// addSubject adds policy c to its subject of dir, creating the subject
// (created true) for the first.
func (t *tiers) addSubject(dir Direction, c *cnpRecord) (s *tierSubject, created bool) {
	key := selectorKey(c.parsed.subjectNS, c.parsed.subjectPod)
	subs := t.subjects[dir][c.parsed.tier]
	s = subs[key]
	if s == nil {
		s = &tierSubject{key: key, cnp: c.parsed, cnps: map[string]struct{}{}}
		subs[key] = s
		created = true
	}
	s.cnps[c.ID] = struct{}{}
	return s, created
}

// newRules compiles the rules of c for dir, acquiring their selector peers;
// an Accept that failed to parse matches nothing and is left out.
func (t *tiers) newRules(dir Direction, c *cnpRecord) []*tierRule {
	var out []*tierRule
	for i := range c.parsed.rules[dir] {
		r := &c.parsed.rules[dir][i]
		action, ok := r.effectiveAction(c.parsed.degraded)
		if !ok {
			continue
		}
		tr := &tierRule{id: ruleID(c.parsed.tier, dir, c.ID, r.index), dir: dir, cnp: c, r: r, action: action, ref: ruleRef(c.parsed.tier, c.ID, r), nets: r.broken,
			audited: t.log.audited(c.Audit)}
		if t.counters.on && !tr.audited {
			tr.counter = CounterInfo{Name: ruleCounterName(tr), Kind: KindClusterNetworkPolicy, Policy: c.ID,
				Direction: dir, Role: CounterRule, Rule: r.index, Action: string(action)}
		}
		for _, p := range r.peers {
			if p.ns == nil {
				tr.nets = true
				continue
			}
			tr.peers = append(tr.peers, t.peers.acquire(p.ns, p.pod))
		}
		out = append(out, tr)
	}
	return out
}

// peerAddrs are the addresses of the members of the rules' selector peers.
func peerAddrs(rules []*tierRule) []netip.Addr {
	var out []netip.Addr
	for _, r := range rules {
		for _, p := range r.peers {
			for _, rec := range p.members {
				out = append(out, rec.IPs...)
			}
		}
	}
	return out
}

// --- groups ---

// assign puts local pod id (rec nil: not local any more) in its groups and
// reports whether one changed.
func (t *tiers) assign(id string, rec *podRecord) bool {
	changed := false
	for _, dir := range directions {
		for _, tier := range []cnpTier{tierAdmin, tierBaseline} {
			changed = t.assignOne(dir, tier, id, rec) || changed
		}
	}
	return changed
}

func (t *tiers) assignOne(dir Direction, tier cnpTier, id string, rec *podRecord) bool {
	var key string
	if rec != nil {
		key = t.groupKey(dir, tier, rec)
	}
	old := t.member[dir][tier][id]
	if key == "" && old == nil {
		return false // the common case of a pod that no subject selects: no group ID to build
	}
	gid := tier.String() + " " + dir.String() + " " + key
	if old != nil && old.id == gid {
		return false
	}
	if old != nil {
		delete(old.pods, id)
		delete(t.member[dir][tier], id)
		if len(old.pods) == 0 {
			t.destroy(old)
		}
	}
	if key == "" {
		return old != nil
	}
	g := t.groups[gid]
	if g == nil {
		g = t.create(dir, tier, gid, strings.Split(key, "\x00"))
	}
	g.pods[id] = struct{}{}
	t.member[dir][tier][id] = g
	return true
}

// create builds a group: its rules, and its class maps from the peers'
// members and the networks.
func (t *tiers) create(dir Direction, tier cnpTier, gid string, subjects []string) *tierGroup {
	g := &tierGroup{dir: dir, tier: tier, id: gid, subjects: map[string]bool{}, pods: map[string]struct{}{},
		byPeer: map[*tierPeer]map[string]struct{}{}, nets: map[string]*tierRule{}}
	var addrs []netip.Addr
	for _, key := range subjects {
		g.subjects[key] = true
		s := t.subjects[dir][tier][key]
		for _, name := range slices.Sorted(maps.Keys(s.cnps)) {
			rules := t.cnps[name].rules[dir]
			t.addRules(g, rules)
			addrs = append(addrs, peerAddrs(rules)...)
		}
	}
	t.groups[gid] = g
	name := tier.String()[:3] + "-" + dir.short() + "-" + shortHash(gid)
	desc := make([]string, len(subjects))
	for i, key := range subjects {
		desc[i] = "{" + key + "}"
	}
	for _, f := range families {
		cm := newClassMap(name+"-"+f.String(), f)
		g.maps[f] = cm
		t.w.putSet(nft.Set{Name: cm.name, Key: []nft.KeyType{f.addrType()}, Interval: true, VerdictMap: true,
			Comment: "peer classes of " + tier.String() + " " + dir.String() + " for subjects " + strings.Join(desc, " ")}, 0)
	}
	t.refill(g, addrs, true)
	return g
}

// destroy deletes a group that lost its last pod.
func (t *tiers) destroy(g *tierGroup) {
	delete(t.groups, g.id)
	delete(t.selMemo, g)
	delete(t.pending, g)
	for _, cm := range g.maps {
		for _, r := range cm.runs {
			t.useClass(r.class, -1)
		}
		for _, c := range cm.sel {
			t.holdClass(c, -1)
		}
		for _, r := range cm.net {
			t.holdClass(r.class, -1)
		}
		cm.gone = true
		t.w.deleteSet(cm.name)
	}
}

func (t *tiers) addRules(g *tierGroup, rules []*tierRule) {
	delete(t.selMemo, g)
	for _, r := range rules {
		if r.nets {
			g.nets[r.id] = r
		}
		for _, p := range r.peers {
			ids := g.byPeer[p]
			if ids == nil {
				ids = map[string]struct{}{}
				g.byPeer[p] = ids
			}
			ids[r.id] = struct{}{}
		}
	}
}

func (t *tiers) removeRules(g *tierGroup, rules []*tierRule) {
	delete(t.selMemo, g)
	for _, r := range rules {
		delete(g.nets, r.id)
		for _, p := range r.peers {
			removeFrom(g.byPeer, p, r.id)
		}
	}
}

// changeRules replaces a policy's rules in a group and updates the classes
// of the addresses they concern. Rules that match what they matched before
// (a change of ports, action or priority) leave every class as it is: only
// the chains change (rulesChanged).
func (t *tiers) changeRules(g *tierGroup, removed, added []*tierRule, affected []netip.Addr) {
	nets := slices.ContainsFunc(removed, func(r *tierRule) bool { return r.nets }) ||
		slices.ContainsFunc(added, func(r *tierRule) bool { return r.nets })
	t.removeRules(g, removed)
	t.addRules(g, added)
	if !slices.EqualFunc(removed, added, sameMatch) {
		t.refill(g, affected, nets)
	}
}

// sameMatch reports whether two versions of a rule have one identity and
// match the same addresses: the same selector peers, networks, and parse
// failure.
func sameMatch(a, b *tierRule) bool {
	return a.id == b.id && a.nets == b.nets && a.r.broken == b.r.broken && slices.Equal(a.peers, b.peers) &&
		slices.EqualFunc(a.r.peers, b.r.peers, func(p, q cnpPeer) bool {
			return (p.ns == nil) == (q.ns == nil) && slices.Equal(p.networks, q.networks)
		})
}

// tierFill is what a group's class maps wait for: the addresses whose
// selector part to recompute, and whether the networks part is too.
type tierFill struct {
	addrs map[netip.Addr]struct{}
	nets  bool
}

// refill records that the selector part of the given addresses and, with
// nets, the networks part of g are to be recomputed by settle. Changes that
// come together (a first build, a full list of policies, a burst before a
// Flush) are then computed once: each address once, the networks part and
// the runs once, instead of once per policy.
func (t *tiers) refill(g *tierGroup, addrs []netip.Addr, nets bool) {
	f := t.pending[g]
	if f == nil {
		f = &tierFill{addrs: make(map[netip.Addr]struct{}, len(addrs))}
		t.pending[g] = f
	}
	for _, a := range addrs {
		f.addrs[a] = struct{}{}
	}
	f.nets = f.nets || nets
}

// settle brings the class maps of the groups that wait for it up to date:
// every run after a networks change, else the addresses one by one. The
// engine calls it (compiler.settle) before it reads the desired state.
func (t *tiers) settle() {
	for _, g := range slices.SortedFunc(maps.Keys(t.pending), func(a, b *tierGroup) int { return strings.Compare(a.id, b.id) }) {
		f := t.pending[g]
		addrs := slices.SortedFunc(maps.Keys(f.addrs), netip.Addr.Compare)
		if !f.nets {
			t.updateAddrs(g, addrs)
			continue
		}
		rules := slices.Collect(maps.Values(g.nets))
		t.resolveNodes(rules)
		for _, cm := range g.maps {
			t.setNet(g, cm, netRuns(cm.fam, rules))
		}
		for _, a := range addrs {
			t.setSel(g, a)
		}
		for _, cm := range g.maps {
			t.rebuildRuns(g, cm)
		}
	}
	clear(t.pending)
}

// updateAddrs recomputes the class of each address (sorted) in g.
func (t *tiers) updateAddrs(g *tierGroup, addrs []netip.Addr) {
	var pts [2][]classRun
	for _, a := range addrs {
		cm := t.setSel(g, a)
		pts[cm.fam] = append(pts[cm.fam], classRun{lo: a, class: t.classAt(g, cm, a)})
	}
	for _, cm := range g.maps {
		t.setClasses(cm, pts[cm.fam])
	}
}

// setSel recomputes the rules of g whose selector peers match address a
// (every claimant a member, as cnpPeer.matches) and returns a's class map.
func (t *tiers) setSel(g *tierGroup, a netip.Addr) *classMap {
	cm := g.maps[familyOf(a)]
	claimants := t.m.podsByIP(a)
	var matched []*tierPeer
	if len(claimants) > 0 {
		for p := range t.peers.of[claimants[0].ID] {
			if len(g.byPeer[p]) > 0 && p.allMember(claimants) {
				matched = append(matched, p)
			}
		}
	}
	c, old := t.selClass(g, matched), cm.sel[a]
	if c == old {
		return cm
	}
	if c == nil {
		delete(cm.sel, a)
	} else {
		cm.sel[a] = c
	}
	t.holdClass(c, +1)
	t.holdClass(old, -1)
	return cm
}
