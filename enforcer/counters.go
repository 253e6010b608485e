package enforcer

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/nftwarden/nftwarden/nft"
)

// Named counters (Config.Counters; PROGRAM.md, "Logging, audit and
// counters"). Only new connections reach the chains that count, so a
// counter costs a new connection one expression per counted chain it
// passes, and established traffic nothing.

// CounterRole is what a named counter counts.
type CounterRole string

// Counter roles.
const (
	// CounterEntered counts the new connections that entered a
	// NetworkPolicy's chain (first rule).
	CounterEntered CounterRole = "entered"
	// CounterNotAllowed counts those that left it without being allowed
	// (last rule): the policy allowed entered - not-allowed.
	CounterNotAllowed CounterRole = "not-allowed"
	// CounterDefaultDeny counts the new connections a pod chain dropped
	// because no NetworkPolicy isolating the pod (Policies) allowed them.
	CounterDefaultDeny CounterRole = "default-deny"
	// CounterRule counts the new connections a ClusterNetworkPolicy rule
	// decided, with its Action.
	CounterRule CounterRole = "rule"
)

// Counter kinds.
const (
	KindNetworkPolicy        = "NetworkPolicy"
	KindClusterNetworkPolicy = "ClusterNetworkPolicy"
)

// CounterInfo says what one named counter of the node's program counts.
type CounterInfo struct {
	// Name is the counter object's name in the table.
	Name string
	// Kind is KindNetworkPolicy or KindClusterNetworkPolicy.
	Kind string
	// Namespace and Policy name the policy (Namespace "" for a
	// ClusterNetworkPolicy); Policy is "" for a default deny.
	Namespace, Policy string
	Direction         Direction
	Role              CounterRole
	// Pod ("ns/name") and Policies (the NetworkPolicies isolating it,
	// "ns/name", sorted) describe a default deny.
	Pod      string
	Policies []string
	// Rule is the rule's index (CounterRule), Action its action as the
	// program takes it: "Accept", "Deny" or "Pass" (a rule that fails
	// closed counts as "Deny").
	Rule   int
	Action string
}

// counters is the compiler part that owns the named counters and what
// they mean.
type counters struct {
	w    *writer
	on   bool
	info map[string]CounterInfo
	// The counters of ClusterNetworkPolicy rules live while a class chain
	// counts into them: refs counts the chains naming each, byClass the
	// counters of each chain.
	refs    map[string]int
	byClass map[*tierClass][]string
}

func newCounters(w *writer, on bool) *counters {
	return &counters{w: w, on: on, info: map[string]CounterInfo{}, refs: map[string]int{}, byClass: map[*tierClass][]string{}}
}

// use makes class c's chain count into cis (nil: the chain goes), taking
// the new counters before releasing the old ones.
func (cs *counters) use(c *tierClass, cis []CounterInfo) {
	old := cs.byClass[c]
	names := make([]string, 0, len(cis))
	for _, ci := range cis {
		if slices.Contains(names, ci.Name) {
			continue // one rule, several ports
		}
		names = append(names, ci.Name)
		if !slices.Contains(old, ci.Name) {
			cs.refs[ci.Name]++
		}
		cs.ref(ci)
	}
	for _, n := range old {
		if !slices.Contains(names, n) {
			if cs.refs[n]--; cs.refs[n] <= 0 {
				delete(cs.refs, n)
				cs.drop(n)
			}
		}
	}
	if len(names) == 0 {
		delete(cs.byClass, c)
	} else {
		cs.byClass[c] = names
	}
}

// ref puts the counter described by ci (its meaning may change, the
// object stays) and returns its name.
func (cs *counters) ref(ci CounterInfo) string {
	if _, ok := cs.info[ci.Name]; !ok {
		cs.w.putObject(&nft.Object{Name: ci.Name, Comment: counterComment(ci), Counter: &nft.CounterObject{}})
	}
	cs.info[ci.Name] = ci
	return ci.Name
}

// drop deletes a counter (absent: nothing).
func (cs *counters) drop(name string) {
	if _, ok := cs.info[name]; ok {
		delete(cs.info, name)
		cs.w.deleteObject(name)
	}
}

// list is every counter's meaning, by name.
func (cs *counters) list() []CounterInfo {
	out := make([]CounterInfo, 0, len(cs.info))
	for _, name := range slices.Sorted(maps.Keys(cs.info)) {
		ci := cs.info[name]
		ci.Policies = slices.Clone(ci.Policies)
		out = append(out, ci)
	}
	return out
}

// counterComment is a counter object's comment: what it counts.
func counterComment(ci CounterInfo) string {
	switch ci.Role {
	case CounterDefaultDeny:
		return "default deny of " + ci.Pod + " " + ci.Direction.String()
	case CounterRule:
		return "clusternetworkpolicy " + ci.Policy + " " + ci.Direction.String() + " rule " + strconv.Itoa(ci.Rule) + " (" + strings.ToLower(ci.Action) + ")"
	}
	return "networkpolicy " + ci.Namespace + "/" + ci.Policy + " " + ci.Direction.String() + " " + string(ci.Role)
}

// Counter names: a prefix per role, then the object, as chain names are
// made (readableName: cut and hashed when long). Counters are objects of
// their own namespace in nft; the prefixes keep the roles apart.

// policyCounters are the entered and not-allowed counters of a
// NetworkPolicy direction's chain (npe-, npn-<in|eg>-<ns>/<policy>).
func (cs *counters) policyCounters(d *policyDir) (entered, notAllowed string) {
	base := CounterInfo{Kind: KindNetworkPolicy, Namespace: d.pol.ns, Policy: d.pol.rec.Name, Direction: d.dir}
	e, n := base, base
	e.Name, e.Role = readableName("npe-"+d.dir.short()+"-", d.pol.id), CounterEntered
	n.Name, n.Role = readableName("npn-"+d.dir.short()+"-", d.pol.id), CounterNotAllowed
	return cs.ref(e), cs.ref(n)
}

func (cs *counters) dropPolicyCounters(d *policyDir) {
	cs.drop(readableName("npe-"+d.dir.short()+"-", d.pol.id))
	cs.drop(readableName("npn-"+d.dir.short()+"-", d.pol.id))
}

// defaultDenyName is the counter of a pod chain's default deny
// (dd-<in|eg>-<ns>/<pod>).
func defaultDenyName(dir Direction, podID string) string {
	return readableName("dd-"+dir.short()+"-", podID)
}

// ruleCounterName is the counter of a ClusterNetworkPolicy rule: tier,
// direction, policy, index and action (a rule whose action changes counts
// into another counter): "adm-in-<policy>/<index>-deny".
func ruleCounterName(r *tierRule) string {
	return readableName(r.cnp.parsed.tier.String()[:3]+"-"+r.dir.short()+"-",
		r.cnp.ID+"/"+strconv.Itoa(r.r.index)+"-"+strings.ToLower(string(r.action)))
}
