package nft_test

// A revoked TCP connection must not come back when the side that keeps its
// rights speaks first. Topology (routed; pods a, b and d as in
// conntrack_test.go, plus c):
//
//	pod a  198.18.0.10 2001:db8::10  client of b (revoked); server on tcp 9090 for c
//	pod b  198.18.0.11 2001:db8::11  server: tcp 8080 and 7070; isolated for ingress
//	pod c  198.18.0.12 2001:db8::12  client of a over IPv6 (revoked); isolated for egress
//	pod d  198.18.0.13 2001:db8::13  client of b, allowed throughout
//
// Program: b admits a and d, then d only; c may reach a, then nothing. Each
// revoked connection's conntrack entry is deleted (as the revoker does),
// then the server writes first: data on one connection, only a keepalive
// probe (a bare ACK) on another. With the skeleton's pickup rules the
// connections stay dead both ways; without them (the control run) conntrack
// picks the server's segment up as a new connection from server to client,
// which policy allows, and the client's packets pass as its replies.

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

var podC = &nfttest.Pod{Name: "c", V4: netip.MustParseAddr("198.18.0.12"), V6: netip.MustParseAddr("2001:db8::12")}

// pickupState is ingressAllowing(b, peers of b) with c isolated for egress
// and allowed to reach a when cToA; without pickupRules, the skeleton's
// rules that drop mid-stream TCP segments picked up as new are left out.
func pickupState(b, c, a *nfttest.Pod, cToA, pickupRules bool, peersOfB ...*nfttest.Pod) *nft.State {
	s := ingressAllowing(b, peersOfB...)
	var p4, p6 []nft.Element
	if cToA {
		p4 = []nft.Element{{Key: []nft.Value{nft.AddrValue(a.V4)}}}
		p6 = []nft.Element{{Key: []nft.Value{nft.AddrValue(a.V6)}}}
	}
	addSet(s, nft.Set{Name: "peer-v4-c", Key: []nft.KeyType{nft.TypeIPv4Addr}}, p4...)
	addSet(s, nft.Set{Name: "peer-v6-c", Key: []nft.KeyType{nft.TypeIPv6Addr}}, p6...)
	addChain(s, nft.Chain{Name: "pod-eg-c", Rules: []nft.Rule{
		{Exprs: []nft.Expr{nft.Lookup{Fields: []nft.Field{nft.FieldIPDaddr}, Set: "peer-v4-c"}, accept()}},
		{Exprs: []nft.Expr{nft.Lookup{Fields: []nft.Field{nft.FieldIP6Daddr}, Set: "peer-v6-c"}, accept()}},
		{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}},
	}})
	for m, ip := range map[string]netip.Addr{"egress-v4": c.V4, "egress-v6": c.V6} {
		e := gotoChain(ip.String(), "pod-eg-c")
		s.Sets[m].PutElements(e)
	}
	if !pickupRules {
		for _, ch := range []string{"egress", "ingress"} {
			var kept []nft.Rule
			for _, r := range s.Chains[ch].Rules {
				if !slices.ContainsFunc(r.Exprs, func(e nft.Expr) bool { _, flags := e.(nft.MatchTCPFlags); return flags }) {
					kept = append(kept, r)
				}
			}
			s.Chains[ch].Rules = kept
		}
	}
	return s
}

func TestKernelPickupRevival(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	for _, pickupRules := range []bool{true, false} {
		name := "pickup rules"
		if !pickupRules {
			name = "control without them"
		}
		t.Run(name, func(t *testing.T) { testPickupRevival(t, pickupRules) })
	}
}

// conn is a TCP connection with both ends at hand.
type conn struct {
	name           string
	client, server *net.TCPConn
	from, to       *nfttest.Pod
}

// flow is the conntrack entry of the connection.
func (c conn) flow() nft.Flow {
	cl := netip.MustParseAddrPort(c.client.LocalAddr().String())
	sv := netip.MustParseAddrPort(c.server.LocalAddr().String())
	return nft.Flow{Protocol: nft.ProtoTCP, Src: cl.Addr().Unmap(), SrcPort: cl.Port(), Dst: sv.Addr().Unmap(), DstPort: sv.Port()}
}

// packet is a segment from the middle of the stream, from the server to
// the client (toClient) or back, as a tracer sees it.
func (c conn) packet(toClient bool, ct nft.CtState) nft.Packet {
	f := c.flow()
	p := nft.Packet{Hook: nft.HookForward, Src: f.Src, Dst: f.Dst, Proto: nft.ProtoTCP, Dport: f.DstPort, Ct: ct,
		TCPFlags: nft.TCPAck | nft.TCPPsh}
	if toClient {
		p.Src, p.Dst, p.Dport = f.Dst, f.Src, f.SrcPort
	}
	return p
}

func testPickupRevival(t *testing.T, pickupRules bool) {
	node := nfttest.NewNetNS(t)
	a, b, c, d := *podA, *podB, *podC, *podD
	nfttest.WirePods(t, node, false, &a, &b, &c, &d)
	nfttest.Serve(t, &b, []int{7070}, 0)
	ct, err := nft.NewConntrack(nft.ConntrackNetNS(node.FD))
	if err != nil {
		t.Fatalf("NewConntrack: %v", err)
	}
	t.Cleanup(func() { _ = ct.Close() })
	fake, reconcile := kernelAndFake(t, node)
	ctx := context.Background()
	reconcile(pickupState(&b, &c, &a, true, pickupRules, &a, &d))

	dial := func(name string, from, to *nfttest.Pod, dst netip.AddrPort) conn {
		cl, sv := nfttest.MustConnect(t, from, to, dst)
		return conn{name: name, client: cl, server: sv, from: from, to: to}
	}
	pushed := dial("a->b:8080, b pushes data", &a, &b, netip.AddrPortFrom(b.V4, 8080))
	kept := dial("a->b:8081, b sends keepalives", &a, &b, netip.AddrPortFrom(b.V4, 8081))
	egress := dial("c->a:9090 (IPv6), a pushes data", &c, &a, netip.AddrPortFrom(a.V6, 9090))
	allowed := dial("d->b:8080, allowed throughout", &d, &b, netip.AddrPortFrom(b.V4, 8080))
	for _, cn := range []conn{pushed, kept, egress, allowed} {
		if err := exchange(cn, "open"); err != nil {
			t.Fatalf("%s: %v", cn.name, err)
		}
	}
	// The keepalive probe is the only packet b sends on kept after the cut.
	if err := kept.server.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 5}); err != nil {
		t.Fatal(err)
	}

	// Revoke a -> b and c -> a, and delete their entries.
	reconcile(pickupState(&b, &c, &a, false, pickupRules, &d))
	revoked := map[nft.Flow]bool{pushed.flow(): true, kept.flow(): true, egress.flow(): true}
	if deleted, _, err := ct.DeleteFlows(ctx, func(f nft.Flow) bool { return revoked[f] }); err != nil || deleted != 3 {
		t.Fatalf("deleting the revoked entries: %d deleted, error %v; want 3", deleted, err)
	}
	cut := time.Now()

	// The three revoked connections are watched at once.
	var wg sync.WaitGroup
	// kept: b's first keepalive probe goes out a second after keepalives
	// were switched on (just before the cut).
	wg.Go(func() {
		time.Sleep(time.Until(cut.Add(1500 * time.Millisecond)))
		if _, err := kept.client.Write([]byte("pull")); err != nil {
			t.Errorf("%s: write: %v", kept.name, err)
			return
		}
		checkCut(t, kept.name+": the client's data after a keepalive", nfttest.ReceiveWithin(kept.server, "pull", time.Second), !pickupRules)
	})
	// The servers write first. Without the pickup rules their segments
	// revive the connections; the clients' answers are then replies.
	for _, cn := range []conn{pushed, egress} {
		wg.Go(func() {
			if _, err := cn.server.Write([]byte("push")); err != nil {
				t.Errorf("%s: write: %v", cn.name, err)
				return
			}
			err := nfttest.ReceiveWithin(cn.client, "push", time.Second)
			checkCut(t, cn.name+": the server's data", err, !pickupRules)
			// Fake agrees with the kernel on the segment: new to conntrack,
			// not a SYN.
			if tr := fake.Trace(cn.packet(true, 0)); tr.Accepted() != (err == nil) {
				t.Errorf("%s: Fake.Trace of the server's segment says accepted=%v, the kernel %v:\n%s", cn.name, tr.Accepted(), err == nil, tr)
			}
			if _, err := cn.client.Write([]byte("pull")); err != nil {
				t.Errorf("%s: write: %v", cn.name, err)
				return
			}
			err = nfttest.ReceiveWithin(cn.server, "pull", time.Second)
			checkCut(t, cn.name+": the client's data", err, !pickupRules)
			ctState := nft.CtState(0) // new: nothing revived the entry
			if !pickupRules {
				ctState = nft.CtEstablished // a reply of the revived entry
			}
			if tr := fake.Trace(cn.packet(false, ctState)); tr.Accepted() != (err == nil) {
				t.Errorf("%s: Fake.Trace of the client's segment says accepted=%v, the kernel %v:\n%s", cn.name, tr.Accepted(), err == nil, tr)
			}
		})
	}
	wg.Wait()

	// What policy allows goes on: the established connection both ways,
	// and new connections; a's new connections are refused.
	if err := exchange(allowed, "after"); err != nil {
		t.Errorf("%s: %v", allowed.name, err)
	}
	for _, p := range []struct {
		from *nfttest.Pod
		want bool
	}{{&d, true}, {&a, false}} {
		if ok, err := nfttest.Probe(p.from, "tcp", netip.AddrPortFrom(b.V4, 7070)); err != nil || ok != p.want {
			t.Errorf("new connection %s -> b: allowed=%v, error %v; want %v", p.from.Name, ok, err, p.want)
		}
	}
}

// exchange sends msg from the server to the client, then back.
func exchange(c conn, msg string) error {
	for _, dir := range [][2]*net.TCPConn{{c.server, c.client}, {c.client, c.server}} {
		if _, err := dir[0].Write([]byte(msg)); err != nil {
			return err
		}
		if err := nfttest.ReceiveWithin(dir[1], msg, time.Second); err != nil {
			return err
		}
	}
	return nil
}

// checkCut checks the outcome of a receive on a revoked connection: a
// timeout, or the data when the connection revives (revives).
func checkCut(t *testing.T, what string, err error, revives bool) {
	t.Helper()
	switch {
	case revives && err != nil:
		t.Errorf("%s: %v; want it through (the revival this control run shows)", what, err)
	case !revives && err == nil:
		t.Errorf("%s came through: the revoked connection revived", what)
	case !revives && !nfttest.IsTimeout(err):
		t.Errorf("%s: %v; want silence (a timeout)", what, err)
	}
}
