package enforcer

import (
	"log/slog"
	"slices"
	"strings"

	"github.com/nftwarden/nftwarden/nft"
)

// Per-policy audit mode (PROGRAM.md, "Logging, audit and counters"): a
// NetworkPolicy or ClusterNetworkPolicy annotated
// nftwarden.io/enforcement: audit changes no verdict; what it would deny is
// logged ("nftw audit ...") and accepted.

// EnforcementAnnotation is the annotation that puts a NetworkPolicy or a
// ClusterNetworkPolicy in audit mode when its value is EnforcementAudit.
// Absent, or any other value, the policy is enforced (an unknown value is
// logged as a warning).
const EnforcementAnnotation = "nftwarden.io/enforcement"

// Values of EnforcementAnnotation.
const (
	EnforcementAudit   = "audit"
	EnforcementEnforce = "enforce"
)

// auditAnnotated reports whether a policy's annotations put it in audit
// mode; any value but EnforcementAudit enforces (fail closed).
func auditAnnotated(annotations map[string]string) bool {
	return annotations[EnforcementAnnotation] == EnforcementAudit
}

// warnEnforcement logs an enforcement annotation of unknown value (the
// policy is enforced), once per version of the policy stored.
func warnEnforcement(log *slog.Logger, annotations map[string]string, kind, id string) {
	if v, ok := annotations[EnforcementAnnotation]; ok && v != EnforcementAudit && v != EnforcementEnforce {
		log.Warn("unknown enforcement annotation value; the policy is enforced", "kind", kind, "policy", id,
			"annotation", EnforcementAnnotation, "value", v)
	}
}

// npAudits owns the audit chains of NetworkPolicies: for a local pod and
// direction that only audited policies isolate, the pod chain jumps to the
// chain of that set of policies (aud-<in|eg>-<hash of the set>), shared by
// every pod with the same set. It holds their rules inline, ending in
// return where the policy chain accepts (the peer chains of the groups
// accept, which would end the evaluation), and last a rule that logs: it is
// reached exactly when no audited policy would allow the connection, and
// returns to the pod chain, which goes on as if they did not exist.
type npAudits struct {
	w      *writer
	fams   *familySet
	sets   ruleSets
	log    *logging
	chains map[string]*audChain
	// byPod[dir] is the chain each local pod uses.
	byPod [2]map[string]*audChain
}

// audChain is one audit chain and the policies whose rules it holds.
type audChain struct {
	name  string
	dir   Direction
	pols  []*policy // sorted by ID
	users int
}

func newNPAudits(w *writer, fams *familySet, sets ruleSets, log *logging) *npAudits {
	return &npAudits{w: w, fams: fams, sets: sets, log: log, chains: map[string]*audChain{},
		byPod: [2]map[string]*audChain{{}, {}}}
}

// use makes pod id's chain of dir the audit chain of pols (sorted by ID, at
// least one) and returns its name, writing it if it is new or its rules
// changed.
func (na *npAudits) use(id string, dir Direction, pols []*policy) string {
	ids := make([]string, len(pols))
	for i, p := range pols {
		ids[i] = p.id
	}
	name := "aud-" + dir.short() + "-" + shortHash(ids...)
	if cur := na.byPod[dir][id]; cur == nil || cur.name != name {
		na.release(id, dir)
		ac := na.chains[name]
		if ac == nil {
			ac = &audChain{name: name, dir: dir}
			na.chains[name] = ac
		}
		ac.users++
		na.byPod[dir][id] = ac
	}
	ac := na.chains[name]
	ac.pols = pols
	na.write(ac)
	return name
}

// release drops pod id's use of an audit chain of dir, deleting the chain
// with its last user.
func (na *npAudits) release(id string, dir Direction) {
	ac := na.byPod[dir][id]
	if ac == nil {
		return
	}
	delete(na.byPod[dir], id)
	if ac.users--; ac.users == 0 {
		delete(na.chains, ac.name)
		na.w.deleteChain(ac.name)
	}
}

// refresh rewrites every audit chain (the compiled families changed).
func (na *npAudits) refresh() {
	for _, ac := range na.chains {
		na.write(ac)
	}
}

// write puts an audit chain if its rules differ from the desired state's.
func (na *npAudits) write(ac *audChain) {
	var rules []nft.Rule
	ids := make([]string, len(ac.pols))
	for i, p := range ac.pols {
		ids[i] = p.id
		if d := p.dirs[ac.dir]; d != nil {
			rules = append(rules, d.buildRulesEnding(*na.fams, nft.Verdict{Kind: nft.VerdictReturn}, na.sets)...)
		}
	}
	rules = append(rules, nft.Rule{Exprs: na.log.auditLog(ac.dir, siteNP), Comment: "no audited policy allows it"})
	comm := "audited policies " + strings.Join(ids, ", ") + " " + ac.dir.String()
	if old := na.w.chain(ac.name); old == nil || old.Comment != comment(comm) || !sameRuleList(old.Rules, rules) {
		na.w.putChain(&nft.Chain{Name: ac.name, Comment: comm, Rules: rules})
	}
}

// splitAudited splits the policies selecting a pod (sorted by ID) into those
// enforced and those audited apart, each sorted by ID.
func (l *logging) splitAudited(pols []*policy) (enforced, audited []*policy) {
	isAudited := func(p *policy) bool { return l.audited(p.rec.Audit) }
	if !slices.ContainsFunc(pols, isAudited) {
		// The common case, without copying: a pod that 2,000 policies
		// select has its chain rebuilt on each change of one of them.
		return pols, nil
	}
	for _, p := range pols {
		if isAudited(p) {
			audited = append(audited, p)
		} else {
			enforced = append(enforced, p)
		}
	}
	return enforced, audited
}
