package nft_test

// Tagged peer sets against real packets: one set per family shared by two
// groups, each group's rule looking up its own tag. Topology (routed, as in
// kernel_packet_test.go):
//
//	pod a  198.18.0.10 2001:db8::10  group 1 (tag 1)
//	pod b  198.18.0.11 2001:db8::11  server, isolated for ingress: tcp 8080
//	                                 from group 1, tcp 9090 from group 2
//	pod c  198.18.0.12 2001:db8::12  group 2 (tag 2)
//	pod d  198.18.0.13 2001:db8::13  in no group

import (
	"context"
	"net/netip"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// taggedPacketState isolates b for ingress: group 1 may reach tcp 8080,
// group 2 tcp 9090, each group's members being the elements of the shared
// set with its tag.
func taggedPacketState(b *nfttest.Pod, groups map[uint32][]*nfttest.Pod) *nft.State {
	s := skeleton()
	peers4 := addSet(s, nft.Set{Name: "peers-v4", Key: []nft.KeyType{nft.TypeIPv4Addr, nft.TypeTag}, Comment: "peer groups"})
	peers6 := addSet(s, nft.Set{Name: "peers-v6", Key: []nft.KeyType{nft.TypeIPv6Addr, nft.TypeTag}, Comment: "peer groups"})
	for tag, pods := range groups {
		for _, p := range pods {
			for set, ip := range map[*nft.Set]netip.Addr{peers4: p.V4, peers6: p.V6} {
				e := nft.Element{Key: []nft.Value{nft.AddrValue(ip), nft.TagValue(tag)}}
				set.PutElements(e)
			}
		}
	}
	var rules []nft.Rule
	for _, g := range []struct {
		tag  uint32
		port uint16
	}{{1, 8080}, {2, 9090}} {
		for _, f := range []nft.Field{nft.FieldIPSaddr, nft.FieldIP6Saddr} {
			set := "peers-v4"
			if f == nft.FieldIP6Saddr {
				set = "peers-v6"
			}
			rules = append(rules, nft.Rule{Exprs: []nft.Expr{
				nft.Lookup{Fields: []nft.Field{f}, Set: set, Tag: nft.TagValue(g.tag)},
				nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(nft.ProtoTCP)},
				nft.Cmp{Field: nft.FieldTHDport, Value: nft.PortValue(g.port)},
				accept()}})
		}
	}
	addChain(s, nft.Chain{Name: "pol-in-b", Rules: rules})
	addChain(s, nft.Chain{Name: "pod-in-b", Rules: []nft.Rule{
		{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictJump, Chain: "pol-in-b"}}},
		{Exprs: []nft.Expr{nft.Counter{}, nft.Verdict{Kind: nft.VerdictDrop}}}}})
	for m, ip := range map[string]netip.Addr{"ingress-v4": b.V4, "ingress-v6": b.V6} {
		e := nft.Element{Key: []nft.Value{nft.AddrValue(ip)}, Verdict: &nft.Verdict{Kind: nft.VerdictGoto, Chain: "pod-in-b"}}
		s.Sets[m].PutElements(e)
	}
	return s
}

// TestKernelTaggedPackets: an address in group 1 matches group 1's rule and
// not group 2's, and the other way round, in both families; an address in no
// group matches neither; moving a pod to the other group (its element's tag)
// moves its permission. The table read back is the desired one: a second
// Reconcile sends nothing.
func TestKernelTaggedPackets(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	node := nfttest.NewNetNS(t)
	pod := func(name, v4, v6 string) *nfttest.Pod {
		return &nfttest.Pod{Name: name, V4: netip.MustParseAddr(v4), V6: netip.MustParseAddr(v6)}
	}
	a, b := pod("a", "198.18.0.10", "2001:db8::10"), pod("b", "198.18.0.11", "2001:db8::11")
	c, d := pod("c", "198.18.0.12", "2001:db8::12"), pod("d", "198.18.0.13", "2001:db8::13")
	nfttest.WirePods(t, node, false, a, b, c, d)
	nfttest.Serve(t, b, []int{8080, 9090}, 0)
	k, fake, reconcile := kernelAndFakeOf(t, node)
	ctx := context.Background()

	// allowed lists the probes to b of each pod, on 8080 and 9090, both
	// families, and whether each gets through.
	allowed := func(perPod map[*nfttest.Pod][2]bool) []probe {
		var out []probe
		for p, ports := range perPod {
			for _, to := range []netip.Addr{b.V4, b.V6} {
				out = append(out, probe{p, "tcp", to, 8080, ports[0]}, probe{p, "tcp", to, 9090, ports[1]})
			}
		}
		return out
	}
	for _, step := range []struct {
		name   string
		groups map[uint32][]*nfttest.Pod
		want   map[*nfttest.Pod][2]bool
	}{
		{"a in group 1, c in group 2", map[uint32][]*nfttest.Pod{1: {a}, 2: {c}},
			map[*nfttest.Pod][2]bool{a: {true, false}, c: {false, true}, d: {false, false}}},
		{"a moves to group 2", map[uint32][]*nfttest.Pod{2: {a, c}},
			map[*nfttest.Pod][2]bool{a: {false, true}, c: {false, true}, d: {false, false}}},
		{"a and c swap", map[uint32][]*nfttest.Pod{1: {c}, 2: {a}},
			map[*nfttest.Pod][2]bool{a: {false, true}, c: {true, false}, d: {false, false}}},
	} {
		t.Run(step.name, func(t *testing.T) {
			want := taggedPacketState(b, step.groups)
			reconcile(want)
			checkProbes(t, fake, allowed(step.want))

			got, err := k.Read(ctx)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if tx := nft.Diff(got, want, nil); !tx.Empty() {
				t.Errorf("Diff(Read(), desired) is not empty:\n%s", tx)
			}
			tx, err := k.Reconcile(ctx, want)
			if err != nil {
				t.Fatalf("second Reconcile: %v", err)
			}
			if !tx.Empty() {
				t.Errorf("second Reconcile sent operations:\n%s", tx)
			}
		})
	}
}
