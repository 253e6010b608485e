package daemon

// The daemon revoking for real: a fake API server, but the kernel dataplane
// and the conntrack table of a node namespace, and real connections through
// it. Topology (routed, both pods on node-a):
//
//	backend/api  198.18.1.10  app=api, serves tcp 8080 and udp 5353 (echo),
//	                          or udp 5354 (echo whose answer the test can hold)
//	backend/web  198.18.1.20  app=web
//
// backend/allow-web admits web to api on the ports a test serves; the test
// then edits it to admit tcp 9090 only.

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// udpCadence is how often the test sends a datagram on the UDP flow to
// time the cut.
const udpCadence = 5 * time.Millisecond

func TestPrivilegedDaemonRevokes(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	n := startKernelNode(t, func(api *nfttest.Pod) { nfttest.Serve(t, api, []int{8080}, 5353) },
		portOf(corev1.ProtocolTCP, 8080), portOf(corev1.ProtocolUDP, 5353))
	tcp := nfttest.MustDial(t, n.web, "tcp", netip.AddrPortFrom(n.api.V4, 8080))
	udp := nfttest.MustDial(t, n.web, "udp", netip.AddrPortFrom(n.api.V4, 5353))
	if err := nfttest.EchoWithin(tcp, "before", time.Second); err != nil {
		t.Fatalf("tcp before the change: %v", err)
	}
	replies := watchUDP(t, udp)
	// The sweep after the start is over and its pause (minSweepInterval)
	// too: the change below meets an idle revoker, as most changes do.
	time.Sleep(minSweepInterval + 300*time.Millisecond)

	changed := time.Now()
	n.admit(t, portOf(corev1.ProtocolTCP, 9090))
	// The last datagram answered was sent just before the cut (the cut may
	// come before the first datagram sent after the change). An answer in
	// flight at the cut revives the flow until a follow-up sweep deletes it
	// again (about 100 ms later).
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
	if !strings.Contains(n.logs.String(), "revoked established connections that policy now denies") {
		t.Errorf("no log line of the revocation:\n%s", n.logs)
	}
}

// An answer that api sends after the sweep deleted the UDP flow's entry
// revives the flow (reversed: api -> web, which policy allows); the daemon's
// follow-up sweep deletes that entry on its own, and the flow stays cut.
func TestPrivilegedDaemonRevokesReplyInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	var server *nfttest.UDPEcho
	n := startKernelNode(t, func(api *nfttest.Pod) { server = nfttest.ServeUDPEcho(t, api, 5354) },
		portOf(corev1.ProtocolUDP, 5354))
	udp := nfttest.MustDial(t, n.web, "udp", netip.AddrPortFrom(n.api.V4, 5354))
	if err := nfttest.EchoWithin(udp, "before", time.Second); err != nil {
		t.Fatalf("before the change: %v", err)
	}
	// As above: the change meets an idle revoker.
	time.Sleep(minSweepInterval + 300*time.Millisecond)

	server.HoldNext()
	if _, err := udp.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	<-server.Holding()
	n.admit(t, portOf(corev1.ProtocolTCP, 9090))
	n.waitLog(t, "revoked established connections that policy now denies", 5*time.Second)
	released := time.Now()
	server.Release()
	if err := nfttest.ReceiveWithin(udp, "held", time.Second); err != nil {
		t.Fatalf("the answer in flight at the cut: %v; want it through", err)
	}
	if err := nfttest.EchoWithin(udp, "revived", time.Second); err != nil {
		t.Fatalf("after the answer in flight: %v; want the flow revived (else this test shows nothing)", err)
	}
	// Web keeps asking every 20 ms; the follow-up sweep cuts the flow
	// without anyone asking the daemon. (Were web to ask again the moment
	// an answer arrives, a delete would meet the next answer in flight
	// about half of the time, and each would revive the flow once more.)
	var (
		err      error
		answered time.Time // the last echo answered ended then
	)
	for err == nil && time.Since(released) < 3*time.Second {
		answered = time.Now()
		time.Sleep(20 * time.Millisecond)
		err = nfttest.EchoWithin(udp, "alive?", 100*time.Millisecond)
	}
	if !nfttest.IsTimeout(err) {
		t.Fatalf("the revived flow: %v, want it cut (a timeout)", err)
	}
	t.Logf("the revived flow was last answered %v after the answer in flight (asked every 20 ms)", answered.Sub(released).Round(time.Millisecond))
	if err := nfttest.EchoWithin(udp, "after", time.Second); !nfttest.IsTimeout(err) {
		t.Errorf("after the follow-up: %v, want the flow cut (a timeout)", err)
	}
	if !strings.Contains(n.logs.String(), "revived=1") {
		t.Errorf("no log line of the revival's delete:\n%s", n.logs)
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
