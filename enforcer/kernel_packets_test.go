package enforcer_test

// Real packets through what the engine programs into a kernel. Topology (one
// routed node namespace, every pod on node-a):
//
//	web  198.18.1.10                  app=web, serves tcp 8080, 9090
//	cli  198.18.1.20                  app=cli
//	x    198.18.1.30                  app=x
//	web6 198.18.1.11 2001:db8:1::11   app=web, serves tcp 8080, 9090  (second stage)
//	cli6 198.18.1.21 2001:db8:1::21   app=cli                         (second stage)
//	x6   198.18.1.31 2001:db8:1::31   app=x                           (second stage)

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

type packetCase struct {
	from    *nfttest.Pod
	to      netip.Addr
	port    uint16
	allowed bool
}

// probeAll runs the probes concurrently (a denied one waits out the probe
// timeout) and checks each verdict.
func probeAll(t *testing.T, stage string, cases []packetCase) {
	t.Helper()
	got := make([]bool, len(cases))
	errs := make([]error, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Go(func() { got[i], errs[i] = nfttest.Probe(c.from, "tcp", netip.AddrPortFrom(c.to, c.port)) })
	}
	wg.Wait()
	for i, c := range cases {
		desc := fmt.Sprintf("%s: %s -> %s:%d", stage, c.from.Name, c.to, c.port)
		switch {
		case errs[i] != nil:
			t.Errorf("%s: %v", desc, errs[i])
		case got[i] != c.allowed:
			t.Errorf("%s: allowed=%v, want %v", desc, got[i], c.allowed)
		}
	}
}

// TestPrivilegedPacketsFollowFamilies shows with real TCP connections that a
// node of IPv4-only pods, whose program holds no IPv6 rules or sets, enforces
// its policy; that the first dual-stack pods bring IPv6 enforcement with them
// (allowed peers pass over IPv6, others are dropped); and that the node is
// back to its IPv4-only program, still enforcing, once they are gone.
func TestPrivilegedPacketsFollowFamilies(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	node := nfttest.NewNetNS(t) // skips without CAP_NET_ADMIN
	k, err := nft.NewKernel(nft.WithNetNS(node.FD), nft.WithTable("nftw-enforcer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Dataplane: k, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	flush := func(stage string) {
		t.Helper()
		if _, err := e.Flush(ctx); err != nil {
			t.Fatalf("%s: flush: %v", stage, err)
		}
	}
	pod := func(name, v4, v6, app string) (*nfttest.Pod, *corev1.Pod) {
		p := &nfttest.Pod{Name: name, V4: netip.MustParseAddr(v4)}
		ips := []string{v4}
		if v6 != "" {
			p.V6 = netip.MustParseAddr(v6)
			ips = append(ips, v6)
		}
		return p, mkPod("prod", name, podLabels("app", app), podIPs(ips...))
	}
	upsert := func(pods ...*corev1.Pod) {
		t.Helper()
		for _, p := range pods {
			if err := e.UpsertPod(p); err != nil {
				t.Fatal(err)
			}
		}
	}

	if err := e.UpsertNamespace(mkNamespace("prod")); err != nil {
		t.Fatal(err)
	}
	web, webPod := pod("web", "198.18.1.10", "", "web")
	cli, cliPod := pod("cli", "198.18.1.20", "", "cli")
	x, xPod := pod("x", "198.18.1.30", "", "x")
	nfttest.WirePods(t, node, false, web, cli, x)
	nfttest.Serve(t, web, []int{8080, 9090}, 0)
	upsert(webPod, cliPod, xPod)
	if err := e.UpsertNetworkPolicy(mkPolicy("prod", "web", selecting(sel("app", "web")),
		ingress(peers(podPeer(sel("app", "cli"))), tcp(8080)))); err != nil {
		t.Fatal(err)
	}
	flush("IPv4 only")
	if got := v6Objects(e.Desired()); len(got) != 0 {
		t.Fatalf("IPv4-only node: program matches IPv6: %v", got)
	}
	v4Cases := []packetCase{
		{cli, web.V4, 8080, true},
		{cli, web.V4, 9090, false},
		{x, web.V4, 8080, false},
	}
	probeAll(t, "IPv4 only", v4Cases)

	web6, web6Pod := pod("web6", "198.18.1.11", "2001:db8:1::11", "web")
	cli6, cli6Pod := pod("cli6", "198.18.1.21", "2001:db8:1::21", "cli")
	x6, x6Pod := pod("x6", "198.18.1.31", "2001:db8:1::31", "x")
	nfttest.WirePods(t, node, false, web6, cli6, x6)
	nfttest.Serve(t, web6, []int{8080, 9090}, 0)
	upsert(web6Pod, cli6Pod, x6Pod)
	flush("dual-stack pods")
	if got := v6Objects(e.Desired()); len(got) == 0 {
		t.Fatal("dual-stack pods on the node, but its program matches no IPv6")
	}
	probeAll(t, "dual-stack pods", append(v4Cases,
		packetCase{cli6, web6.V6, 8080, true},
		packetCase{cli6, web6.V6, 9090, false},
		packetCase{x6, web6.V6, 8080, false},
		packetCase{cli6, web6.V4, 8080, true},
		packetCase{x6, web6.V4, 8080, false},
	))

	for _, name := range []string{"web6", "cli6", "x6"} {
		e.DeletePod("prod", name)
	}
	flush("dual-stack pods gone")
	if got := v6Objects(e.Desired()); len(got) != 0 {
		t.Fatalf("dual-stack pods gone, but the program still matches IPv6: %v", got)
	}
	probeAll(t, "dual-stack pods gone", v4Cases)
}
