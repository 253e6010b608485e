package nft_test

// A feasibility proof for the compiled form planned for ClusterNetworkPolicy
// tiers (enforcer/TIERS.md): a first map gives the source address's peer
// class, and a second, concatenated interval verdict map is keyed by that
// class . protocol . port. nft's syntax cannot write it; the kernel's
// registers can: the class map writes into the first 32-bit register of the
// concatenation and the protocol and port load into the next two. Built here
// with google/nftables directly, since the nft package's vocabulary does not
// have it yet, and proven with real packets. The kernel takes it; nft 1.0.6
// aborts listing it (logged below), which rules the form out for a node
// (enforcer/TIERS.md): the test keeps the evidence.

import (
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nftwarden/nftwarden/nft/nfttest"
)

func TestKernelClassThenDecisionMap(t *testing.T) {
	node := nfttest.NewNetNS(t)
	a := &nfttest.Pod{Name: "a", V4: netip.MustParseAddr("198.18.0.10")}
	b := &nfttest.Pod{Name: "b", V4: netip.MustParseAddr("198.18.0.11")}
	c := &nfttest.Pod{Name: "c", V4: netip.MustParseAddr("198.18.0.12")}
	nfttest.WirePods(t, node, false, a, b, c)
	nfttest.Serve(t, b, []int{8050, 8200}, 0)

	conn, err := nftables.New(nftables.WithNetNSFd(int(node.FD)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "nftw-classmap"})
	// Peer classes: a is class 7, c class 9 (every other address: no class,
	// so the rule's first lookup fails and the rule does not match).
	cls := &nftables.Set{Table: tbl, Name: "cls", IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeMark}
	if err := conn.AddSet(cls, []nftables.SetElement{
		{Key: a.V4.AsSlice(), Val: binaryutil.NativeEndian.PutUint32(7)},
		{Key: c.V4.AsSlice(), Val: binaryutil.NativeEndian.PutUint32(9)},
	}); err != nil {
		t.Fatal(err)
	}
	// Decisions: class 7 over tcp 8000-8100 is dropped; class 9 over tcp
	// 8100-8300 too. Keys are 4+4+4 bytes: mark, then protocol and port each
	// padded to a 32-bit register.
	decideType, err := nftables.ConcatSetType(nftables.TypeMark, nftables.TypeInetProto, nftables.TypeInetService)
	if err != nil {
		t.Fatal(err)
	}
	decide := &nftables.Set{Table: tbl, Name: "decide", IsMap: true, Interval: true, Concatenation: true,
		KeyType: decideType, DataType: nftables.TypeVerdict}
	key := func(class uint32, port uint16) []byte {
		k := binaryutil.NativeEndian.PutUint32(class)
		k = append(k, unix.IPPROTO_TCP, 0, 0, 0)
		return append(k, byte(port>>8), byte(port), 0, 0)
	}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	if err := conn.AddSet(decide, []nftables.SetElement{
		{Key: key(7, 8000), KeyEnd: key(7, 8100), VerdictData: drop},
		{Key: key(9, 8100), KeyEnd: key(9, 8300), VerdictData: drop},
	}); err != nil {
		t.Fatal(err)
	}
	accept := nftables.ChainPolicyAccept
	ch := conn.AddChain(&nftables.Chain{Table: tbl, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	conn.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		// The class lands in the first 32-bit register of the key.
		&expr.Lookup{SourceRegister: 1, DestRegister: unix.NFT_REG32_00, IsDestRegSet: true, SetName: "cls"},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG32_01},
		&expr.Payload{DestRegister: unix.NFT_REG32_02, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: unix.NFT_REG32_00, DestRegister: 0, IsDestRegSet: true, SetName: "decide"},
	}})
	if err := conn.Flush(); err != nil {
		t.Fatalf("the kernel refused the program: %v", err)
	}
	t.Cleanup(func() { conn.DelTable(tbl); _ = conn.Flush() })

	for _, tc := range []struct {
		from *nfttest.Pod
		port uint16
		want bool
	}{
		{a, 8050, false}, // class 7, in 8000-8100: dropped
		{a, 8200, true},  // class 7, outside: no element, accepted
		{c, 8050, true},  // class 9, outside 8100-8300
		{c, 8200, false}, // class 9, inside
	} {
		got, err := nfttest.Probe(tc.from, "tcp", netip.AddrPortFrom(b.V4, tc.port))
		if err != nil {
			t.Fatalf("%s -> b:%d: %v", tc.from.Name, tc.port, err)
		}
		if got != tc.want {
			t.Errorf("%s -> b:%d: passed %v, want %v", tc.from.Name, tc.port, got, tc.want)
		}
	}
	// nft lists what it cannot parse back; show it for the record.
	out, err := node.Exec("nft", "list", "chain", "inet", "nftw-classmap", "forward")
	t.Logf("nft list chain (err %v):\n%s", err, out)
}
