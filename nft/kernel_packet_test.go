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
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

type testPod struct {
	name   string
	v4, v6 netip.Addr
	ns     *nfttest.NetNS
}

var (
	gw4 = netip.MustParseAddr("198.19.255.1")
	gw6 = netip.MustParseAddr("2001:db8:ffff::1")
)

// wire connects each pod to the node with a veth pair: routed (host routes,
// forwarding) or bridged (one bridge, one subnet, br_netfilter passing bridged
// IP traffic through the forward hook).
func wire(t *testing.T, node *nfttest.NetNS, bridged bool, pods ...*testPod) {
	t.Helper()
	if bridged {
		nfttest.AddBridge(t, node, "br0")
	} else {
		nfttest.EnableForwarding(t, node)
	}
	for _, p := range pods {
		p.ns = nfttest.NewNetNS(t)
		veth := "veth-" + p.name
		if bridged {
			nfttest.ConnectBridged(t, node, p.ns, "br0", netip.PrefixFrom(p.v4, 24), netip.PrefixFrom(p.v6, 64), veth)
			continue
		}
		nfttest.ConnectRouted(t, node, p.ns, p.v4, p.v6, gw4, gw6, veth)
	}
}

// serve runs TCP echo servers and a UDP echo server on the given ports in the
// pod (dual-stack sockets), until the test ends.
func serve(t *testing.T, p *testPod, tcpPorts []int, udpPort int) {
	t.Helper()
	var closers []io.Closer
	err := p.ns.Run(func() error {
		for _, port := range tcpPorts {
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				return err
			}
			closers = append(closers, l)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
				}
			}()
		}
		if udpPort != 0 {
			pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", udpPort))
			if err != nil {
				return err
			}
			closers = append(closers, pc)
			go func() {
				buf := make([]byte, 1500)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					_, _ = pc.WriteTo(buf[:n], from)
				}
			}()
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range closers {
			_ = c.Close()
		}
	})
	if err != nil {
		t.Fatalf("servers in pod %s: %v", p.name, err)
	}
}

// probeTimeout bounds a probe: a denied packet is dropped silently, so a
// denied connection is one that gets no answer in time.
const probeTimeout = 2 * time.Second

// dial opens a connection from pod p to dst (inside p's namespace).
func dial(p *testPod, network string, dst netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := p.ns.Run(func() error {
		var err error
		c, err = net.DialTimeout(network, dst.String(), probeTimeout)
		return err
	})
	return c, err
}

// echo sends a message on c and waits for it to come back.
func echo(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo: got %q, want %q", buf, msg)
	}
	return nil
}

// probe reports whether a new connection (TCP) or exchange (UDP) from p to
// dst gets through.
func probe(p *testPod, network string, dst netip.AddrPort) (bool, error) {
	c, err := dial(p, network, dst)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, nil
		}
		return false, err
	}
	defer c.Close()
	if err := echo(c, "ping"); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// packetState is the program of the packet tests; allowA says whether b's
// peer sets contain a.
func packetState(a, b, c *testPod, allowA bool) *nft.State {
	s := skeleton()
	var peers4, peers6 []nft.Element
	if allowA {
		peers4 = []nft.Element{{Key: []nft.Value{nft.AddrValue(a.v4)}}}
		peers6 = []nft.Element{{Key: []nft.Value{nft.AddrValue(a.v6)}}}
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
		s.Sets[m].Elements[nft.ElementID(s.Sets[m], e)] = e
	}
	put("ingress-v4", b.v4, "pod-in-b")
	put("ingress-v6", b.v6, "pod-in-b")
	put("egress-v4", c.v4, "pod-eg-c")
	put("egress-v6", c.v6, "pod-eg-c")
	return s
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
	a := &testPod{name: "a", v4: netip.MustParseAddr("198.18.0.10"), v6: netip.MustParseAddr("2001:db8::10")}
	b := &testPod{name: "b", v4: netip.MustParseAddr("198.18.0.11"), v6: netip.MustParseAddr("2001:db8::11")}
	c := &testPod{name: "c", v4: netip.MustParseAddr("198.18.0.12"), v6: netip.MustParseAddr("2001:db8::12")}
	wire(t, node, bridged, a, b, c)
	serve(t, a, []int{8080}, 0)
	serve(t, b, []int{8080, 9090}, 5353)

	k, err := nft.NewKernel(nft.WithTable(testTable), nft.WithNetNS(node.FD))
	if err != nil {
		t.Fatalf("NewKernel: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })

	// The Fake gets the same reconciles; its tracer must agree with every
	// real probe.
	fake := nft.NewFake(testTable)
	ctx := context.Background()
	reconcile := func(st *nft.State) {
		t.Helper()
		if _, err := k.Reconcile(ctx, st); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if _, err := fake.Reconcile(ctx, st); err != nil {
			t.Fatalf("Fake.Reconcile: %v", err)
		}
	}

	// Without a program everything flows (this also proves the wiring).
	type pr struct {
		from    *testPod
		network string
		to      netip.Addr
		port    uint16
		allowed bool
	}
	check := func(t *testing.T, probes []pr) {
		t.Helper()
		var wg sync.WaitGroup
		got := make([]bool, len(probes))
		errs := make([]error, len(probes))
		for i, p := range probes {
			wg.Go(func() { got[i], errs[i] = probe(p.from, p.network, netip.AddrPortFrom(p.to, p.port)) })
		}
		wg.Wait()
		for i, p := range probes {
			if errs[i] != nil {
				t.Errorf("%s %s -> %s:%d: %v", p.network, p.from.name, p.to, p.port, errs[i])
				continue
			}
			if got[i] != p.allowed {
				t.Errorf("%s %s -> %s:%d: allowed=%v, want %v", p.network, p.from.name, p.to, p.port, got[i], p.allowed)
			}
			src := p.from.v4
			if p.to.Is6() {
				src = p.from.v6
			}
			proto := uint8(nft.ProtoTCP)
			if p.network == "udp" {
				proto = nft.ProtoUDP
			}
			tr := fake.Trace(nft.Packet{Hook: nft.HookForward, Src: src, Dst: p.to, Proto: proto, Dport: p.port})
			if tr.Accepted() != got[i] {
				t.Errorf("%s %s -> %s:%d: Fake.Trace says accepted=%v, the kernel %v; trace:\n%s",
					p.network, p.from.name, p.to, p.port, tr.Accepted(), got[i], tr)
			}
		}
	}
	check(t, []pr{
		{c, "tcp", b.v4, 9090, true},
		{c, "tcp", b.v6, 9090, true},
		{a, "udp", b.v6, 5353, true},
	})

	state := packetState(a, b, c, true)
	reconcile(state)
	policy := []pr{
		{a, "tcp", b.v4, 8080, true},
		{a, "tcp", b.v6, 8080, true},
		{a, "udp", b.v4, 5353, true},
		{a, "udp", b.v6, 5353, true},
		{a, "tcp", b.v4, 9090, false}, // port not allowed
		{a, "tcp", b.v6, 9090, false},
		{c, "tcp", b.v4, 8080, false}, // c is no peer (and egress isolated)
		{c, "tcp", b.v6, 8080, false},
		{b, "tcp", a.v4, 8080, true}, // a is not isolated
		{b, "tcp", a.v6, 8080, true},
		{c, "tcp", a.v4, 8080, false}, // c is egress isolated
	}
	check(t, policy)

	// An established connection survives a reconcile that removes its
	// permission; new connections are then refused.
	conn, err := dial(a, "tcp", netip.AddrPortFrom(b.v4, 8080))
	if err != nil {
		t.Fatalf("dial a -> b: %v", err)
	}
	defer conn.Close()
	if err := echo(conn, "before"); err != nil {
		t.Fatalf("echo before reconcile: %v", err)
	}
	reconcile(packetState(a, b, c, false))
	if err := echo(conn, "after"); err != nil {
		t.Errorf("established connection broke across Reconcile: %v", err)
	}
	est := nft.Packet{Hook: nft.HookForward, Src: a.v4, Dst: b.v4, Proto: nft.ProtoTCP, Dport: 8080, Ct: nft.CtEstablished}
	if tr := fake.Trace(est); !tr.Accepted() {
		t.Errorf("Fake.Trace drops the established connection:\n%s", tr)
	}
	check(t, []pr{{a, "tcp", b.v4, 8080, false}, {a, "udp", b.v6, 5353, false}})
	reconcile(state)
	check(t, []pr{{a, "tcp", b.v4, 8080, true}, {a, "tcp", b.v6, 8080, true}})
	if err := echo(conn, "still"); err != nil {
		t.Errorf("established connection broke: %v", err)
	}
}
