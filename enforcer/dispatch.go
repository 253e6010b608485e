package enforcer

import (
	"net/netip"
	"slices"

	"github.com/nftwarden/nftwarden/nft"
)

// dispatch owns what sends a new connection of a local pod to its policies:
// the verdict maps keyed by pod address (one per direction and family) and
// the pod chains, which jump to the chain of each policy selecting the pod
// and end in drop. A local pod has a pod chain and dispatch elements for a
// direction while a policy isolates it for that direction.
type dispatch struct {
	w     *writer
	m     *model
	node  string
	tiers *tiers
	// owner[dir][fam] is the pod whose chain an address's element goes to
	// (claimOwner: set by the conflict rule, conflicts.go).
	owner [2][2]map[netip.Addr]string
	// chains are the pod chains of the local pods that have one, per direction.
	chains map[string][2]string
	// claimed[dir] is the chain of each element the conflict rule set, and
	// drops counts those that go to chainClaimDrop (conflicts.go).
	claimed [2]map[netip.Addr]string
	drops   int
	// log ends the default deny; counters count it; audits are the chains
	// of pods only audited NetworkPolicies isolate.
	log      *logging
	counters *counters
	audits   *npAudits
}

func newDispatch(w *writer, m *model, node string, t *tiers, log *logging, cs *counters, audits *npAudits) *dispatch {
	dp := &dispatch{w: w, m: m, node: node, tiers: t, log: log, counters: cs, audits: audits, chains: map[string][2]string{}}
	w.putChain(&nft.Chain{Name: chainEgressAllowed, Comment: "egress allowed by a policy rule: on to the ingress side",
		Rules: []nft.Rule{{Exprs: []nft.Expr{allowVerdict(Egress)}}}})
	for _, dir := range directions {
		for _, f := range families {
			dp.owner[dir][f] = map[netip.Addr]string{}
			w.putSet(nft.Set{Name: vmapName(dir, f), Key: []nft.KeyType{f.addrType()}, VerdictMap: true,
				Comment: "local pods isolated for " + dir.String() + " (" + f.String() + ")"}, 0)
		}
	}
	return dp
}

// chain is the pod chain of local pod id for dir ("" if it has none).
func (dp *dispatch) chain(id string, dir Direction) string { return dp.chains[id][dir] }

// syncPod rewrites a local pod's chains and dispatch elements; prev is the
// record they were made for (the pod's addresses may have changed since).
func (dp *dispatch) syncPod(lp *localPod, prev *podRecord) {
	cur := lp.rec
	var id string
	switch {
	case cur != nil:
		id = cur.ID
	case prev != nil:
		id = prev.ID
	}
	chains := dp.chains[id]
	for _, dir := range directions {
		want := cur != nil && cur.active() && cur.Node.Value() == dp.node && (len(lp.pols[dir].byID) > 0 || dp.tiers.concerns(id, dir))
		// Dispatch elements of the previous addresses go first.
		if prev != nil && chains[dir] != "" {
			dp.dropStale(dir, id, prev, cur, want)
		}
		if !want {
			if chains[dir] != "" {
				dp.w.deleteChain(chains[dir])
				chains[dir] = ""
				dp.audits.release(id, dir)
				dp.counters.drop(defaultDenyName(dir, id))
			}
			continue
		}
		chains[dir] = podChainName(dir, id)
		dp.putPodChain(dir, id, chains[dir], lp.pols[dir].byID)
		dp.addElements(dir, id, chains[dir], cur.IPs)
	}
	if chains == [2]string{} {
		delete(dp.chains, id)
	} else {
		dp.chains[id] = chains
	}
}

// dropStale deletes pod id's elements of dir for the addresses of prev it no
// longer has (all of them when it should have none).
func (dp *dispatch) dropStale(dir Direction, id string, prev, cur *podRecord, want bool) {
	for _, a := range prev.IPs {
		f := familyOf(a)
		if dp.owner[dir][f][a] == id && (!want || !slices.Contains(cur.IPs, a)) {
			delete(dp.owner[dir][f], a)
			dp.w.delElement(vmapName(dir, f), addrElement(a))
		}
	}
}

// putPodChain writes the pod chain: the Admin tier's class-map lookups
// (tiers.go), then a jump to each selecting policy's chain (in policy ID
// order) and drop if a policy isolates the pod, else the Baseline tier's
// lookups and an allow (allowVerdict) for what none of them decides.
// Audited policies (audit.go) take no part in that: when they alone isolate
// the pod, the chain jumps to their audit chain, which logs what they would
// deny and returns, before the Baseline tier.
func (dp *dispatch) putPodChain(dir Direction, id, chain string, pols []*policy) {
	enforced, audited := dp.log.splitAudited(pols)
	rules := dp.tiers.podRules(id, dir, tierAdmin)
	if len(enforced) == 0 {
		if len(audited) > 0 {
			rules = append(rules, nft.Rule{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: dp.audits.use(id, dir, audited)}}})
		} else {
			dp.audits.release(id, dir)
		}
		dp.counters.drop(defaultDenyName(dir, id))
		rules = append(rules, dp.tiers.podRules(id, dir, tierBaseline)...)
		// What nothing decides is allowed, by a verdict: a dispatch
		// element went to this chain, so falling off its end would return
		// to the last jump (an egress chain whose allow went on to the
		// ingress side) or end the base chain before the ingress side.
		rules = append(rules, nft.Rule{Exprs: []nft.Expr{allowVerdict(dir)}})
		dp.putChainIfChanged(dir, id, chain, rules)
		return
	}
	dp.audits.release(id, dir)
	rules = slices.Grow(rules, len(enforced)+1)
	ids := make([]string, len(enforced))
	for i, p := range enforced {
		ids[i] = p.id
		rules = append(rules, p.dirs[dir].jump)
	}
	count := nft.Expr(nft.Counter{})
	if dp.counters.on {
		count = nft.CounterRef{Name: dp.counters.ref(CounterInfo{Name: defaultDenyName(dir, id), Kind: KindNetworkPolicy,
			Namespace: enforced[0].ns, Direction: dir, Role: CounterDefaultDeny, Pod: id, Policies: ids})}
	}
	rules = append(rules, nft.Rule{Exprs: []nft.Expr{count, dp.log.dropVerdict(dir, siteNP)}})
	dp.putChainIfChanged(dir, id, chain, rules)
}

func (dp *dispatch) putChainIfChanged(dir Direction, id, chain string, rules []nft.Rule) {
	if old := dp.w.chain(chain); old == nil || !sameRuleList(old.Rules, rules) {
		dp.w.putChain(&nft.Chain{Name: chain, Comment: id + " " + dir.String(), Rules: rules})
	}
}

// addElements sends pod id's addresses of dir to its chain, except those
// the conflict rule decides.
func (dp *dispatch) addElements(dir Direction, id, chain string, addrs []netip.Addr) {
	for _, a := range addrs {
		f := familyOf(a)
		owner, taken := dp.owner[dir][f][a]
		if dp.m.ips.conflicted(a) || (taken && owner != id) {
			// Other pods claim the address too, or did until this
			// operation: resyncConflicts sets its element.
			continue
		}
		if !taken {
			dp.owner[dir][f][a] = id
			e := addrElement(a)
			e.Verdict = &nft.Verdict{Kind: nft.VerdictGoto, Chain: chain}
			dp.w.addElement(vmapName(dir, f), e)
		}
	}
}

func sameRuleList(a, b []nft.Rule) bool {
	return slices.EqualFunc(a, b, nft.SameRule)
}
