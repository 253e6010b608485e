package enforcer

import (
	"strconv"

	"github.com/nftwarden/nftwarden/nft"
)

// The verdict log of the program (PROGRAM.md, "Logging, audit and
// counters"): what every policy drop site ends in, the shared chains that
// copy a dropped (or, in audit mode, accepted) new connection to the NFLOG
// group, the limit that bounds what logging costs a node, and the flow log
// of allowed new connections.

// Drop sites: where the program drops a new connection for policy, named in
// the shared chains and in the NFLOG prefixes.
const (
	siteNP       = "np"       // a pod chain's default deny (NetworkPolicy isolation)
	siteAdmin    = "admin"    // a Deny rule of the Admin tier
	siteBaseline = "baseline" // a Deny rule of the Baseline tier
	siteClaimed  = "claimed"  // an address claimed by pods judged differently (conflicts.go)
	// siteUnknown: an address of the node's pod CIDRs that is no known
	// local pod's (firstpacket.go). Its chains exist only while
	// first-packet isolation is on.
	siteUnknown = "unknown"
)

// dropSites are the sites whose chains exist while the log (or node-wide
// audit) is on, whatever the program holds.
var dropSites = []string{siteNP, siteAdmin, siteBaseline, siteClaimed}

// Defaults of Config.LogRate and Config.LogBurst.
const (
	// DefaultLogRate is the packets per second a node copies to the log
	// group at most (deny and audit log together; the flow log has its own
	// bucket of the same size).
	DefaultLogRate = 100
	// DefaultLogBurst is how many packets more the log takes at once.
	DefaultLogBurst = 200
)

// Log prefixes: "nftw <deny|audit|allow> <in|eg|-> <np|admin|baseline|claimed|unknown|flow>".
const logPrefix = "nftw "

// chainFlowLog is the base chain of the flow log.
const chainFlowLog = "flow-log"

// logging is the compiler part that owns the verdict log: the shared deny
// or audit chains of every drop site (while Config.LogDenied or
// Config.Audit is on), the limit objects, and the flow-log base chain.
type logging struct {
	w      *writer
	group  uint16
	denied bool // Config.LogDenied
	audit  bool // Config.Audit: every policy in audit mode
	// limit is the deny log's limit object, shared by every deny and audit
	// log rule of the node.
	limit string
	rate  uint64
	burst uint32
	// nAudited counts the policies in per-policy audit mode (annotation);
	// the limit object lives while one does or the log is on.
	nAudited int
}

func newLogging(w *writer, cfg *Config) *logging {
	rate, burst := cfg.LogRate, cfg.LogBurst
	if rate == 0 {
		rate = DefaultLogRate
	}
	if burst == 0 {
		burst = DefaultLogBurst
	}
	l := &logging{w: w, group: cfg.LogGroup, denied: cfg.LogDenied, audit: cfg.Audit, rate: rate, burst: burst,
		limit: limitName("deny-log", rate, burst)}
	for _, site := range dropSites {
		l.putSiteChains(site)
	}
	l.syncLimit()
	if cfg.LogAllowed {
		flow := limitName("flow-log", rate, burst)
		w.putObject(&nft.Object{Name: flow, Comment: "flow log: allowed new connections per node", Limit: &nft.LimitObject{Rate: rate, Unit: nft.PerSecond, Burst: burst}})
		w.putChain(&nft.Chain{Name: chainFlowLog, Comment: "flow log: new connections the policy (egress and ingress) let through",
			Base: &nft.BaseChain{Hook: nft.HookForward, Priority: nft.PriorityFilter + 2, Policy: nft.VerdictAccept},
			Rules: []nft.Rule{{Exprs: append([]nft.Expr{nft.MatchCtState{States: nft.CtNew}, nft.LimitRef{Name: flow}},
				nft.Log{Prefix: logPrefix + "allow - flow", Group: l.group, NFLog: true})}}})
	}
	return l
}

// limitName names a limit object by its definition (objects are immutable:
// another rate is another object).
func limitName(role string, rate uint64, burst uint32) string {
	return role + "-" + strconv.FormatUint(rate, 10) + "-" + strconv.FormatUint(uint64(burst), 10)
}

// putSiteChains puts the shared chains of a drop site, one per direction,
// while the log or node-wide audit is on: they log the connection and drop
// it (audit: let it through, allowVerdict).
func (l *logging) putSiteChains(site string) {
	if !l.audit && !l.denied {
		return
	}
	mode, what := "deny", "drops"
	if l.audit {
		mode, what = "audit", "would drop (audit mode: accepted)"
	}
	for _, dir := range directions {
		verdict := nft.Verdict{Kind: nft.VerdictDrop}
		if l.audit {
			verdict = allowVerdict(dir)
		}
		l.w.putChain(&nft.Chain{Name: l.siteChain(dir, site),
			Comment: "new connections policy " + what + ", logged: " + dir.String() + " " + site,
			Rules: []nft.Rule{
				{Exprs: l.logExprs(mode, dir.short(), site)},
				{Exprs: []nft.Expr{verdict}},
			}})
	}
}

// deleteSiteChains deletes the shared chains of a drop site that exists
// only while part of the program does (siteUnknown).
func (l *logging) deleteSiteChains(site string) {
	if !l.audit && !l.denied {
		return
	}
	for _, dir := range directions {
		l.w.deleteChain(l.siteChain(dir, site))
	}
}

// siteChain is the shared chain a drop site goes to when logging.
func (l *logging) siteChain(dir Direction, site string) string {
	if l.audit {
		return "audit-" + dir.short() + "-" + site
	}
	return "deny-" + dir.short() + "-" + site
}

// logExprs are the expressions of a log rule: the shared limit, then the
// NFLOG copy with its prefix.
func (l *logging) logExprs(mode, dir, site string) []nft.Expr {
	return []nft.Expr{nft.LimitRef{Name: l.limit}, nft.Log{Prefix: logPrefix + mode + " " + dir + " " + site, Group: l.group, NFLog: true}}
}

// dropVerdict is how a drop site of dir ends: drop, or a goto to its shared
// deny (or audit) chain when the log (or node-wide audit) is on.
func (l *logging) dropVerdict(dir Direction, site string) nft.Verdict {
	if !l.audit && !l.denied {
		return nft.Verdict{Kind: nft.VerdictDrop}
	}
	return nft.Verdict{Kind: nft.VerdictGoto, Chain: l.siteChain(dir, site)}
}

// auditLog is the rule tail that logs what an audited policy would drop at
// site: it never decides.
func (l *logging) auditLog(dir Direction, site string) []nft.Expr {
	return l.logExprs("audit", dir.short(), site)
}

// audited says whether a policy whose annotation asks for audit mode is
// audited apart from the rest: with node-wide audit every policy is
// compiled as enforced and every drop site logs and accepts instead, which
// is exactly audit mode for all of them.
func (l *logging) audited(annotated bool) bool { return annotated && !l.audit }

// countAudited follows a policy entering (+1) or leaving (-1) per-policy
// audit mode.
func (l *logging) countAudited(delta int) {
	l.nAudited += delta
	l.syncLimit()
}

// syncLimit keeps the deny log's limit object while something logs.
func (l *logging) syncLimit() {
	want := l.denied || l.audit || l.nAudited > 0
	has := l.w.object(l.limit) != nil
	switch {
	case want && !has:
		l.w.putObject(&nft.Object{Name: l.limit, Comment: "deny and audit log: new connections per node",
			Limit: &nft.LimitObject{Rate: l.rate, Unit: nft.PerSecond, Burst: l.burst}})
	case !want && has:
		l.w.deleteObject(l.limit)
	}
}
