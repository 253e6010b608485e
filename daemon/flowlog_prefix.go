package daemon

import (
	"slices"
	"strings"

	"github.com/nftwarden/nftwarden/enforcer"
)

// The NFLOG prefixes of the compiled program (enforcer/PROGRAM.md, "Logging,
// audit and counters"), exactly:
//
//	nftw <deny|audit|allow> <in|eg|-> <np|admin|baseline|claimed|unknown|flow>
//
// deny: dropped by policy; audit: policy would drop it, accepted (audit
// mode); allow: a new connection let through (the flow log, direction "-",
// site "flow"). The site is where the program decided: a pod chain's default
// deny (np), a tier's Deny rule (admin, baseline), an address claimed by
// pods that policy judges differently (claimed), an address of the node's
// pod CIDRs that is no known pod's (unknown: first-packet isolation; eg for
// the source, in for the destination).

// logAction is the first word after "nftw".
type logAction string

const (
	actionDeny  logAction = "deny"
	actionAudit logAction = "audit"
	actionAllow logAction = "allow"
)

// Verdicts of the log lines (the verdict field, and the label of
// nftwarden_log_events_total).
const (
	verdictDenied    = "denied"
	verdictWouldDeny = "would-deny"
	verdictAllowed   = "allowed"
)

// Sites of the prefixes.
const (
	siteNetworkPolicy = "np"
	siteAdmin         = "admin"
	siteBaseline      = "baseline"
	siteClaimed       = "claimed"
	siteUnknown       = "unknown"
	siteFlow          = "flow"
)

// dropSites are the sites of deny and audit lines.
var dropSites = []string{siteNetworkPolicy, siteAdmin, siteBaseline, siteClaimed, siteUnknown}

// logPrefix is a parsed prefix. HasDirection is false for the flow log,
// which logs a connection once for both of its directions.
type logPrefix struct {
	Action       logAction
	Direction    enforcer.Direction
	HasDirection bool
	Site         string
}

// verdict is the log line's verdict for the action.
func (p logPrefix) verdict() string {
	switch p.Action {
	case actionDeny:
		return verdictDenied
	case actionAudit:
		return verdictWouldDeny
	}
	return verdictAllowed
}

// parseLogPrefix reads a prefix of the grammar above; anything else (a rule
// of another program logging to the same group, a newer program's word) is
// not ours to interpret.
func parseLogPrefix(s string) (logPrefix, bool) {
	words := strings.Fields(s)
	if len(words) != 4 || words[0] != "nftw" {
		return logPrefix{}, false
	}
	p := logPrefix{Action: logAction(words[1]), Site: words[3]}
	switch words[2] {
	case "in":
		p.Direction, p.HasDirection = enforcer.Ingress, true
	case "eg":
		p.Direction, p.HasDirection = enforcer.Egress, true
	case "-":
	default:
		return logPrefix{}, false
	}
	switch p.Action {
	case actionDeny, actionAudit:
		ok := p.HasDirection && slices.Contains(dropSites, p.Site)
		return p, ok
	case actionAllow:
		return p, !p.HasDirection && p.Site == siteFlow
	}
	return logPrefix{}, false
}
