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

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftwarden/nftwarden/enforcer"
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
	node, _, e := newKernelEngine(t)
	ctx := context.Background()
	flush := func(stage string) {
		t.Helper()
		if _, err := e.Flush(ctx); err != nil {
			t.Fatalf("%s: flush: %v", stage, err)
		}
	}
	// addPods wires, serves (web) and upserts the pods web, cli and x with
	// the given name suffix and last octet offset, dual-stack if dual.
	addPods := func(suffix string, offset int, dual bool) (web, cli, x *nfttest.Pod) {
		t.Helper()
		apps := []string{"web", "cli", "x"}
		pods := make([]*nfttest.Pod, len(apps))
		for i, app := range apps {
			n := 10*(i+1) + offset
			pods[i] = &nfttest.Pod{Name: app + suffix, V4: netip.MustParseAddr(fmt.Sprintf("198.18.1.%d", n))}
			if dual {
				pods[i].V6 = netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%d", n))
			}
		}
		nfttest.WirePods(t, node, false, pods...)
		nfttest.Serve(t, pods[0], []int{8080, 9090}, 0)
		for i, p := range pods {
			ips := []string{p.V4.String()}
			if dual {
				ips = append(ips, p.V6.String())
			}
			if err := e.UpsertPod(mkPod("prod", p.Name, podLabels("app", apps[i]), podIPs(ips...))); err != nil {
				t.Fatal(err)
			}
		}
		return pods[0], pods[1], pods[2]
	}

	if err := e.UpsertNamespace(mkNamespace("prod")); err != nil {
		t.Fatal(err)
	}
	web, cli, x := addPods("", 0, false)
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

	web6, cli6, x6 := addPods("6", 1, true)
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

// TestPrivilegedPacketsIPReuse shows with real TCP connections the rule for an
// address two live pods claim (doc.go): cli's address, claimed as well by a
// pod the policy does not admit, is dropped by web's ingress; claimed by a
// twin with cli's labels it passes; claimed by a twin that an egress policy
// isolates (and cli not), cli's own connections go to the drop chain; once
// cli is its only claimant again, it passes. The claimants other than cli are
// model-only: nothing in a packet tells claimants apart.
func TestPrivilegedPacketsIPReuse(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	node, k, e := newKernelEngine(t)
	web := &nfttest.Pod{Name: "web", V4: netip.MustParseAddr("198.18.1.10")}
	cli := &nfttest.Pod{Name: "cli", V4: netip.MustParseAddr("198.18.1.20")}
	nfttest.WirePods(t, node, false, web, cli)
	nfttest.Serve(t, web, []int{8080}, 0)
	upsert := func(name, node string, ip netip.Addr, labels ...string) {
		t.Helper()
		if err := e.UpsertPod(mkPod("prod", name, podLabels(labels...), onNode(node), podIPs(ip.String()))); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.UpsertNamespace(mkNamespace("prod")); err != nil {
		t.Fatal(err)
	}
	upsert("web", "node-a", web.V4, "app", "web")
	upsert("cli", "node-a", cli.V4, "app", "cli")
	for _, np := range []*networkingv1.NetworkPolicy{
		mkPolicy("prod", "web", selecting(sel("app", "web")), ingress(peers(podPeer(sel("app", "cli"))), tcp(8080))),
		mkPolicy("prod", "lockdown", selecting(sel("role", "locked")), types(networkingv1.PolicyTypeEgress)),
	} {
		if err := e.UpsertNetworkPolicy(np); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []struct {
		name    string
		change  func()
		allowed bool
	}{
		{"cli alone", func() {}, true},
		{"a pod of another app claims cli's address", func() { upsert("intruder", "node-b", cli.V4, "app", "other") }, false},
		{"it takes cli's labels", func() { upsert("intruder", "node-b", cli.V4, "app", "cli") }, true},
		{"an egress policy isolates it alone", func() { upsert("intruder", "node-b", cli.V4, "app", "cli", "role", "locked") }, false},
		{"it is deleted", func() { e.DeletePod("prod", "intruder") }, true},
	} {
		st.change()
		enforcer.FlushToKernel(t, st.name, e, k)
		probeAll(t, st.name, []packetCase{{cli, web.V4, 8080, st.allowed}})
	}
}
