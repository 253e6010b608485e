package enforcer_test

// First-packet isolation with real packets. Topology (one routed node
// namespace, node-a, pod CIDRs 198.18.1.0/24 and 2001:db8:1::/64):
//
//	web    198.18.1.10  2001:db8:1::10  a known pod, serves tcp 8080
//	fresh  198.18.1.40  2001:db8:1::40  wired and serving tcp 8080, unknown to the engine until upserted
//	outer  198.18.3.10  2001:db8:3::10  wired and serving tcp 8080, outside the pod CIDRs, never a pod
//	node   198.19.255.1 2001:db8:ffff::1 (nfttest.Gateway4/6) serves tcp 8080

import (
	"context"
	"net/netip"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// TestPrivilegedFirstPacketIsolation: an address of the pod CIDRs that the
// engine does not know as a pod gets no new connection through, either
// way and in both families, while the node's own traffic and addresses
// outside the CIDRs are unaffected; once its pod is upserted and flushed it
// is reachable (no policy isolates it), and when the pod is deleted it is
// cut off again; announced by StartPod (the CNI path: the pod object has no
// address yet) it is reachable when StartPod returns, and cut off again
// when StopPod returns; with the pod CIDRs removed nothing is isolated.
func TestPrivilegedFirstPacketIsolation(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	node, _, e := newKernelEngineWith(t, enforcer.Config{PodCIDRs: nodeAPodCIDRs})
	ctx := context.Background()
	flush := func(stage string) {
		t.Helper()
		if _, err := e.Flush(ctx); err != nil {
			t.Fatalf("%s: flush: %v", stage, err)
		}
	}
	addr := netip.MustParseAddr
	web := &nfttest.Pod{Name: "web", V4: addr("198.18.1.10"), V6: addr("2001:db8:1::10")}
	fresh := &nfttest.Pod{Name: "fresh", V4: addr("198.18.1.40"), V6: addr("2001:db8:1::40")}
	outer := &nfttest.Pod{Name: "outer", V4: addr("198.18.3.10"), V6: addr("2001:db8:3::10")}
	nfttest.WirePods(t, node, false, web, fresh, outer)
	host := &nfttest.Pod{Name: "node", V4: nfttest.Gateway4, V6: nfttest.Gateway6, NS: node}
	for _, p := range []*nfttest.Pod{web, fresh, outer, host} {
		nfttest.Serve(t, p, []int{8080}, 0)
	}
	if err := e.UpsertNamespace(mkNamespace("prod")); err != nil {
		t.Fatal(err)
	}
	upsert := func(p *nfttest.Pod) {
		t.Helper()
		if err := e.UpsertPod(mkPod("prod", p.Name, podLabels("app", p.Name), podIPs(p.V4.String(), p.V6.String()))); err != nil {
			t.Fatal(err)
		}
	}
	upsert(web)
	flush("web known")

	// cases are the probes of a stage, both families, with fresh allowed
	// or not.
	cases := func(freshOK bool) []packetCase {
		var out []packetCase
		for _, v6 := range []bool{false, true} {
			at := func(p *nfttest.Pod) netip.Addr {
				if v6 {
					return p.V6
				}
				return p.V4
			}
			out = append(out,
				packetCase{web, at(fresh), 8080, freshOK},   // to the unknown pod
				packetCase{fresh, at(web), 8080, freshOK},   // from it
				packetCase{outer, at(fresh), 8080, freshOK}, // from outside the CIDRs to it
				packetCase{host, at(fresh), 8080, true},     // the node's own traffic (output, input)
				packetCase{fresh, at(host), 8080, true},
				packetCase{web, at(outer), 8080, true}, // known pod and an address outside the CIDRs
				packetCase{outer, at(web), 8080, true},
			)
		}
		return out
	}
	probeAll(t, "fresh not programmed", cases(false))

	upsert(fresh)
	flush("fresh upserted")
	probeAll(t, "fresh programmed", cases(true))

	e.DeletePod("prod", fresh.Name)
	flush("fresh deleted")
	probeAll(t, "fresh deleted", cases(false))

	if _, err := e.StartPod(ctx, enforcer.NewPod(mkPod("prod", fresh.Name, podLabels("app", fresh.Name))), []netip.Addr{fresh.V4, fresh.V6}); err != nil {
		t.Fatalf("StartPod: %v", err)
	}
	probeAll(t, "fresh started (StartPod)", cases(true))
	if _, err := e.StopPod(ctx, "prod", fresh.Name, nil); err != nil {
		t.Fatalf("StopPod: %v", err)
	}
	probeAll(t, "fresh stopped (StopPod)", cases(false))

	if err := e.SetPodCIDRs(nil); err != nil {
		t.Fatal(err)
	}
	flush("isolation off")
	probeAll(t, "isolation off", cases(true))
}
