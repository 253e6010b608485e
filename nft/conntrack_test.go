package nft_test

// Conntrack tests: real connections through a node namespace whose base
// chains accept established connections first, as the program does.
// Topology (routed, see nfttest.ConnectRouted):
//
//	pod a  198.18.0.10 2001:db8::10  client whose permission is revoked
//	pod b  198.18.0.11 2001:db8::11  server: tcp 8080, udp 5353; isolated for ingress
//	pod d  198.18.0.13 2001:db8::13  another client of b, allowed throughout
//	node   gateway 198.19.255.1 and 2001:db8:ffff::1 on every veth; a Service
//	       198.19.0.80:80 DNATs to b:8080 (nat table made with the nft binary)
//
// Program: b's ingress chain accepts sources in its peer sets (a and d
// first, then d only) and drops the rest.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

var (
	serviceVIP = netip.MustParseAddr("198.19.0.80")
	podA       = &nfttest.Pod{Name: "a", V4: netip.MustParseAddr("198.18.0.10"), V6: netip.MustParseAddr("2001:db8::10")}
	podB       = &nfttest.Pod{Name: "b", V4: netip.MustParseAddr("198.18.0.11"), V6: netip.MustParseAddr("2001:db8::11")}
	podD       = &nfttest.Pod{Name: "d", V4: netip.MustParseAddr("198.18.0.13"), V6: netip.MustParseAddr("2001:db8::13")}
)

// cutWithin is how soon a connection whose entry was deleted must stop
// carrying data.
const cutWithin = time.Second

// ingressAllowing is the skeleton with server isolated for ingress and
// accepting new connections from peers only.
func ingressAllowing(server *nfttest.Pod, peers ...*nfttest.Pod) *nft.State {
	s := skeleton()
	var p4, p6 []nft.Element
	for _, p := range peers {
		p4 = append(p4, nft.Element{Key: []nft.Value{nft.AddrValue(p.V4)}})
		p6 = append(p6, nft.Element{Key: []nft.Value{nft.AddrValue(p.V6)}})
	}
	addSet(s, nft.Set{Name: "peer-v4-b", Key: []nft.KeyType{nft.TypeIPv4Addr}}, p4...)
	addSet(s, nft.Set{Name: "peer-v6-b", Key: []nft.KeyType{nft.TypeIPv6Addr}}, p6...)
	addChain(s, nft.Chain{Name: "pod-in-b", Rules: []nft.Rule{
		{Exprs: []nft.Expr{nft.Lookup{Fields: []nft.Field{nft.FieldIPSaddr}, Set: "peer-v4-b"}, accept()}},
		{Exprs: []nft.Expr{nft.Lookup{Fields: []nft.Field{nft.FieldIP6Saddr}, Set: "peer-v6-b"}, accept()}},
		{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}},
	}})
	for m, ip := range map[string]netip.Addr{"ingress-v4": server.V4, "ingress-v6": server.V6} {
		e := gotoChain(ip.String(), "pod-in-b")
		s.Sets[m].PutElements(e)
	}
	return s
}

// listFlows returns the TCP, UDP and SCTP entries of the table (a matcher
// that deletes nothing) and how many entries were examined.
func listFlows(t *testing.T, ct *nft.Conntrack) ([]nft.Flow, int) {
	t.Helper()
	var flows []nft.Flow
	deleted, examined, err := ct.DeleteFlows(context.Background(), func(f nft.Flow) bool {
		flows = append(flows, f)
		return false
	})
	if err != nil || deleted != 0 {
		t.Fatalf("listing: deleted %d, error %v", deleted, err)
	}
	return flows, examined
}

func TestConntrackRevoke(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("the nft binary is needed for the Service DNAT of this test")
	}
	node := nfttest.NewNetNS(t)
	a, b, d := *podA, *podB, *podD
	nfttest.WirePods(t, node, false, &a, &b, &d)
	nfttest.Serve(t, &b, []int{8080}, 5353)
	if _, err := node.Exec("nft", "add table ip svc; "+
		"add chain ip svc pre { type nat hook prerouting priority dstnat; }; "+
		"add rule ip svc pre ip daddr "+serviceVIP.String()+" tcp dport 80 dnat to "+b.V4.String()+":8080"); err != nil {
		t.Fatal(err)
	}
	k, err := nft.NewKernel(nft.WithTable(testTable), nft.WithNetNS(node.FD))
	if err != nil {
		t.Fatalf("NewKernel: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	ctx := context.Background()
	if _, err := k.Reconcile(ctx, ingressAllowing(&b, &a, &d)); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	ct, err := nft.NewConntrack(nft.ConntrackNetNS(node.FD))
	if err != nil {
		t.Fatalf("NewConntrack: %v", err)
	}
	t.Cleanup(func() { _ = ct.Close() })

	// a -> Service (DNAT to b) over TCP, a -> b over UDP/IPv6, d -> b over
	// TCP, and the node itself -> b over TCP.
	tcpA := nfttest.MustDial(t, &a, "tcp", netip.AddrPortFrom(serviceVIP, 80))
	udpA := nfttest.MustDial(t, &a, "udp", netip.AddrPortFrom(b.V6, 5353))
	tcpD := nfttest.MustDial(t, &d, "tcp", netip.AddrPortFrom(b.V4, 8080))
	var fromNode net.Conn
	if err := node.Run(func() error {
		var err error
		fromNode, err = net.DialTimeout("tcp", netip.AddrPortFrom(b.V4, 8080).String(), nfttest.ProbeTimeout)
		return err
	}); err != nil {
		t.Fatalf("dial node -> b: %v", err)
	}
	t.Cleanup(func() { _ = fromNode.Close() })
	conns := map[string]net.Conn{"tcp a->svc": tcpA, "udp a->b": udpA, "tcp d->b": tcpD, "tcp node->b": fromNode}
	expect := func(step string, working ...string) {
		t.Helper()
		for name, c := range conns {
			err := nfttest.EchoWithin(c, step, cutWithin)
			switch want := slices.Contains(working, name); {
			case want && err != nil:
				t.Errorf("%s: %s broke: %v", step, name, err)
			case !want && err == nil:
				t.Errorf("%s: %s still carries data", step, name)
			case !want && !nfttest.IsTimeout(err):
				t.Errorf("%s: %s failed, but not by silence: %v", step, name, err)
			}
		}
	}
	expect("open", "tcp a->svc", "udp a->b", "tcp d->b", "tcp node->b")

	// The table holds the connections as the forward hook saw them.
	port := func(c net.Conn) uint16 { return netip.MustParseAddrPort(c.LocalAddr().String()).Port() }
	wantTCP := nft.Flow{Protocol: nft.ProtoTCP, Src: a.V4, SrcPort: port(tcpA), Dst: b.V4, DstPort: 8080}
	wantUDP := nft.Flow{Protocol: nft.ProtoUDP, Src: a.V6, SrcPort: port(udpA), Dst: b.V6, DstPort: 5353}
	wantD := nft.Flow{Protocol: nft.ProtoTCP, Src: d.V4, SrcPort: port(tcpD), Dst: b.V4, DstPort: 8080}
	wantNode := nft.Flow{Protocol: nft.ProtoTCP, Src: nfttest.Gateway4, SrcPort: port(fromNode), Dst: b.V4, DstPort: 8080, Local: true}
	flows, examined := listFlows(t, ct)
	for _, want := range []nft.Flow{wantTCP, wantUDP, wantD, wantNode} {
		if !slices.Contains(flows, want) {
			t.Errorf("conntrack lacks %+v; it holds %v", want, flows)
		}
	}
	if examined != 4 {
		t.Errorf("examined %d entries, want 4", examined)
	}

	// The policy stops admitting a: new connections are refused, the
	// established ones still flow.
	if _, err := k.Reconcile(ctx, ingressAllowing(&b, &d)); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if ok, err := nfttest.Probe(&a, "tcp", netip.AddrPortFrom(b.V4, 8080)); err != nil || ok {
		t.Fatalf("a new connection a -> b: allowed=%v, error %v; want refused", ok, err)
	}
	expect("revoked, not yet cut", "tcp a->svc", "udp a->b", "tcp d->b", "tcp node->b")

	// Each delete examines every entry left: the four connections, minus
	// the ones cut before (refused probes leave none).
	deleteExactly := func(want nft.Flow, entries int) {
		t.Helper()
		deleted, examined, err := ct.DeleteFlows(ctx, func(f nft.Flow) bool { return f == want })
		if err != nil {
			t.Fatalf("DeleteFlows %v: %v", want, err)
		}
		if deleted != 1 || examined != entries {
			t.Errorf("DeleteFlows %v: deleted %d of %d examined, want 1 of %d", want, deleted, examined, entries)
		}
	}
	deleteExactly(wantTCP, 4)
	expect("tcp cut", "udp a->b", "tcp d->b", "tcp node->b")
	deleteExactly(wantUDP, 3)
	expect("udp cut", "tcp d->b", "tcp node->b")
	if deleted, _, err := ct.DeleteFlows(ctx, func(f nft.Flow) bool { return f == wantTCP || f == wantUDP }); err != nil || deleted != 0 {
		t.Errorf("deleting the gone entries again: deleted %d, error %v; want 0, nil", deleted, err)
	}
}

// SCTP has no socket in Go's net package: the entry is created through
// ctnetlink, as a DNATed association would leave it (a -> Service, answered
// by b), and DeleteFlows must read its ports from the kernel's message.
func TestConntrackSCTP(t *testing.T) {
	node := nfttest.NewNetNS(t)
	h, err := netlink.NewHandleAt(netns.NsHandle(node.FD), unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, e := range []struct {
		family     netlink.InetFamily
		a, vip, be netip.Addr
	}{
		{unix.AF_INET, podA.V4, serviceVIP, podB.V4},
		{unix.AF_INET6, podA.V6, netip.MustParseAddr("2001:db8:80::80"), podB.V6},
	} {
		err := h.ConntrackCreate(netlink.ConntrackTable, e.family, &netlink.ConntrackFlow{
			FamilyType: uint8(e.family),
			Forward:    netlink.IPTuple{Protocol: nft.ProtoSCTP, SrcIP: e.a.AsSlice(), DstIP: e.vip.AsSlice(), SrcPort: 40000, DstPort: 80},
			Reverse:    netlink.IPTuple{Protocol: nft.ProtoSCTP, SrcIP: e.be.AsSlice(), DstIP: e.a.AsSlice(), SrcPort: 8080, DstPort: 40000},
			TimeOut:    60,
		})
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) {
			t.Skipf("this kernel's conntrack has no SCTP: %v", err)
		}
		if err != nil {
			t.Fatalf("create an SCTP entry: %v", err)
		}
	}
	ct, err := nft.NewConntrack(nft.ConntrackNetNS(node.FD))
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	want := []nft.Flow{
		{Protocol: nft.ProtoSCTP, Src: podA.V4, SrcPort: 40000, Dst: podB.V4, DstPort: 8080},
		{Protocol: nft.ProtoSCTP, Src: podA.V6, SrcPort: 40000, Dst: podB.V6, DstPort: 8080},
	}
	if flows, _ := listFlows(t, ct); !slices.Equal(sortFlows(flows), want) {
		t.Fatalf("flows %v, want %v", flows, want)
	}
	deleted, examined, err := ct.DeleteFlows(context.Background(), func(f nft.Flow) bool { return f.Src.Is6() })
	if err != nil || deleted != 1 || examined != 2 {
		t.Errorf("deleting the IPv6 entry: deleted %d of %d, error %v; want 1 of 2", deleted, examined, err)
	}
	if flows, _ := listFlows(t, ct); !slices.Equal(flows, want[:1]) {
		t.Errorf("after the delete: flows %v, want %v", flows, want[:1])
	}
}

func sortFlows(flows []nft.Flow) []nft.Flow {
	slices.SortFunc(flows, func(x, y nft.Flow) int { return x.Src.Compare(y.Src) })
	return flows
}

// A cancelled context stops a sweep before it deletes anything.
func TestConntrackCancelled(t *testing.T) {
	node := nfttest.NewNetNS(t)
	ct, err := nft.NewConntrack(nft.ConntrackNetNS(node.FD))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := ct.DeleteFlows(ctx, func(nft.Flow) bool { return true }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled sweep: error %v, want context.Canceled", err)
	}
	_ = ct.Close()
	if _, _, err := ct.DeleteFlows(context.Background(), func(nft.Flow) bool { return true }); !errors.Is(err, net.ErrClosed) {
		t.Errorf("sweep after Close: error %v, want net.ErrClosed", err)
	}
}
