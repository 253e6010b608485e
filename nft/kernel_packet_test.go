package nft_test

// Packet tests: real TCP and UDP connections through a node namespace that the
// Kernel programs. Topology (routed, like Calico or Cilium in routing mode):
//
//	pod a  198.18.0.10 2001:db8::10  eth0 ── veth-a ┐
//	pod b  198.18.0.11 2001:db8::11  eth0 ── veth-b ┼─ node (forwarding on, nftables here)
//	pod c  198.18.0.12 2001:db8::12  eth0 ── veth-c ┘
//
// Routed: every node-side veth carries the gateway 198.19.255.1/32 and
// 2001:db8:ffff::1/128; pods route everything to it; the node has a /32 and a
// /128 host route per pod. Bridged: the node's veths are ports of br0 and the
// pods share 198.18.0.0/24 and 2001:db8::/64 (br_netfilter hands bridged IP
// packets to the forward hook).
//
// Every probe is also traced through nft.Fake holding the same program, and
// the tracer's verdict must equal the real one.
//
// Program: b is isolated for ingress and allows tcp 8080 and udp 5353 from a
// only; c is isolated for egress and allowed nothing; a is not isolated.

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// packetState is the program of the packet tests; allowA says whether b's
// peer sets contain a.
func packetState(a, b, c *nfttest.Pod, allowA bool) *nft.State {
	s := skeleton()
	var peers4, peers6 []nft.Element
	if allowA {
		peers4 = []nft.Element{{Key: []nft.Value{nft.AddrValue(a.V4)}}}
		peers6 = []nft.Element{{Key: []nft.Value{nft.AddrValue(a.V6)}}}
	}
	addSet(s, nft.Set{Name: "peer-v4-a", Key: []nft.KeyType{nft.TypeIPv4Addr}}, peers4...)
	addSet(s, nft.Set{Name: "peer-v6-a", Key: []nft.KeyType{nft.TypeIPv6Addr}}, peers6...)
	addSet(s, nft.Set{Name: "ports-b", Key: []nft.KeyType{nft.TypeInetProto, nft.TypeInetService}, Interval: true},
		portRange(nft.ProtoTCP, 8080, 8080), portRange(nft.ProtoUDP, 5353, 5353))
	l4port := []nft.Field{nft.FieldL4Proto, nft.FieldTHDport}
	addChain(s, nft.Chain{Name: "pol-in-b", Rules: []nft.Rule{
		{Exprs: []nft.Expr{nft.Lookup{Fields: []nft.Field{nft.FieldIPSaddr}, Set: "peer-v4-a"}, nft.Lookup{Fields: l4port, Set: "ports-b"}, accept()}},
		{Exprs: []nft.Expr{nft.Lookup{Fields: []nft.Field{nft.FieldIP6Saddr}, Set: "peer-v6-a"}, nft.Lookup{Fields: l4port, Set: "ports-b"}, accept()}},
	}})
	drop := nft.Rule{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}}
	addChain(s, nft.Chain{Name: "pod-in-b", Rules: []nft.Rule{
		{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: "pol-in-b"}}}, drop}})
	addChain(s, nft.Chain{Name: "pod-eg-c", Rules: []nft.Rule{drop}})
	put := func(m string, ip netip.Addr, chain string) {
		e := nft.Element{Key: []nft.Value{nft.AddrValue(ip)}, Verdict: &nft.Verdict{Kind: nft.VerdictGoto, Chain: chain}}
		s.Sets[m].PutElements(e)
	}
	put("ingress-v4", b.V4, "pod-in-b")
	put("ingress-v6", b.V6, "pod-in-b")
	put("egress-v4", c.V4, "pod-eg-c")
	put("egress-v6", c.V6, "pod-eg-c")
	return s
}

// kernelAndFake programs the node namespace and a Fake alike: reconcile
// converges both to a state, so that the Fake's tracer can be held against
// real packets.
func kernelAndFake(t *testing.T, node *nfttest.NetNS) (*nft.Fake, func(*nft.State)) {
	_, fake, reconcile := kernelAndFakeOf(t, node)
	return fake, reconcile
}

// kernelAndFakeOf is kernelAndFake that also returns the Kernel.
func kernelAndFakeOf(t *testing.T, node *nfttest.NetNS) (*nft.Kernel, *nft.Fake, func(*nft.State)) {
	t.Helper()
	k, err := nft.NewKernel(nft.WithTable(testTable), nft.WithNetNS(node.FD))
	if err != nil {
		t.Fatalf("NewKernel: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	fake := nft.NewFake(testTable)
	return k, fake, func(st *nft.State) {
		t.Helper()
		ctx := context.Background()
		if _, err := k.Reconcile(ctx, st); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if _, err := fake.Reconcile(ctx, st); err != nil {
			t.Fatalf("Fake.Reconcile: %v", err)
		}
	}
}

func TestKernelPackets(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	for _, mode := range []string{"routed", "bridged"} {
		t.Run(mode, func(t *testing.T) { testPackets(t, mode == "bridged") })
	}
}

func testPackets(t *testing.T, bridged bool) {
	node := nfttest.NewNetNS(t)
	a := &nfttest.Pod{Name: "a", V4: netip.MustParseAddr("198.18.0.10"), V6: netip.MustParseAddr("2001:db8::10")}
	b := &nfttest.Pod{Name: "b", V4: netip.MustParseAddr("198.18.0.11"), V6: netip.MustParseAddr("2001:db8::11")}
	c := &nfttest.Pod{Name: "c", V4: netip.MustParseAddr("198.18.0.12"), V6: netip.MustParseAddr("2001:db8::12")}
	nfttest.WirePods(t, node, bridged, a, b, c)
	nfttest.Serve(t, a, []int{8080}, 0)
	nfttest.Serve(t, b, []int{8080, 9090}, 5353)

	// The Fake gets the same reconciles; its tracer must agree with every
	// real probe.
	fake, reconcile := kernelAndFake(t, node)

	// Without a program everything flows (this also proves the wiring).
	checkProbes(t, fake, []probe{
		{c, "tcp", b.V4, 9090, true},
		{c, "tcp", b.V6, 9090, true},
		{a, "udp", b.V6, 5353, true},
	})

	state := packetState(a, b, c, true)
	reconcile(state)
	policy := []probe{
		{a, "tcp", b.V4, 8080, true},
		{a, "tcp", b.V6, 8080, true},
		{a, "udp", b.V4, 5353, true},
		{a, "udp", b.V6, 5353, true},
		{a, "tcp", b.V4, 9090, false}, // port not allowed
		{a, "tcp", b.V6, 9090, false},
		{c, "tcp", b.V4, 8080, false}, // c is no peer (and egress isolated)
		{c, "tcp", b.V6, 8080, false},
		{b, "tcp", a.V4, 8080, true}, // a is not isolated
		{b, "tcp", a.V6, 8080, true},
		{c, "tcp", a.V4, 8080, false}, // c is egress isolated
	}
	checkProbes(t, fake, policy)

	// An established connection survives a reconcile that removes its
	// permission; new connections are then refused.
	conn, err := nfttest.Dial(a, "tcp", netip.AddrPortFrom(b.V4, 8080))
	if err != nil {
		t.Fatalf("dial a -> b: %v", err)
	}
	defer conn.Close()
	if err := nfttest.Echo(conn, "before"); err != nil {
		t.Fatalf("echo before reconcile: %v", err)
	}
	reconcile(packetState(a, b, c, false))
	if err := nfttest.Echo(conn, "after"); err != nil {
		t.Errorf("established connection broke across Reconcile: %v", err)
	}
	est := nft.Packet{Hook: nft.HookForward, Src: a.V4, Dst: b.V4, Proto: nft.ProtoTCP, Dport: 8080, Ct: nft.CtEstablished}
	if tr := fake.Trace(est); !tr.Accepted() {
		t.Errorf("Fake.Trace drops the established connection:\n%s", tr)
	}
	checkProbes(t, fake, []probe{{a, "tcp", b.V4, 8080, false}, {a, "udp", b.V6, 5353, false}})
	reconcile(state)
	checkProbes(t, fake, []probe{{a, "tcp", b.V4, 8080, true}, {a, "tcp", b.V6, 8080, true}})
	if err := nfttest.Echo(conn, "still"); err != nil {
		t.Errorf("established connection broke: %v", err)
	}
}

// probe is a connection a test tries, and whether policy allows it.
type probe struct {
	from    *nfttest.Pod
	network string
	to      netip.Addr
	port    uint16
	allowed bool
}

// checkProbes tries the probes at once and checks that each is allowed or
// refused as it should be, and that fake's tracer says the same as the
// kernel of each.
func checkProbes(t *testing.T, fake *nft.Fake, probes []probe) {
	t.Helper()
	var wg sync.WaitGroup
	got := make([]bool, len(probes))
	errs := make([]error, len(probes))
	for i, p := range probes {
		wg.Go(func() { got[i], errs[i] = nfttest.Probe(p.from, p.network, netip.AddrPortFrom(p.to, p.port)) })
	}
	wg.Wait()
	for i, p := range probes {
		if errs[i] != nil {
			t.Errorf("%s %s -> %s:%d: %v", p.network, p.from.Name, p.to, p.port, errs[i])
			continue
		}
		if got[i] != p.allowed {
			t.Errorf("%s %s -> %s:%d: allowed=%v, want %v", p.network, p.from.Name, p.to, p.port, got[i], p.allowed)
		}
		src := p.from.V4
		if p.to.Is6() {
			src = p.from.V6
		}
		proto := uint8(nft.ProtoTCP)
		if p.network == "udp" {
			proto = nft.ProtoUDP
		}
		tr := fake.Trace(nft.Packet{Hook: nft.HookForward, Src: src, Dst: p.to, Proto: proto, Dport: p.port})
		if tr.Accepted() != got[i] {
			t.Errorf("%s %s -> %s:%d: Fake.Trace says accepted=%v, the kernel %v; trace:\n%s",
				p.network, p.from.Name, p.to, p.port, tr.Accepted(), got[i], tr)
		}
	}
}
