package enforcer

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
)

// Peer classes and class maps of the ClusterNetworkPolicy tiers (tiers.go).
//
// A peer class is a set of rules (of one tier and direction) whose peers
// match an address; its chain holds those rules' port matches in precedence
// order. A class is keyed by its rules' identities (policy, rule index), not
// their positions in a group's list, so that a policy added to or removed
// from a group changes no other class, and classes equal in two groups share
// one chain. A chain lives while a class-map element jumps to it.
//
// A chain's name is not a function of its class: when the elements jumping
// to a class's chain all move away, in one operation, to classes that have
// no chain yet (typically all to one: a cluster-wide policy added or deleted
// makes each class its rule joins the class plus that rule, in every group
// at once), the class that took most of them takes the chain over and it is
// rewritten in place, instead of those elements being sent again to a new
// chain (moveChains). A class otherwise gets the name hashed from its rules
// (tierClass.base), or that name with a suffix while another class holds it.
//
// A class map is the function address -> class of one group and family,
// kept as its canonical partition: maximal runs of equal class covering the
// family (runs with no class have no element). The canonical form is unique,
// so an update that changes the class of one address (a pod change) splits
// and merges runs around it, sending a few elements, and still ends in
// exactly what a build from scratch gives.

// tierClass is a peer class: the sorted identities of its rules. Classes
// are interned (tiers.classes) and compared by pointer; the selector part of
// an address (classMap.sel) and the runs of a networks part are classes too,
// whose union is the address's class.
type tierClass struct {
	key     string
	ids     []string
	refs    int  // class-map elements jumping to its chain
	holds   int  // selector parts and networks runs naming it
	written bool // its chain (name) is in the desired state
	// base is the chain name hashed from the rules; name is the chain's
	// name while written (finishClasses).
	base, name string
}

// sentElement is a class-map element change of the operation, sent by
// finishClasses once the classes' chains are named.
type sentElement struct {
	cm     *classMap
	lo, hi netip.Addr
	class  *tierClass
	add    bool
}

// intern returns the class of a sorted list of rule identities (nil for
// none). It lives until the end of the operation or while an element uses it.
func (t *tiers) intern(dir Direction, tier cnpTier, ids []string) *tierClass {
	if len(ids) == 0 {
		return nil
	}
	key := strings.Join(ids, "\x00")
	if c := t.classes[key]; c != nil {
		return c
	}
	c := &tierClass{key: key, ids: ids, base: tier.String()[:3] + "-" + dir.short() + "-c" + shortHash(key)}
	t.classes[key] = c
	t.touched[c] = struct{}{}
	for _, id := range ids {
		byID := t.byRule[id]
		if byID == nil {
			byID = map[*tierClass]struct{}{}
			t.byRule[id] = byID
		}
		byID[c] = struct{}{}
	}
	return c
}

// useClass counts an element more (delta 1) or less (-1) for c.
func (t *tiers) useClass(c *tierClass, delta int) {
	if c != nil {
		c.refs += delta
		t.touched[c] = struct{}{}
	}
}

// holdClass counts a selector part or networks run more (delta 1) or less
// (-1) naming c.
func (t *tiers) holdClass(c *tierClass, delta int) {
	if c != nil {
		c.holds += delta
		t.touched[c] = struct{}{}
	}
}

// finishClasses names the chains of the classes an element started using
// (taking over the chains of classes whose every element moved to them),
// sends the operation's elements, writes the chains of those classes and of
// the classes whose rules changed (rewrite), deletes the chains no element
// uses, and
// forgets the classes nothing names. The memos of the operation (they may
// name a class forgotten here) go with it.
func (t *tiers) finishClasses() {
	if len(t.pending) > 0 {
		// Groups wait for settle, which ends with this: the classes and
		// elements of this operation are finished with theirs (a policy
		// deleted would otherwise have its classes' chains written without
		// its rules, then moved in place by settle).
		return
	}
	t.moveChains()
	for c := range t.touched {
		if c.refs == 0 && c.written {
			t.w.deleteChain(c.name)
			delete(t.chains, c.name)
			c.written, c.name = false, ""
		}
	}
	for c := range t.touched {
		if c.refs > 0 && !c.written {
			t.nameChain(c)
		}
	}
	t.sendElements()
	for c := range t.rewrite {
		if c.refs > 0 {
			t.putClassChain(c)
		}
	}
	// Named-port sets are released after the chains that keep them took
	// them, so that a chain rewritten in place keeps its sets.
	for c := range t.touched {
		if c.refs > 0 {
			continue
		}
		t.named.use(c, nil)
		t.counters.use(c, nil)
		if c.holds == 0 {
			delete(t.classes, c.key)
			for _, id := range c.ids {
				removeFrom(t.byRule, id, c)
			}
		}
	}
	clear(t.touched)
	clear(t.rewrite)
	clear(t.unions)
	clear(t.selMemo)
}

// moveChains gives the chain of each class no element jumps to any more to
// the class without a chain that took over most of its elements (the same
// interval of the same map, sendRuns sending the two changes in a row):
// those elements then stay as they are, and only the chain is rewritten.
func (t *tiers) moveChains() {
	if len(t.sent) < 2 {
		// No deletion followed by an addition: nothing moved. Most
		// operations (every pod upsert of a cluster without tiers) end
		// here, without the map and the sort below.
		return
	}
	moved := map[*tierClass]map[*tierClass]int{}
	for i := 0; i+1 < len(t.sent); i++ {
		d, a := t.sent[i], t.sent[i+1]
		if d.add || !a.add || d.cm != a.cm || d.lo != a.lo || d.hi != a.hi {
			continue
		}
		if from, to := d.class, a.class; from.written && from.refs == 0 && !to.written && to.refs > 0 {
			if moved[from] == nil {
				moved[from] = map[*tierClass]int{}
			}
			moved[from][to]++
		}
	}
	for _, from := range slices.SortedFunc(maps.Keys(moved), func(a, b *tierClass) int { return strings.Compare(a.name, b.name) }) {
		var to *tierClass
		for c, n := range moved[from] {
			if !c.written && (to == nil || n > moved[from][to] || n == moved[from][to] && c.key < to.key) {
				to = c
			}
		}
		if to == nil {
			continue
		}
		to.name, to.written = from.name, true
		t.chains[to.name] = to
		t.rewrite[to] = struct{}{}
		from.name, from.written = "", false
	}
}

// nameChain gives c's chain its hashed name, or while another class holds
// that name, the first free one with a suffix.
func (t *tiers) nameChain(c *tierClass) {
	name := c.base
	for n := 2; t.chains[name] != nil; n++ {
		name = c.base + "-" + strconv.Itoa(n)
	}
	c.name, c.written = name, true
	t.chains[name] = c
	t.rewrite[c] = struct{}{}
}

// sendElements sends the class-map elements of the operation, but not an
// element deleted and added again jumping to the same chain, nor those of a
// destroyed group.
func (t *tiers) sendElements() {
	sent := t.sent
	for i := 0; i < len(sent); i++ {
		e := sent[i]
		if e.cm.gone {
			continue
		}
		if !e.add && i+1 < len(sent) {
			a := sent[i+1]
			if a.add && a.cm == e.cm && a.lo == e.lo && a.hi == e.hi && t.jumpsTo(e.cm, e.lo, e.hi) == a.class.name {
				i++
				continue
			}
		}
		if e.add {
			t.w.addElement(e.cm.name, classElement(e.lo, e.hi, e.class))
		} else {
			t.w.delElement(e.cm.name, classElement(e.lo, e.hi, nil))
		}
	}
	clear(t.sent)
	t.sent = t.sent[:0]
}

// union is the class of the rules of a and b, memoised for the operation:
// most addresses of a change share a few pairs.
func (t *tiers) union(g *tierGroup, a, b *tierClass) *tierClass {
	switch {
	case a == nil:
		return b
	case b == nil || a == b:
		return a
	}
	key := [2]*tierClass{a, b}
	c, ok := t.unions[key]
	if !ok {
		c = t.intern(g.dir, g.tier, unionIDs(a.ids, b.ids))
		t.unions[key] = c
	}
	return c
}

// selClass is the class of the rules of g naming one of the selector peers
// matched, memoised per group for the operation (or until the group's rules
// change): the addresses of a change share a few sets of peers.
func (t *tiers) selClass(g *tierGroup, matched []*tierPeer) *tierClass {
	if len(matched) == 0 {
		return nil
	}
	key := matched[0].key
	if len(matched) > 1 {
		slices.SortFunc(matched, func(p, q *tierPeer) int { return strings.Compare(p.key, q.key) })
		keys := make([]string, len(matched))
		for i, p := range matched {
			keys[i] = p.key
		}
		key = strings.Join(keys, "\x00")
	}
	memo := t.selMemo[g]
	if c, ok := memo[key]; ok {
		return c
	}
	if memo == nil {
		memo = map[string]*tierClass{}
		t.selMemo[g] = memo
	}
	var ids []string
	for _, p := range matched {
		for id := range g.byPeer[p] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	c := t.intern(g.dir, g.tier, slices.Compact(ids))
	memo[key] = c
	return c
}

// rulesChanged marks the live classes holding a rule of a policy's previous
// version for a rewrite of their chains (ports, actions or precedence
// changed, or the rule gone).
func (t *tiers) rulesChanged(prev *tierCNP) {
	for _, rules := range prev.rules {
		for _, r := range rules {
			for c := range t.byRule[r.id] {
				t.touched[c] = struct{}{}
				t.rewrite[c] = struct{}{}
			}
		}
	}
}

// putClassChain writes the chain of a class: its rules' port matches in
// precedence order, each ending in the rule's verdict (accept, drop, return
// for Pass; a Deny goes to its logging chain when the deny log is on); a
// rule without ports decides every packet, so the rules after it are left
// out. Rules of audited policies decide nothing (auditRules).
func (t *tiers) putClassChain(c *tierClass) {
	rules := make([]*tierRule, 0, len(c.ids))
	for _, id := range c.ids {
		if r := t.rules[id]; r != nil {
			rules = append(rules, r)
		}
	}
	slices.SortFunc(rules, byRulePrecedence)
	t.named.use(c, rules)
	var out []nft.Rule
	refs := make([]string, 0, len(rules))
	var audited portCover // what earlier audited rules of the class match
	var counted []CounterInfo
	for _, tr := range rules {
		refs = append(refs, tr.ref)
		if tr.audited {
			out = append(out, t.auditRules(tr, &audited)...)
			continue
		}
		tail := []nft.Expr{t.ruleVerdict(tr)}
		if tr.counter.Name != "" {
			tail = []nft.Expr{nft.CounterRef{Name: tr.counter.Name}, tail[0]}
			counted = append(counted, tr.counter)
		}
		if tr.r.broken || tr.r.ports == nil {
			out = append(out, nft.Rule{Exprs: tail, Comment: tr.ref})
			break
		}
		for _, p := range tr.r.ports {
			if p.named != "" {
				out = append(out, t.named.rules(p.named, tail, tr.ref)...)
				continue
			}
			out = append(out, nft.Rule{Exprs: append(portExprs(p.proto, p.lo, p.hi), tail...), Comment: tr.ref})
		}
	}
	t.counters.use(c, counted)
	if len(rules) < len(c.ids) {
		// A rule of the class is gone without the class being dropped:
		// never expected; deny rather than let the rest decide.
		out = append(out, nft.Rule{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictDrop}}})
	}
	comm := "peer class: " + strings.Join(refs, "; ")
	if old := t.w.chain(c.name); old == nil || old.Comment != comment(comm) || !sameRuleList(old.Rules, out) {
		t.w.putChain(&nft.Chain{Name: c.name, Comment: comm, Rules: out})
	}
}

// ruleVerdict is how an enforced rule ends: accept, return (Pass), or its
// tier's drop site (Deny).
func (t *tiers) ruleVerdict(tr *tierRule) nft.Verdict {
	switch tr.action {
	case v1beta1.ClusterNetworkPolicyRuleActionAccept:
		return allowVerdict(tr.dir)
	case v1beta1.ClusterNetworkPolicyRuleActionPass:
		return nft.Verdict{Kind: nft.VerdictReturn}
	}
	return t.log.dropVerdict(tr.dir, tierSite(tr.cnp.parsed.tier))
}

// tierSite is the drop site of a tier's Deny rules.
func tierSite(tier cnpTier) string {
	if tier == tierBaseline {
		return siteBaseline
	}
	return siteAdmin
}

// portExprs match one protocol and port range (the whole range: the
// protocol alone).
func portExprs(proto uint8, lo, hi uint16) []nft.Expr {
	exprs := []nft.Expr{nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(proto)}}
	switch {
	case lo == 0 && hi == 65535:
	case lo == hi:
		exprs = append(exprs, nft.Cmp{Field: nft.FieldTHDport, Value: nft.PortValue(lo)})
	default:
		exprs = append(exprs, nft.Range{Field: nft.FieldTHDport, From: nft.PortValue(lo), To: nft.PortValue(hi)})
	}
	return exprs
}

// auditRules are the rules of an audited policy's rule in a class chain:
// nothing for an Accept or a Pass, and for a Deny log rules ("nftw audit")
// without verdict, over the ports no earlier audited rule of the class
// matches (cover, which the rule then joins): numeric ports are subtracted
// as intervals per protocol, named ports by a negated lookup of their set
// per family. So the log fires exactly when the rule would decide the
// connection were the audited policies enforced: the enforced rules before
// it end the chain when they match, and an earlier audited rule that
// matches would have decided first.
func (t *tiers) auditRules(tr *tierRule, cover *portCover) []nft.Rule {
	deny := tr.action == v1beta1.ClusterNetworkPolicyRuleActionDeny
	logTail := t.log.auditLog(tr.dir, tierSite(tr.cnp.parsed.tier))
	var out []nft.Rule
	emit := func(named string, m []nft.Expr) {
		for _, exprs := range t.auditMatches(named, m, cover.named) {
			out = append(out, nft.Rule{Exprs: append(exprs, logTail...), Comment: tr.ref})
		}
	}
	if tr.r.broken || tr.r.ports == nil {
		if deny {
			for _, m := range cover.rest() {
				emit("", m)
			}
		}
		cover.all = true
		return out
	}
	for _, p := range tr.r.ports {
		switch {
		case p.named != "":
			if deny {
				for _, m := range cover.rest() {
					emit(p.named, m)
				}
			}
			cover.named = append(cover.named, p.named)
		default:
			if deny {
				for _, iv := range cover.restOf(p.proto, p.lo, p.hi) {
					emit("", portExprs(p.proto, iv[0], iv[1]))
				}
			}
			cover.add(p.proto, p.lo, p.hi)
		}
	}
	return out
}

// auditMatches are the matches of an audit log rule: m, with the lookup of
// the named-port set of named ("" for none) and a negated lookup of the set
// of each name in except, per family where sets are involved (nothing for a
// family without named's set: the name matches nothing there).
func (t *tiers) auditMatches(named string, m []nft.Expr, except []string) [][]nft.Expr {
	if named == "" && len(except) == 0 {
		return [][]nft.Expr{slices.Clone(m)}
	}
	var out [][]nft.Expr
	for _, f := range families {
		exprs := slices.Clone(m)
		if named != "" {
			l, ok := t.named.lookup(named, f)
			if !ok {
				continue
			}
			exprs = append(exprs, l)
		} else {
			exprs = append(exprs, nft.Cmp{Field: nft.FieldNfproto, Value: nft.Value{f.nfproto()}})
		}
		for _, n := range except {
			if l, ok := t.named.lookup(n, f); ok {
				l.Neq = true
				exprs = append(exprs, l)
			}
		}
		out = append(out, exprs)
	}
	return out
}

// byRulePrecedence orders rules as the evaluator walks them: policies by
// priority then name (byPrecedence), rules in written order.
func byRulePrecedence(a, b *tierRule) int {
	return cmp.Or(cmp.Compare(a.cnp.parsed.priority, b.cnp.parsed.priority), strings.Compare(a.cnp.ID, b.cnp.ID),
		cmp.Compare(a.r.index, b.r.index))
}

// unionIDs merges two sorted identity lists.
func unionIDs(a, b []string) []string {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make([]string, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	slices.Sort(out)
	return slices.Compact(out)
}
