package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// Family selects the pod addresses of an in-process run.
type Family string

// Address families: single-stack IPv4 or IPv6, or dual-stack with IPv4 primary
// (every probe is then checked on both families).
const (
	IPv4      Family = "ipv4"
	IPv6      Family = "ipv6"
	DualStack Family = "dual"
)

// Model IP plan (documentation ranges only): pod with ordinal o (x/a = 0 ...
// z/c = 8) on node n (0 or 1) gets 198.18.<n+1>.<o+10> and
// 2001:db8:<n+1>::<o+10>.
func modelAddrs(m *Model, fam Family) map[PodRef][]netip.Addr {
	out := make(map[PodRef][]netip.Addr, len(m.Pods))
	for _, p := range m.Pods {
		n, o := byte(m.Node(p)+1), byte(m.Ordinal(p)+10)
		v4 := netip.AddrFrom4([4]byte{198, 18, n, o})
		v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, n, 15: o})
		switch fam {
		case IPv6:
			out[p] = []netip.Addr{v6}
		case DualStack:
			out[p] = []netip.Addr{v4, v6}
		default:
			out[p] = []netip.Addr{v4}
		}
	}
	return out
}

// NodeName is the name of model node n (0 or 1).
func NodeName(n int) string { return fmt.Sprintf("node-%d", n+1) }

// ModelCluster is an in-process Cluster without packets: one engine per node,
// each programming its own nft.Fake. A probe is answered twice: by the
// reference evaluator (egress as the source node sees it, ingress as the
// destination node sees it), and by tracing the packet through the compiled
// rulesets of the source and destination nodes (nft.Fake.Trace); when the two
// disagree the probe fails with both explanations. After every change each
// Fake must also hold exactly its engine's desired state.
type ModelCluster struct {
	m     *Model
	fam   Family
	ips   map[PodRef][]netip.Addr
	w     *world
	nodes []*modelNode

	mu sync.Mutex // serializes Apply against Probe
}

type modelNode struct {
	name string
	eng  *enforcer.Engine
	fake *nft.Fake
}

var _ Cluster = (*ModelCluster)(nil)

// NewModelCluster programs two nodes for model m.
func NewModelCluster(ctx context.Context, m *Model, fam Family) (*ModelCluster, error) {
	c := &ModelCluster{m: m, fam: fam, ips: modelAddrs(m, fam)}
	c.w = newWorld(m, c.ips, c.NodeOf)
	for n := range 2 {
		fake := nft.NewFake("nftwarden")
		eng, err := newEngine(NodeName(n), fake)
		if err != nil {
			return nil, fmt.Errorf("engine for %s: %w", NodeName(n), err)
		}
		if err := c.w.load(eng); err != nil {
			return nil, fmt.Errorf("%s: %w", NodeName(n), err)
		}
		c.nodes = append(c.nodes, &modelNode{name: NodeName(n), eng: eng, fake: fake})
	}
	if err := c.flush(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// NodeOf is the node name of a pod.
func (c *ModelCluster) NodeOf(p PodRef) string { return NodeName(c.m.Node(p)) }

// Addrs returns every pod's addresses (for an Oracle of the same model).
func (c *ModelCluster) Addrs() map[PodRef][]netip.Addr { return c.ips }

// PodIPs implements Cluster.
func (c *ModelCluster) PodIPs(p PodRef) ([]netip.Addr, error) {
	ips, ok := c.ips[p]
	if !ok {
		return nil, fmt.Errorf("pod %s is not part of the model", p)
	}
	return ips, nil
}

// Apply implements Cluster: every node's engine gets the same objects, then
// each flushes one transaction to its Fake.
func (c *ModelCluster) Apply(ctx context.Context, actions []Action) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range actions {
		fns, err := c.w.apply(a)
		if err != nil {
			return err
		}
		for _, n := range c.nodes {
			for _, fn := range fns {
				if err := fn(n.eng); err != nil {
					return fmt.Errorf("%s: %s: %w", n.name, a, err)
				}
			}
		}
	}
	return c.flush(ctx)
}

// flush sends each node's pending changes and checks that the incremental
// result equals the engine's full desired state (a delta that drifts from the
// desired state would otherwise only show up after a restart).
func (c *ModelCluster) flush(ctx context.Context) error {
	for _, n := range c.nodes {
		if _, err := n.eng.Flush(ctx); err != nil {
			return fmt.Errorf("%s: flush: %w", n.name, err)
		}
		got, err := n.fake.Read(ctx)
		if err != nil {
			return fmt.Errorf("%s: read fake: %w", n.name, err)
		}
		if d := nft.Diff(got, n.eng.Desired(), nil); d.Size() != 0 {
			return fmt.Errorf("%s: dataplane after incremental flush differs from desired state by %d operations", n.name, d.Size())
		}
	}
	return nil
}

// Probe implements Cluster. Dual-stack pods are probed on both families.
func (c *ModelCluster) Probe(ctx context.Context, from, to PodRef, port int, proto corev1.Protocol) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	src, dst := c.ips[from], c.ips[to]
	if len(src) == 0 || len(dst) == 0 {
		return false, fmt.Errorf("probe %s -> %s: unknown pod", from, to)
	}
	var verdict bool
	var errs []error
	for i := range min(len(src), len(dst)) {
		ok, err := c.probeAddr(from, to, src[i], dst[i], port, proto)
		if err != nil {
			errs = append(errs, err)
		}
		// The verdict is the primary family's. The secondary family may
		// legitimately differ (an ipBlock covers one family only), so there
		// only the evaluator and the dataplane must agree.
		if i == 0 {
			verdict = ok
		}
	}
	return verdict, errors.Join(errs...)
}

// ProbeNode implements Cluster: the flow leaves through the source node's
// forward hook only; the destination node receives it on input, where nothing
// is filtered. A pod's connection to its own node never crosses forward
// (enforcer/PROGRAM.md: always allowed), so it is allowed without a check.
// Dual-stack pods are probed on both families; the verdict is the primary's.
func (c *ModelCluster) ProbeNode(ctx context.Context, from PodRef, node, port int, proto corev1.Protocol) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	src := c.ips[from]
	if len(src) == 0 || node < 0 || node >= len(c.nodes) {
		return false, fmt.Errorf("probe %s -> node %d: unknown pod or node", from, node)
	}
	if c.m.Node(from) == node {
		return true, nil
	}
	sn := c.nodes[c.m.Node(from)]
	var verdict bool
	var errs []error
	for i, a := range src {
		dst := nodeAddrLike(node, a)
		d := sn.eng.Decide(enforcer.Flow{Src: a, Dst: dst, Protocol: proto, Port: uint16(port)})
		traced, why, err := tracePath(sn, sn, a, dst, port, proto)
		if err != nil {
			errs = append(errs, err)
		} else if traced != d.Allowed {
			errs = append(errs, fmt.Errorf("%s -> %s: dataplane says %v (%s) but evaluator says %v (%s)", a, dst, traced, why, d.Allowed, d.Reason))
		}
		if i == 0 {
			verdict = traced
		}
	}
	return verdict, errors.Join(errs...)
}

func (c *ModelCluster) probeAddr(from, to PodRef, src, dst netip.Addr, port int, proto corev1.Protocol) (bool, error) {
	flow := enforcer.Flow{Src: src, Dst: dst, Protocol: proto, Port: uint16(port)}
	sn, dn := c.nodes[c.m.Node(from)], c.nodes[c.m.Node(to)]
	// The evaluator: egress as the source node sees it, ingress as the
	// destination node sees it; every node holds the whole model, so both must
	// also give the same overall answer.
	ds, dd := sn.eng.Decide(flow), dn.eng.Decide(flow)
	decided := ds.Egress.Allowed && dd.Ingress.Allowed
	if ds.Allowed != dd.Allowed || ds.Allowed != decided {
		return decided, fmt.Errorf("evaluator inconsistent across nodes: %s says %v (%s), %s says %v (%s)",
			sn.name, ds.Allowed, ds.Reason, dn.name, dd.Allowed, dd.Reason)
	}
	// The dataplane: the packet leaves through the source node's forward hook
	// and enters through the destination node's (once when they are the same).
	traced, why, err := tracePath(sn, dn, src, dst, port, proto)
	if err != nil {
		return decided, err
	}
	if traced != decided {
		return traced, fmt.Errorf("dataplane says %v (%s) but evaluator says %v (%s)", traced, why, decided, ds.Reason)
	}
	return traced, nil
}
