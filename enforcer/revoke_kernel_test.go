package enforcer_test

// Revocation with real packets: the engine programs a node namespace, real
// connections cross it, and RevokeDenied deletes their conntrack entries
// through nft.Conntrack. Topology (routed, every pod on node-a):
//
//	prod/web  198.18.1.10 2001:db8:1::10  app=web, serves tcp 8080 (echo) and 8081, udp 5353
//	dev/cli   198.18.1.20 2001:db8:1::20  app=cli (namespace dev, env=dev)
//	prod/mon  198.18.1.30 2001:db8:1::30  app=mon, allowed throughout
//
// prod/web admits {namespace env=dev, pod app=cli} and {pod app=mon} on tcp
// 8080-8081 and udp 5353; dev/cli-egress lets cli reach pods of prod (and
// nothing else). Each change below denies cli, whose TCP (IPv4) and UDP
// (IPv6) connections must then stop while mon's TCP connection goes on; on
// tcp 8081 web speaks first after the cut (TCP picks its segment up as a
// new connection from web to cli, which the program must drop).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// cutWithin is how soon a revoked connection must stop carrying data once
// its entry is deleted.
const cutWithin = time.Second

// revokePods are the pods of the IP plan, not yet wired.
func revokePods() (web, cli, mon *nfttest.Pod) {
	pod := func(name, v4, v6 string) *nfttest.Pod {
		return &nfttest.Pod{Name: name, V4: netip.MustParseAddr(v4), V6: netip.MustParseAddr(v6)}
	}
	return pod("web", "198.18.1.10", "2001:db8:1::10"), pod("cli", "198.18.1.20", "2001:db8:1::20"),
		pod("mon", "198.18.1.30", "2001:db8:1::30")
}

func TestPrivilegedRevokeCutsConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	node, _, e := newKernelEngine(t)
	ctx := context.Background()
	web, cli, mon := revokePods()
	nfttest.WirePods(t, node, false, web, cli, mon)
	nfttest.Serve(t, web, []int{8080}, 5353)
	ct, err := nft.NewConntrack(nft.ConntrackNetNS(node.FD))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ct.Close() })

	webPolicy := func(peerList ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
		return mkPolicy("prod", "web", selecting(sel("app", "web")),
			ingress(peerList, portRange(TCP, 8080, 8081), port(UDP, 5353)))
	}
	cliEgress := func(to metav1.LabelSelector) *networkingv1.NetworkPolicy {
		return mkPolicy("dev", "cli-egress", selecting(sel("app", "cli")), types(networkingv1.PolicyTypeEgress),
			egress(peers(nsPodPeer(sel("kubernetes.io/metadata.name", "prod"), to))))
	}
	cliPeer := nsPodPeer(sel("env", "dev"), sel("app", "cli"))
	monPeer := podPeer(sel("app", "mon"))
	cliPod := func(app string) *corev1.Pod {
		return mkPod("dev", "cli", podLabels("app", app), podIPs(cli.V4.String(), cli.V6.String()))
	}
	// allowAll is the state before each change: cli and mon admitted, and
	// cli isolated for egress when the change concerns its egress (so that
	// the other cases show what ingress isolation alone does).
	allowAll := func(cliIsolated bool) {
		t.Helper()
		for _, err := range []error{
			e.UpsertNamespace(mkNamespace("prod")), e.UpsertNamespace(mkNamespace("dev", "env", "dev")),
			e.UpsertPod(mkPod("prod", "web", podLabels("app", "web"), podIPs(web.V4.String(), web.V6.String()))),
			e.UpsertPod(cliPod("cli")),
			e.UpsertPod(mkPod("prod", "mon", podLabels("app", "mon"), podIPs(mon.V4.String(), mon.V6.String()))),
			e.UpsertNetworkPolicy(webPolicy(cliPeer, monPeer)),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		e.DeleteNetworkPolicy("dev", "cli-egress")
		if cliIsolated {
			if err := e.UpsertNetworkPolicy(cliEgress(metav1.LabelSelector{})); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name   string
		change func() error
		// cliIsolated: cli is isolated for egress before the change.
		cliIsolated bool
	}{
		{"peer label change", func() error { return e.UpsertPod(cliPod("old")) }, false},
		{"namespace leaving a selector", func() error { return e.UpsertNamespace(mkNamespace("dev", "env", "old")) }, false},
		{"policy edit", func() error { return e.UpsertNetworkPolicy(webPolicy(monPeer)) }, false},
		{"egress policy edit", func() error { return e.UpsertNetworkPolicy(cliEgress(sel("app", "mon"))) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allowAll(tc.cliIsolated)
			// A sweep now deletes nothing: everything is allowed.
			if res, err := e.RevokeDenied(ctx, ct); err != nil || res.Deleted != 0 {
				t.Fatalf("sweep before the change: %+v, %v", res, err)
			}
			conns := map[string]net.Conn{
				"cli tcp": nfttest.MustDial(t, cli, "tcp", netip.AddrPortFrom(web.V4, 8080)),
				"cli udp": nfttest.MustDial(t, cli, "udp", netip.AddrPortFrom(web.V6, 5353)),
				"mon tcp": nfttest.MustDial(t, mon, "tcp", netip.AddrPortFrom(web.V4, 8080)),
			}
			pushClient, pushServer := nfttest.MustConnect(t, cli, web, netip.AddrPortFrom(web.V4, 8081))
			for name, c := range conns {
				if err := nfttest.EchoWithin(c, "before", cutWithin); err != nil {
					t.Fatalf("%s before the change: %v", name, err)
				}
			}
			if _, err := pushServer.Write([]byte("before")); err != nil {
				t.Fatal(err)
			}
			if err := nfttest.ReceiveWithin(pushClient, "before", cutWithin); err != nil {
				t.Fatalf("cli tcp 8081 before the change: %v", err)
			}

			start := time.Now()
			if err := tc.change(); err != nil {
				t.Fatal(err)
			}
			fr, err := e.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !fr.Restricts {
				t.Errorf("the flush of a change that denies cli does not say Restricts: %+v", fr)
			}
			rr, err := e.RevokeDenied(ctx, ct)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("change to entries deleted: %v (flush %v, sweep %v: %d of %d entries deleted)",
				time.Since(start), fr.Duration, rr.Duration, rr.Deleted, rr.Examined)
			if rr.Deleted != 3 {
				t.Errorf("sweep deleted %d entries, want cli's 3", rr.Deleted)
			}

			var wg sync.WaitGroup
			errs := map[string]error{}
			var mu sync.Mutex
			report := func(name string, err error) {
				mu.Lock()
				errs[name] = err
				mu.Unlock()
			}
			for name, c := range conns {
				wg.Go(func() { report(name, nfttest.EchoWithin(c, "after", cutWithin)) })
			}
			// web writes first, then cli: neither gets through.
			wg.Go(func() {
				if _, err := pushServer.Write([]byte("push")); err != nil {
					report("web's push", err)
					return
				}
				report("web's push", nfttest.ReceiveWithin(pushClient, "push", cutWithin))
				if _, err := pushClient.Write([]byte("pull")); err != nil {
					report("cli's answer", err)
					return
				}
				report("cli's answer", nfttest.ReceiveWithin(pushServer, "pull", cutWithin))
			})
			// A new connection that policy allows works.
			wg.Go(func() {
				ok, err := nfttest.Probe(mon, "tcp", netip.AddrPortFrom(web.V6, 8080))
				if err == nil && !ok {
					err = errors.New("refused")
				}
				report("mon's new connection", err)
			})
			wg.Wait()
			for _, name := range []string{"cli tcp", "cli udp", "web's push", "cli's answer"} {
				if err := errs[name]; !nfttest.IsTimeout(err) {
					t.Errorf("%s after the sweep: %v, want it cut (a timeout)", name, err)
				}
			}
			for _, name := range []string{"mon tcp", "mon's new connection"} {
				if err := errs[name]; err != nil {
					t.Errorf("%s: %v, want it through", name, err)
				}
			}
		})
	}
}

// BenchmarkPrivilegedRevokeSweep is one real sweep: a node namespace whose
// conntrack table holds n UDP connections that cli sprayed at web (each to
// another port, so each is a distinct flow), judged by an engine that knows
// both pods. With isolated=true a policy isolates web for ingress and admits
// cli on every UDP port, so every entry costs a Decide and none is deleted;
// with isolated=false no policy exists and no entry needs one. Needs
// CAP_NET_ADMIN.
func BenchmarkPrivilegedRevokeSweep(b *testing.B) {
	ctx := context.Background()
	for _, isolated := range []bool{true, false} {
		for _, n := range []int{1_000, 10_000} {
			b.Run(fmt.Sprintf("isolated=%v/entries=%d", isolated, n), func(b *testing.B) {
				node := nfttest.NewNetNS(b)
				web := &nfttest.Pod{Name: "web", V4: netip.MustParseAddr("198.18.1.10")}
				cli := &nfttest.Pod{Name: "cli", V4: netip.MustParseAddr("198.18.1.20")}
				nfttest.WirePods(b, node, false, web, cli)
				k, err := nft.NewKernel(nft.WithNetNS(node.FD), nft.WithTable("nftw-enforcer"))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = k.Close() })
				e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Dataplane: k, Logger: quietLogger})
				if err != nil {
					b.Fatal(err)
				}
				_ = e.UpsertNamespace(mkNamespace("prod"))
				_ = e.UpsertPod(mkPod("prod", "web", podLabels("app", "web"), podIPs(web.V4.String())))
				_ = e.UpsertPod(mkPod("prod", "cli", podLabels("app", "cli"), podIPs(cli.V4.String())))
				if isolated {
					_ = e.UpsertNetworkPolicy(mkPolicy("prod", "web", selecting(sel("app", "web")),
						ingress(peers(podPeer(sel("app", "cli"))), protoOnly(UDP))))
				}
				if _, err := e.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				ct, err := nft.NewConntrack(nft.ConntrackNetNS(node.FD))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = ct.Close() })
				if err := nfttest.SprayUDP(cli, web.V4, n); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				var res enforcer.RevokeResult
				for range b.N {
					if res, err = e.RevokeDenied(ctx, ct); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if res.Deleted != 0 || res.Examined < n*9/10 {
					b.Fatalf("sweep: %+v, want none of about %d entries deleted", res, n)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/sweep")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*res.Examined), "ns/entry")
			})
		}
	}
}

// TestPrivilegedRevokeUDPReplyInFlight: a reply that leaves the server
// after the sweep deleted its flow's entry creates the entry again,
// reversed (web -> cli, which policy allows), and cli's datagrams pass as
// its replies. The follow-up sweep (RevokeResult.FollowUp) deletes exactly
// that entry, and the flow stays cut. Topology as above, without mon: web
// serves udp 5354 and admits cli there, then nobody.
func TestPrivilegedRevokeUDPReplyInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	node, _, e := newKernelEngine(t)
	ctx := context.Background()
	web, cli, _ := revokePods()
	nfttest.WirePods(t, node, false, web, cli)
	server := nfttest.ServeUDPEcho(t, web, 5354)
	ct, err := nft.NewConntrack(nft.ConntrackNetNS(node.FD))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ct.Close() })
	for _, err := range []error{
		e.UpsertNamespace(mkNamespace("prod")),
		e.UpsertPod(mkPod("prod", "web", podLabels("app", "web"), podIPs(web.V4.String(), web.V6.String()))),
		e.UpsertPod(mkPod("prod", "cli", podLabels("app", "cli"), podIPs(cli.V4.String(), cli.V6.String()))),
		e.UpsertNetworkPolicy(mkPolicy("prod", "web", selecting(sel("app", "web")),
			ingress(peers(podPeer(sel("app", "cli"))), port(UDP, 5354)))),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	udp := nfttest.MustDial(t, cli, "udp", netip.AddrPortFrom(web.V4, 5354))
	if err := nfttest.EchoWithin(udp, "before", cutWithin); err != nil {
		t.Fatalf("before the change: %v", err)
	}

	// cli's datagram reaches web, whose answer is held until the entry is
	// gone: it is in flight at the cut.
	server.HoldNext()
	if _, err := udp.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	<-server.Holding()
	if err := e.UpsertNetworkPolicy(mkPolicy("prod", "web", selecting(sel("app", "web")))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := e.RevokeDenied(ctx, ct)
	if err != nil || res.Deleted != 1 || res.FollowUp.IsZero() {
		t.Fatalf("sweep after the change: %+v, %v; want cli's flow deleted and a follow-up", res, err)
	}
	server.Release()
	if err := nfttest.ReceiveWithin(udp, "held", cutWithin); err != nil {
		t.Fatalf("the answer in flight at the cut: %v; want it through (a flow of web's that policy allows)", err)
	}
	// It revived the flow: cli's datagrams are replies now.
	if err := nfttest.EchoWithin(udp, "revived", cutWithin); err != nil {
		t.Fatalf("after the answer in flight: %v; want the flow revived (else this test shows nothing)", err)
	}

	time.Sleep(time.Until(res.FollowUp))
	res, err = e.RevokeDenied(ctx, ct)
	if err != nil || res.Deleted != 1 || res.Revived != 1 {
		t.Fatalf("follow-up sweep: %+v, %v; want the revival deleted", res, err)
	}
	if err := nfttest.EchoWithin(udp, "after", cutWithin); !nfttest.IsTimeout(err) {
		t.Errorf("after the follow-up: %v, want the flow cut (a timeout)", err)
	}
	// The last check finds nothing to delete and ends the watch.
	time.Sleep(time.Until(res.FollowUp))
	for !res.FollowUp.IsZero() {
		if res, err = e.RevokeDenied(ctx, ct); err != nil || res.Deleted != 0 {
			t.Fatalf("last checks: %+v, %v; want nothing deleted", res, err)
		}
		time.Sleep(time.Until(res.FollowUp))
	}
}
