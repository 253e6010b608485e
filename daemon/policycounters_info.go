package daemon

import (
	"strings"

	"github.com/nftwarden/nftwarden/enforcer"
)

// counterTerms says which series each named counter of the program adds to,
// from what the engine says the counters count (enforcer.CounterInfo):
//
//   - a NetworkPolicy's entered counter adds to its allowed series, its
//     not-allowed counter takes from it (the policy allowed what entered
//     its chain and did not leave it unallowed);
//   - a pod's default-deny counter adds to the denied series of every
//     NetworkPolicy isolating the pod (each of them denied it: the pod's
//     isolation is theirs together);
//   - a ClusterNetworkPolicy rule's counter adds to the series of its
//     action: Accept allowed, Deny denied, Pass passed.
func counterTerms(infos []enforcer.CounterInfo) map[string][]counterTerm {
	out := make(map[string][]counterTerm, len(infos))
	for _, ci := range infos {
		series := policySeries{Kind: ci.Kind, Namespace: ci.Namespace, Policy: ci.Policy, Direction: ci.Direction.String()}
		switch ci.Role {
		case enforcer.CounterEntered, enforcer.CounterNotAllowed:
			series.Verdict = counterAllowed
			sign := 1
			if ci.Role == enforcer.CounterNotAllowed {
				sign = -1
			}
			out[ci.Name] = []counterTerm{{Series: series, Sign: sign}}
		case enforcer.CounterDefaultDeny:
			for _, p := range ci.Policies {
				ns, name, _ := strings.Cut(p, "/")
				out[ci.Name] = append(out[ci.Name], counterTerm{Series: policySeries{Kind: enforcer.KindNetworkPolicy, Namespace: ns,
					Policy: name, Direction: series.Direction, Verdict: counterDenied}, Sign: 1})
			}
		case enforcer.CounterRule:
			switch ci.Action {
			case "Accept":
				series.Verdict = counterAllowed
			case "Pass":
				series.Verdict = counterPassed
			default: // Deny, and rules that fail closed
				series.Verdict = counterDenied
			}
			out[ci.Name] = []counterTerm{{Series: series, Sign: 1}}
		}
	}
	return out
}
