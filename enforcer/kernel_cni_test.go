package enforcer_test

// IP plan: the base world (helpers_test.go, semantics_test.go) and the pods
// the CNI path brings up on node-a, prod/web-0.. at 198.18.1.100.., and
// prod/cli2 at 198.18.1.50 (cnipods_test.go).

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// TestPrivilegedKernelStartPod: when StartPod returns, the kernel holds the
// pod (read back with the nft binary, which shares no code with the
// engine's netlink writer): its address dispatches to its pod chain and sits
// in the peer sets of its groups. StopPod's return means they are gone.
// First nothing else flushes (StartPod's own batch must carry the pod), then
// a Flush loop runs beside, so StartPod's batch is often another caller's.
func TestPrivilegedKernelStartPod(t *testing.T) {
	ns, k, e := newKernelEngine(t)
	loadBaseWorld(e)
	for _, np := range basePolicies() {
		if err := e.UpsertNetworkPolicy(np); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if _, err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	listing := func() string { return nfttest.ListTable(t, ns, "nftw-enforcer") }

	// A peer: its address joins app=cli's peer set (prod/web admits it).
	cli2 := enforcer.NewPod(mkPod("prod", "cli2", podLabels("app", "cli")))
	if _, err := e.StartPod(ctx, cli2, []netip.Addr{cli2v4}); err != nil {
		t.Fatal(err)
	}
	tag, _ := e.PeerGroupTag("pods of namespace prod matching {app=cli}")
	if got, err := k.Read(ctx); err != nil || !hasTaggedElement(got, "peers-v4-", nft.Element{Key: []nft.Value{nft.AddrValue(cli2v4), tag}}) {
		t.Fatalf("after StartPod prod/cli2 the kernel's peer set lacks 198.18.1.50 with app=cli's tag %x (%v):\n%s", tag, err, listing())
	}

	// Targets: each address dispatches to its pod chain on return, first
	// with nobody else flushing, then with a Flush loop beside.
	startStop := func(i int) {
		t.Helper()
		name := fmt.Sprintf("web-%d", i)
		addr := netip.AddrFrom4([4]byte{198, 18, 1, byte(100 + i)})
		p := enforcer.NewPod(mkPod("prod", name, podLabels("app", "web")))
		if _, err := e.StartPod(ctx, p, []netip.Addr{addr}); err != nil {
			t.Fatalf("StartPod %s: %v", name, err)
		}
		element := regexp.MustCompile(regexp.QuoteMeta(addr.String()) + ` : goto "?pod-in-prod/` + name + `"?`)
		if got := listing(); !element.MatchString(got) {
			t.Fatalf("after StartPod %s the kernel has no dispatch element %s:\n%s", name, element, got)
		}
		if _, err := e.StopPod(ctx, "prod", name, nil); err != nil {
			t.Fatalf("StopPod %s: %v", name, err)
		}
		if got := listing(); regexp.MustCompile(`\b` + regexp.QuoteMeta(addr.String()) + `\b`).MatchString(got) {
			t.Fatalf("after StopPod %s the kernel still holds %s:\n%s", name, addr, got)
		}
	}
	for i := range 3 {
		startStop(i)
	}

	defer flushLoop(t, e)()
	for i := 3; i < 8; i++ {
		startStop(i)
	}
}
