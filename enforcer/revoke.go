package enforcer

import (
	"context"
	"fmt"
	"net/netip"
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/nft"
)

// FlowTable is the node's connection tracking table as RevokeDenied needs
// it; *nft.Conntrack implements it over netlink.
type FlowTable interface {
	// DeleteFlows reads every tracked TCP, UDP and SCTP connection once,
	// calls match with each (as the forward hook saw it: see nft.Flow) and
	// deletes those for which it returns true. It returns how many entries
	// it deleted and examined; after an error the counts say how far it got.
	DeleteFlows(ctx context.Context, match func(nft.Flow) bool) (deleted, examined int, err error)
}

var _ FlowTable = (*nft.Conntrack)(nil)

// RevokeResult says what a RevokeDenied sweep did.
type RevokeResult struct {
	Examined int // conntrack entries read
	Deleted  int // entries of denied connections deleted (Revived included)
	// Revived counts the entries selected for deletion because they were a
	// UDP flow revoked shortly before, come back reversed.
	Revived  int
	Duration time.Duration
	// FollowUp is when RevokeDenied should run again to delete the revoked
	// UDP flows that replies in flight may have revived (see RevokeDenied);
	// the zero time when no flow is watched.
	FollowUp time.Time
}

// RevokeDenied deletes the conntrack entries of the connections that this
// node's program denies now, so that connections opened before a policy
// change stop: the base chain accepts established connections before any
// policy, and an entry lives for days. After the delete, the connection's
// next packet is new to conntrack and the policy chains drop it.
//
// A connection is revoked here when its source is a local active pod
// (spec.nodeName is Config.NodeName) whose egress denies it, or its
// destination is one whose ingress denies it, as Decide answers from the
// model now. Connections of other nodes' pods are left to those nodes'
// daemons, and connections between a pod and its own node (nft.Flow.Local)
// are never revoked: the node is not subject to policy.
//
// After the delete, the side that keeps its rights may send first (a server
// pushing to a client that lost its permission, or answering it). Its
// packet is new to conntrack and would create the entry again, reversed,
// judged as that side's own new connection, which policy mostly allows; the
// revoked side's packets would then pass as replies. For TCP the program
// drops such a packet (PROGRAM.md: a segment picked up mid-stream from a pod
// isolated for ingress, or to one isolated for egress). UDP has no such
// mark: a reply in flight at the delete revives the flow. So RevokeDenied
// remembers the UDP flows it deleted, and its next calls delete any entry
// with the exact reversed tuple, for a second after the delete (longer while
// they keep finding one): call it again at RevokeResult.FollowUp, as the
// daemon does. What remains is a flow revived at each of maxRevivals deletes
// in a row (a peer that keeps sending to that exact port pair on its own, or
// answers nearly always in flight), which is then the peer's flow, allowed.
//
// The model may change during the sweep, which does not hold the engine lock
// across the kernel dump: the local pods isolated for each direction are
// read once at the start, and each connection of one of them is judged
// under the lock, with the model as it is then. A sweep run after every
// Flush whose result Restricts (and once after the first Reconcile) revokes
// what each change denied. Sweeps are meant to run one at a time (the
// FlowTable may serialise them anyway); concurrent calls are safe.
func (e *Engine) RevokeDenied(ctx context.Context, t FlowTable) (RevokeResult, error) {
	start := time.Now()
	egress, ingress := e.isolatedAddrs()
	watched := e.revivals.watched()
	var revokedUDP, revived []nft.Flow
	// Many entries share a verdict (connections of one client to one
	// port): each distinct flow is judged once per sweep.
	verdicts := map[Flow]bool{}
	deleted, examined, err := t.DeleteFlows(ctx, func(f nft.Flow) bool {
		if f.Local {
			return false
		}
		if _, ok := watched[f]; ok {
			revived = append(revived, f)
			return true
		}
		_, eg := egress[f.Src]
		_, in := ingress[f.Dst]
		if !eg && !in {
			return false
		}
		proto, ok := protocolNames[f.Protocol]
		if !ok {
			return false
		}
		flow := Flow{Src: f.Src, Dst: f.Dst, Protocol: proto, Port: f.DstPort}
		denied, seen := verdicts[flow]
		if !seen {
			denied = e.deniedHere(flow, eg, in)
			verdicts[flow] = denied
		}
		if denied && f.Protocol == nft.ProtoUDP {
			revokedUDP = append(revokedUDP, f)
		}
		return denied
	})
	end := time.Now()
	res := RevokeResult{Examined: examined, Deleted: deleted, Revived: len(revived), Duration: end.Sub(start),
		FollowUp: e.revivals.update(start, end, revokedUDP, revived)}
	if err != nil {
		return res, fmt.Errorf("enforcer: revoke denied connections (%d of %d entries deleted): %w", deleted, examined, err)
	}
	return res, nil
}

var protocolNames = map[uint8]corev1.Protocol{
	nft.ProtoTCP:  corev1.ProtocolTCP,
	nft.ProtoUDP:  corev1.ProtocolUDP,
	nft.ProtoSCTP: corev1.ProtocolSCTP,
}

// isolatedAddrs returns the addresses of the dispatch maps of the desired
// program: the local pods isolated for egress and for ingress. Only these
// can be denied here; every other connection (most of a node's in a cluster
// where few pods are isolated) is answered without the lock or Decide, which
// costs tens of microseconds (it reads the policies as written). A pod that
// becomes isolated during the sweep is the next sweep's: the flush that
// isolated it requests one.
func (e *Engine) isolatedAddrs() (egress, ingress map[netip.Addr]struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	addrs := func(dir Direction) map[netip.Addr]struct{} {
		out := map[netip.Addr]struct{}{}
		for _, f := range families {
			set := e.c.w.desired.Sets[vmapName(dir, f)]
			if set == nil {
				continue
			}
			for el := range set.Elements.Values() {
				if len(el.Key) == 0 {
					continue
				}
				if a, ok := netip.AddrFromSlice(el.Key[0]); ok {
					out[a.Unmap()] = struct{}{}
				}
			}
		}
		return out
	}
	return addrs(Egress), addrs(Ingress)
}

// deniedHere reports whether this node's program drops a new connection f,
// whose source is isolated here for egress (egress) or destination for
// ingress (ingress): Decide denies it in such a direction, for the local pod
// it concerns.
func (e *Engine) deniedHere(f Flow, egress, ingress bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	node := unique.Make(e.cfg.NodeName)
	d := decide(e.m, f, e.cfg.Audit)
	return egress && !d.Egress.Allowed && e.isLocalPod(d.Egress.Pod, node) ||
		ingress && !d.Ingress.Allowed && e.isLocalPod(d.Ingress.Pod, node)
}

// isLocalPod reports whether the pod with ID id (as a Decision names it) is
// scheduled to this node: of several pods claiming one address, Decide
// picks one, and only its node enforces the verdict.
func (e *Engine) isLocalPod(id string, node unique.Handle[string]) bool {
	p := e.m.pod(id)
	return p != nil && p.Node == node
}

// restricts reports whether applying tx to a table whose sets are those of
// state may have denied a connection that was allowed before, so that the
// conntrack entries must be swept: element deletions (from peer, ipBlock,
// port or named-port sets, or dispatch maps), dispatch-map additions (a pod
// becomes isolated), replaced rules of existing chains, new base chains
// (hooked at once) and deletions of chains or sets.
//
// What denies nothing: new regular chains and their rules (only a jump, goto
// or dispatch element reaches them, and adding one of those is classified on
// its own), new sets, and elements added to a plain set, which can only
// allow more: every plain set of the program is matched by rules that accept
// (TestPlainSetsOnlyAllow holds the compiler to this; the audit chains'
// rules that return instead, and the audit log rules of class chains, which
// may look a named-port set up with != and have no verdict, only decide
// whether to log), but for those of first-packet isolation (firstpacket.go):
// an address added to the pod CIDRs is dropped unless a local pod has it
// (a restriction), one added to the known local addresses can only allow
// more (it is matched with !=). Named objects
// (counters, limits), added or deleted, decide nothing: the rules that
// name them are classified on their own. Most changes on a node whose pods
// a change does not concern are of this kind.
func restricts(tx *nft.Transaction, state *nft.State) bool {
	created := map[string]bool{}
	for _, op := range tx.Ops {
		switch op.Kind {
		case nft.OpAddChain:
			if op.Chain == nil || op.Chain.Base != nil {
				return true
			}
			created[op.Name] = true
		case nft.OpAddSet, nft.OpAddObject, nft.OpDeleteObject:
		case nft.OpReplaceRules:
			if !created[op.Name] {
				return true
			}
		case nft.OpAddElements:
			if s := state.Sets[op.Name]; s == nil || s.VerdictMap || isPodCIDRsSet(s.Name) {
				return true
			}
		default:
			return true
		}
	}
	return false
}
