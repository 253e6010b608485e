package main

// The daemon revoking for real: a fake API server, but the kernel dataplane
// and the conntrack table of a node namespace, and real connections through
// it. Topology (routed, both pods on node-a):
//
//	backend/api  198.18.1.10  app=api, serves tcp 8080 and udp 5353
//	backend/web  198.18.1.20  app=web
//
// backend/allow-web admits web to api on tcp 8080 and udp 5353; the test
// then edits it to admit tcp 9090 only.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// udpCadence is how often the test sends a datagram on the UDP flow to
// time the cut.
const udpCadence = 5 * time.Millisecond

func TestPrivilegedDaemonRevokes(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	node := nfttest.NewNetNS(t)
	api := &nfttest.Pod{Name: "api", V4: netip.MustParseAddr("198.18.1.10")}
	web := &nfttest.Pod{Name: "web", V4: netip.MustParseAddr("198.18.1.20")}
	nfttest.WirePods(t, node, false, api, web)
	nfttest.Serve(t, api, []int{8080}, 5353)
	k, err := nft.NewKernel(nft.WithNetNS(node.FD), nft.WithTable("nftw-daemon"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	ct, err := nft.NewConntrack(nft.ConntrackNetNS(node.FD))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ct.Close() })

	policy := func(ports ...networkingv1.NetworkPolicyPort) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "backend", Name: "allow-web"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
					Ports: ports,
				}},
			},
		}
	}
	portOf := func(proto corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
		p := intstr.FromInt32(n)
		return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
	}
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "backend"}},
		testPod("backend", "api", "node-a", api.V4.String()),
		testPod("backend", "web", "node-a", web.V4.String()),
		policy(portOf(corev1.ProtocolTCP, 8080), portOf(corev1.ProtocolUDP, 5353)),
	)
	logs := &syncBuffer{}
	d := &daemon{
		cfg:       runConfig{NodeName: "node-a", Table: "nftw-daemon", ResyncPeriod: time.Minute, RevokeEstablished: true},
		log:       slog.New(slog.NewTextHandler(logs, nil)),
		client:    client,
		dataplane: k,
		flows:     ct,
		notifier:  notifierFromEnv(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "ready: the dataplane enforces"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready; log:\n%s", logs)
		}
	}

	tcp := nfttest.MustDial(t, web, "tcp", netip.AddrPortFrom(api.V4, 8080))
	udp := nfttest.MustDial(t, web, "udp", netip.AddrPortFrom(api.V4, 5353))
	if err := nfttest.EchoWithin(tcp, "before", time.Second); err != nil {
		t.Fatalf("tcp before the change: %v", err)
	}
	replies := watchUDP(t, udp)
	// The sweep after the start is over and its pause (minSweepInterval)
	// too: the change below meets an idle revoker, as most changes do.
	time.Sleep(minSweepInterval + 300*time.Millisecond)

	changed := time.Now()
	if _, err := client.NetworkingV1().NetworkPolicies("backend").Update(ctx,
		policy(portOf(corev1.ProtocolTCP, 9090)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The last datagram answered was sent just before the cut (the cut may
	// come before the first datagram sent after the change).
	time.Sleep(2 * time.Second)
	last := replies()
	if last.IsZero() || last.Before(changed.Add(-100*time.Millisecond)) {
		t.Fatalf("no UDP reply in the 100 ms before the change (last %v, change %v): the test did not see the flow alive", last, changed)
	}
	t.Logf("change to cut: at most %v (UDP datagrams every %v)", max(0, last.Sub(changed)).Round(time.Millisecond)+udpCadence, udpCadence)
	if err := nfttest.EchoWithin(tcp, "after", time.Second); !nfttest.IsTimeout(err) {
		t.Errorf("tcp after the change: %v, want it cut (a timeout)", err)
	}
	if got := last.Sub(changed); got > time.Second {
		t.Errorf("the UDP flow was answered until %v after the change, want it cut within a second", got)
	}
	if !strings.Contains(logs.String(), "revoked established connections that policy now denies") {
		t.Errorf("no log line of the revocation:\n%s", logs)
	}
}

// watchUDP sends a numbered datagram on c every udpCadence until the test
// ends, and returns a function that reports when the last datagram that got
// an answer was sent.
func watchUDP(t *testing.T, c net.Conn) func() time.Time {
	t.Helper()
	type sent struct {
		seq int
		at  time.Time
	}
	sends := make(chan sent, 4096)
	lastAnswered := make(chan time.Time, 1)
	lastAnswered <- time.Time{}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(udpCadence):
			}
			at := time.Now()
			if _, err := fmt.Fprintf(c, "%d", seq); err != nil {
				return
			}
			select {
			case sends <- sent{seq, at}:
			default:
			}
		}
	}()
	go func() {
		sentAt := map[int]time.Time{}
		buf := make([]byte, 64)
		for {
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := c.Read(buf)
			for len(sends) > 0 {
				s := <-sends
				sentAt[s.seq] = s.at
			}
			select {
			case <-stop:
				return
			default:
			}
			if err != nil {
				continue
			}
			var seq int
			if _, err := fmt.Sscanf(string(buf[:n]), "%d", &seq); err != nil {
				continue
			}
			if at, ok := sentAt[seq]; ok {
				<-lastAnswered
				lastAnswered <- at
			}
		}
	}()
	return func() time.Time {
		at := <-lastAnswered
		lastAnswered <- at
		return at
	}
}
