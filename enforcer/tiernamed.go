package enforcer

import (
	"slices"

	"github.com/nftwarden/nftwarden/nft"
)

// Named ports in the compiled tiers (experimental channel). A
// destinationNamedPort names a container port of the pod at the destination
// address (egress: the peer; ingress: the subject), whatever its protocol. A
// class chain matches it as `ip daddr . meta l4proto . th dport @named-...`
// against the every-pod named-port set of that name over TCP, UDP and SCTP
// (namedports.go): the set shared with NetworkPolicy rules of the same ports
// and with every tier rule of the name, kept up to date on pod changes by
// namedPorts. An address several pods claim is in no such set, so a named
// port matches nothing there (doc.go, "Two live pods claiming one address").
// Rules with a named port have only selector peers (cnp.go: with networks
// or nodes peers they fail closed), so the set is never asked about an
// address that is no pod's.

// tierNamedPorts holds the every-pod named-port sets that the class chains
// written on this node match: a set lives while a class chain names it, as
// a NetworkPolicy rule's lives while its policy selects a local pod, so a
// node does not mirror every pod's ports for a policy that does not concern
// it.
type tierNamedPorts struct {
	np      *namedPorts
	sets    map[string]*namedSet    // by port name
	refs    map[string]int          // class chains naming it
	byClass map[*tierClass][]string // the names each class chain matches
}

func newTierNamedPorts(np *namedPorts) tierNamedPorts {
	return tierNamedPorts{np: np, sets: map[string]*namedSet{}, refs: map[string]int{}, byClass: map[*tierClass][]string{}}
}

// namedPortNames lists the port names of r (each once).
func namedPortNames(r *cnpRule) []string {
	var out []string
	for _, p := range r.ports {
		if p.named != "" && !slices.Contains(out, p.named) {
			out = append(out, p.named)
		}
	}
	return out
}

// anyProtocol is a port name over every protocol a container port can have.
func anyProtocol(name string) []portName {
	return []portName{{Name: name, Proto: nft.ProtoTCP}, {Name: name, Proto: nft.ProtoUDP}, {Name: name, Proto: nft.ProtoSCTP}}
}

// everyFamily: the tiers' named sets are for both families the compiler
// programs (namedPorts leaves out a family no local pod has).
var everyFamily = familySet{true, true}

// acquireSet creates (or shares) the set of a port name.
func (tn *tierNamedPorts) acquireSet(name string) {
	ports := anyProtocol(name)
	tn.sets[name] = tn.np.acquireEveryKey(ports, everyPodNamedKey(ports, everyFamily), everyFamily)
}

// use makes class c's chain hold the sets of the named ports of rules (nil:
// the chain goes), taking the new names before dropping the old ones, so
// that a set both versions name is never deleted in between.
func (tn *tierNamedPorts) use(c *tierClass, rules []*tierRule) {
	var names []string
	for _, r := range rules {
		for _, n := range namedPortNames(r.r) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	old := tn.byClass[c]
	for _, n := range names {
		if !slices.Contains(old, n) {
			if tn.refs[n]++; tn.refs[n] == 1 {
				tn.acquireSet(n)
			}
		}
	}
	for _, n := range old {
		if !slices.Contains(names, n) {
			if tn.refs[n]--; tn.refs[n] <= 0 {
				tn.np.releaseEvery(tn.sets[n])
				delete(tn.sets, n)
				delete(tn.refs, n)
			}
		}
	}
	if len(names) == 0 {
		delete(tn.byClass, c)
	} else {
		tn.byClass[c] = names
	}
}

// rules are a class chain's rules for a named port: a lookup per family
// whose set exists, each followed by tail (a verdict, or a log).
func (tn *tierNamedPorts) rules(name string, tail []nft.Expr, ref string) []nft.Rule {
	var out []nft.Rule
	for _, f := range families {
		if l, ok := tn.lookup(name, f); ok {
			out = append(out, nft.Rule{Exprs: append([]nft.Expr{l}, tail...), Comment: ref})
		}
	}
	return out
}

// lookup is the match of a destination of family f against the set of a
// port name a class chain names (false when the family has none).
func (tn *tierNamedPorts) lookup(name string, f Family) (nft.Lookup, bool) {
	if ns := tn.sets[name]; ns != nil && ns.fams.has(f) {
		return tn.np.lookup(ns, f), true
	}
	return nft.Lookup{}, false
}

// familiesChanged re-creates the sets after the compiler's families changed
// (compiler.syncFamilies, between the policies' deactivation and their
// activation, so that both share the new sets), and rewrites the chains
// that name them.
func (t *tiers) familiesChanged() {
	tn := &t.named
	for name := range tn.sets {
		tn.np.releaseEvery(tn.sets[name])
		tn.acquireSet(name)
	}
	for c := range tn.byClass {
		t.touched[c] = struct{}{}
		t.rewrite[c] = struct{}{}
	}
}
