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

// tierNamedPorts holds the every-pod named-port sets of the tiers' rules.
type tierNamedPorts struct {
	np   *namedPorts
	sets map[string]*namedSet // by port name
	refs map[string]int       // rules naming it
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

func (tn *tierNamedPorts) acquireName(name string) {
	if tn.refs[name]++; tn.refs[name] == 1 {
		ports := anyProtocol(name)
		tn.sets[name] = tn.np.acquireEveryKey(ports, everyPodNamedKey(ports, everyFamily), everyFamily)
	}
}

// acquire counts the named ports of rules (broken ones have none).
func (tn *tierNamedPorts) acquire(rules []*tierRule) {
	for _, r := range rules {
		for _, name := range namedPortNames(r.r) {
			tn.acquireName(name)
		}
	}
}

// release drops the rules' uses of their sets, and a set with its last.
func (tn *tierNamedPorts) release(rules []*tierRule) {
	for _, r := range rules {
		for _, name := range namedPortNames(r.r) {
			if tn.refs[name]--; tn.refs[name] <= 0 {
				tn.np.releaseEvery(tn.sets[name])
				delete(tn.sets, name)
				delete(tn.refs, name)
			}
		}
	}
}

// rules are a class chain's rules for a named port: a lookup per family
// whose set exists, each ending in v.
func (tn *tierNamedPorts) rules(name string, v nft.Verdict, ref string) []nft.Rule {
	ns := tn.sets[name]
	var out []nft.Rule
	for _, f := range families {
		if ns == nil || ns.names[f] == "" {
			continue
		}
		out = append(out, nft.Rule{Exprs: []nft.Expr{nft.Lookup{Fields: []nft.Field{f.daddr(), nft.FieldL4Proto, nft.FieldTHDport}, Set: ns.names[f]}, v}, Comment: ref})
	}
	return out
}

// familiesChanged re-creates the sets after the compiler's families changed
// (compiler.syncFamilies, between the policies' deactivation and their
// activation, so that both share the new sets), and rewrites the chains of
// the classes with a named port.
func (t *tiers) familiesChanged() {
	tn := &t.named
	for name := range tn.sets {
		tn.np.releaseEvery(tn.sets[name])
		ports := anyProtocol(name)
		tn.sets[name] = tn.np.acquireEveryKey(ports, everyPodNamedKey(ports, everyFamily), everyFamily)
	}
	for _, c := range t.classes {
		for _, id := range c.ids {
			if r := t.rules[id]; r != nil && len(namedPortNames(r.r)) > 0 {
				t.touched[c] = struct{}{}
				break
			}
		}
	}
}
