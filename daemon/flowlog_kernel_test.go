package daemon

// The deny log with packets: the real daemon on a kernelNode
// (kernelnode_test.go: backend/api 198.18.1.10 isolated by allow-web, which
// admits backend/web 198.18.1.20 on TCP 8080) with --log-denied, reading the
// NFLOG group of the node namespace.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/nft/nflog"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

const kernelLogGroup = 42

// startLoggingNode starts a kernelNode whose daemon logs with v (JSON lines
// into the returned buffer).
func startLoggingNode(t *testing.T, v verdictLogConfig) (*kernelNode, *syncBuffer) {
	t.Helper()
	lines := &syncBuffer{}
	n := startKernelNodeWith(t, func(n *kernelNode, d *daemon) {
		v.Format, v.Group = formatJSON, kernelLogGroup
		d.cfg.VerdictLog = v
		r, err := nflog.Open(nflog.Config{Group: kernelLogGroup, NetNS: n.node.FD, FlushTimeout: 10 * time.Millisecond})
		if err != nil {
			t.Fatalf("open the NFLOG group: %v", err)
		}
		t.Cleanup(func() { _ = r.Close() })
		d.verdicts, d.verdictOut = r, lines
	}, func(api *nfttest.Pod) { nfttest.Serve(t, api, []int{8080, 9090}, 5353) }, portOf(corev1.ProtocolTCP, 8080))
	return n, lines
}

// jsonLines parses the log's lines.
func jsonLines(t *testing.T, buf *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// waitLines waits until the log has n lines, then checks that no more come.
func waitLines(t *testing.T, buf *syncBuffer, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(jsonLines(t, buf)) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // anything more would have come by now
	got := jsonLines(t, buf)
	if len(got) != n {
		t.Fatalf("%d lines, want %d:\n%s", len(got), n, buf.String())
	}
	return got
}

// A denied connection attempt is one line naming both pods, the policy and
// the site; an allowed one none; the drop still happens.
func TestKernelDenyLogLine(t *testing.T) {
	n, lines := startLoggingNode(t, verdictLogConfig{programConfig: programConfig{LogDenied: true, Rate: 100, Burst: 200}})
	if ok, err := nfttest.Probe(n.web, "tcp", netip.AddrPortFrom(n.api.V4, 8080)); err != nil || !ok {
		t.Fatalf("allowed probe to 8080: ok %v, err %v", ok, err)
	}
	// One SYN: a dial shorter than TCP's first retransmission (1 s).
	var sport int
	if err := n.web.NS.Run(func() error {
		d := net.Dialer{Timeout: 500 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: n.web.V4.AsSlice(), Port: 40123}}
		c, err := d.Dial("tcp", netip.AddrPortFrom(n.api.V4, 9090).String())
		if err == nil {
			c.Close()
			t.Error("the denied connection to 9090 was established")
		}
		sport = 40123
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := waitLines(t, lines, 1)[0]
	want := map[string]any{"verdict": "denied", "direction": "ingress", "src": "backend/web", "dst": "backend/api", "proto": "tcp",
		"sport": float64(sport), "dport": float64(9090), "policies": "backend/allow-web", "reason": "default deny of backend/allow-web",
		"site": "np", "src_ip": "198.18.1.20", "dst_ip": "198.18.1.10", "len": float64(60)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, got[k], v, got)
		}
	}
}

// A flood of denied packets is logged at the configured rate (the kernel's
// limit: burst, then rate per second) and every packet is still dropped.
func TestKernelDenyLogRateLimit(t *testing.T) {
	const rate, burst, rounds, perRound = 10, 20, 10, 200
	n, lines := startLoggingNode(t, verdictLogConfig{programConfig: programConfig{LogDenied: true, Rate: rate, Burst: burst}})
	start := time.Now()
	for range rounds {
		if err := nfttest.SprayUDP(n.web, n.api.V4, perRound); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	got := len(jsonLines(t, lines))
	// The bucket starts full (burst) and refills at rate while the flood
	// lasts; the bounds leave room for scheduling, not for a missing limit.
	least := burst + int(float64(rate)*elapsed.Seconds()/2)
	most := burst + int(float64(rate)*(elapsed+time.Second).Seconds()) + 1
	t.Logf("%d denied datagrams in %v: %d lines (the limit allows %d-%d)", rounds*perRound, elapsed.Round(time.Millisecond), got, least, most)
	if got < least || got > most {
		t.Errorf("%d lines for a flood of %d in %v, want %d-%d", got, rounds*perRound, elapsed, least, most)
	}
	if ok, err := nfttest.Probe(n.web, "udp", netip.AddrPortFrom(n.api.V4, 5353)); err != nil || ok {
		t.Errorf("a denied UDP exchange during the limit: got through %v (err %v), want dropped", ok, err)
	}
}

// Node-wide audit mode: the connection policy would drop passes, and its
// line says would-deny and names the policy.
func TestKernelAuditLogLine(t *testing.T) {
	n, lines := startLoggingNode(t, verdictLogConfig{programConfig: programConfig{Audit: true, Rate: 100, Burst: 200}})
	client, _ := nfttest.MustConnect(t, n.web, n.api, netip.AddrPortFrom(n.api.V4, 9999))
	got := waitLines(t, lines, 1)[0]
	want := map[string]any{"verdict": "would-deny", "direction": "ingress", "src": "backend/web", "dst": "backend/api", "proto": "tcp",
		"sport": float64(client.LocalAddr().(*net.TCPAddr).Port), "dport": float64(9999), "policies": "backend/allow-web",
		"reason": "default deny of backend/allow-web", "site": "np"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, got[k], v, got)
		}
	}
}

// The flow log: an allowed new connection is one line naming the policy
// that allowed it.
func TestKernelFlowLogLine(t *testing.T) {
	n, lines := startLoggingNode(t, verdictLogConfig{programConfig: programConfig{LogAllowed: true, Rate: 100, Burst: 200}})
	client := nfttest.MustDial(t, n.web, "tcp", netip.AddrPortFrom(n.api.V4, 8080))
	if err := nfttest.Echo(client, "hello"); err != nil {
		t.Fatalf("the allowed connection: %v", err)
	}
	got := waitLines(t, lines, 1)[0]
	want := map[string]any{"verdict": "allowed", "src": "backend/web", "dst": "backend/api", "proto": "tcp",
		"sport": float64(client.LocalAddr().(*net.TCPAddr).Port), "dport": float64(8080), "policies": "backend/allow-web", "site": "flow"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, got[k], v, got)
		}
	}
	if _, ok := got["direction"]; ok {
		t.Errorf("an allowed connection's line has a direction: %v", got)
	}
}

// The per-policy counters move with traffic and appear on /metrics: three
// allowed connections and two denied datagrams of allow-web's pod.
func TestKernelPolicyCountersMetrics(t *testing.T) {
	var addr string
	n := startKernelNodeWith(t, func(_ *kernelNode, d *daemon) {
		d.cfg.VerdictLog = verdictLogConfig{programConfig: programConfig{Counters: true, Rate: 100, Burst: 200, Group: kernelLogGroup}, MetricsLimit: 10}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		d.listener, addr = ln, ln.Addr().String()
	}, func(api *nfttest.Pod) { nfttest.Serve(t, api, []int{8080}, 0) }, portOf(corev1.ProtocolTCP, 8080))
	for range 3 {
		if ok, err := nfttest.Probe(n.web, "tcp", netip.AddrPortFrom(n.api.V4, 8080)); err != nil || !ok {
			t.Fatalf("allowed probe: ok %v, err %v", ok, err)
		}
	}
	for _, port := range []uint16{7001, 7002} {
		if err := n.web.NS.Run(func() error {
			c, err := net.Dial("udp", netip.AddrPortFrom(n.api.V4, port).String())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("denied"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	series := `{direction="ingress",kind="NetworkPolicy",namespace="backend",policy="allow-web",verdict="%s"} %d`
	want := []string{
		"nftwarden_policy_packets_total" + fmt.Sprintf(series, "allowed", 3),
		"nftwarden_policy_packets_total" + fmt.Sprintf(series, "denied", 2),
	}
	var body string
	for deadline := time.Now().Add(3 * policyCountersTTL); time.Now().Before(deadline); time.Sleep(policyCountersTTL / 5) {
		_, body = httpGet(t, "http://"+addr+"/metrics")
		if strings.Contains(body, want[0]) && strings.Contains(body, want[1]) {
			return
		}
	}
	var got []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "nftwarden_policy_") {
			got = append(got, l)
		}
	}
	t.Errorf("/metrics lacks %q; its per-policy lines:\n%s", want, strings.Join(got, "\n"))
}
