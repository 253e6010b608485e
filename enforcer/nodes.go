package enforcer

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Nodes in the model: what the experimental channel's nodes peers of
// ClusterNetworkPolicy egress rules match (cnp.go), the addresses of the Node
// objects whose labels the peer's selector matches. Only the name, the labels
// and the InternalIP and ExternalIP addresses of status.addresses are kept.

// nodeRecord is what the engine keeps of a Node. Records are immutable once
// inserted: an update inserts a new record.
type nodeRecord struct {
	Name   string
	Labels labels.Set
	// Addrs are the InternalIP and ExternalIP addresses, unmapped, sorted,
	// without duplicates.
	Addrs []netip.Addr
}

// nodeFromAPI parses a Node; an address that does not parse is left out (no
// peer matches it: fail closed) and reported.
func nodeFromAPI(n *corev1.Node) (*nodeRecord, error) {
	rec := &nodeRecord{Name: n.Name, Labels: labels.Set(n.Labels)}
	var errs []error
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		addr, err := netip.ParseAddr(a.Address)
		if err != nil || addr.Zone() != "" {
			errs = append(errs, fmt.Errorf("address %q is not an IP address", a.Address))
			continue
		}
		rec.Addrs = append(rec.Addrs, addr.Unmap())
	}
	slices.SortFunc(rec.Addrs, netip.Addr.Compare)
	rec.Addrs = slices.Compact(rec.Addrs)
	return rec, errors.Join(errs...)
}

func sameNode(a, b *nodeRecord) bool {
	return a != nil && b != nil && labels.Equals(a.Labels, b.Labels) && slices.Equal(a.Addrs, b.Addrs)
}

func (m *model) node(name string) *nodeRecord { return byID[*nodeRecord](m, tableNodes, name) }

// nodes returns every Node record, sorted by name.
func (m *model) nodes() []*nodeRecord { return all[*nodeRecord](m, tableNodes, indexID) }

// nodeAddrs returns the addresses of the nodes whose labels sel matches.
func (m *model) nodeAddrs(sel labels.Selector) []netip.Addr {
	var out []netip.Addr
	for _, n := range m.nodes() {
		if sel.Matches(n.Labels) {
			out = append(out, n.Addrs...)
		}
	}
	return out
}

// UpsertNode adds or updates a Node: its labels and its InternalIP and
// ExternalIP addresses, which the nodes peers of ClusterNetworkPolicy egress
// rules match (experimental channel, Config.ClusterNetworkPolicyExperimental).
// A malformed address is left out and reported. Nodes are kept whatever the
// channel, so that turning it on needs no other events.
func (e *Engine) UpsertNode(n *corev1.Node) error {
	if n == nil || n.Name == "" {
		return errors.New("enforcer: upsert node: nil or unnamed node")
	}
	rec, perr := nodeFromAPI(n)
	if perr != nil {
		perr = fmt.Errorf("enforcer: node %s: %w", n.Name, perr)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.m.node(rec.Name)
	if sameNode(old, rec) {
		return perr
	}
	if err := e.m.put(tableNodes, rec.Name, rec); err != nil {
		err = fmt.Errorf("enforcer: upsert node %s: %w", rec.Name, err)
		e.log.Error("node not stored", "node", rec.Name, "error", err)
		return err
	}
	if perr != nil {
		e.log.Error("node address left out", "node", rec.Name, "error", perr)
	}
	e.c.nodeChanged(old, rec)
	e.c.collectGroups()
	return perr
}

// DeleteNode removes a Node; a missing one is not an error.
func (e *Engine) DeleteNode(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.m.node(name)
	if old == nil {
		return
	}
	e.m.remove(tableNodes, name)
	e.c.nodeChanged(old, nil)
	e.c.collectGroups()
}
