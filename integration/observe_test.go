package integration

// Seeing what policy does (issue #14), with real packets: the deny log names the
// pods, the policy and the rule of a dropped connection, once per packet; a flood is
// cut to the configured rate in the kernel while every packet is still dropped; audit
// mode lets traffic through and logs what would have been denied; per-policy counters
// and the programming-latency histogram move and show in /metrics.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/integration/cluster"
)

// logRate and logBurst are the deny log's kernel limit in these tests: low, so that
// a flood of a few thousand packets is clearly cut.
const (
	logRate  = 20
	logBurst = 10
)

// observeArgs turn on the deny log (JSON on the daemon's stdout, which the harness
// keeps in DaemonLog) and the per-policy counters.
var observeArgs = []string{"--log-denied", "--log-format", "json",
	"--log-rate", fmt.Sprint(logRate), "--log-burst", fmt.Sprint(logBurst)}

// logLine is one line of the deny/flow log (daemon/README.md documents the fields).
type logLine struct {
	Verdict   string `json:"verdict"`
	Direction string `json:"direction"`
	Src       string `json:"src"`
	Dst       string `json:"dst"`
	Protocol  string `json:"proto"`
	Port      int    `json:"dport"`
	Policy    string `json:"policies"`
	Rule      string `json:"rule"`
	Reason    string `json:"reason"`
}

// logLines returns the deny/flow log lines the node's daemon has written so far:
// the JSON lines of its output that carry a verdict.
func logLines(t *testing.T, n *cluster.Node) []logLine {
	t.Helper()
	data, err := os.ReadFile(n.DaemonLog())
	if err != nil {
		t.Fatal(err)
	}
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var l logLine
		if json.Unmarshal(line, &l) == nil && l.Verdict != "" {
			out = append(out, l)
		}
	}
	return out
}

// waitLogLines waits until match has held for at least want lines of n's log after
// the first skip lines, then a little longer so that a line too many would show, and
// returns the matching lines.
func waitLogLines(t *testing.T, n *cluster.Node, skip, want int, match func(logLine) bool) []logLine {
	t.Helper()
	deadline := time.Now().Add(converge)
	for {
		var got []logLine
		for _, l := range logLines(t, n)[skip:] {
			if match(l) {
				got = append(got, l)
			}
		}
		if len(got) >= want {
			time.Sleep(time.Second) // a duplicate would be written by now
			got = got[:0]
			for _, l := range logLines(t, n)[skip:] {
				if match(l) {
					got = append(got, l)
				}
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d log lines of %s match after %s, want %d; all lines since the start of the step:\n%+v",
				len(got), n.Name, converge, want, logLines(t, n)[skip:])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIntegrationDenyLog: y/c admits only y/d on TCP 80; one datagram from x/a to
// y/c is one "denied" line naming both pods and the policy; a flood of them is cut to
// the kernel's limit while none arrives.
func TestIntegrationDenyLog(t *testing.T) {
	tp := started(t, cluster.Options{DaemonArgs: observeArgs})
	ctx := testCtx(t)
	env, node := tp.env, env0(tp)
	must(t, env.ApplyPolicy(ctx, policy(tp.y, "c-from-d", selecting(app("c")),
		ingress(from(peers(podPeer(app("d"))), port(corev1.ProtocolTCP, 80))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.c, false)
	want.Expect(tp.d, tp.c, true)
	tp.expect(t, want, tcp80v4)

	const probePort = 5300 // served by nobody: the drop happens before delivery anyway
	for _, fam := range []int{4, 6} {
		skip := len(logLines(t, node))
		must(t, env.SendDatagrams(tp.a, tp.c.Addr(fam), probePort, 1))
		lines := waitLogLines(t, node, skip, 1, func(l logLine) bool { return l.Port == probePort })
		if len(lines) != 1 {
			t.Fatalf("IPv%d: one denied datagram gave %d log lines: %+v", fam, len(lines), lines)
		}
		l := lines[0]
		if l.Verdict != "denied" || l.Direction != "ingress" || l.Src != tp.a.String() || l.Dst != tp.c.String() ||
			!strings.EqualFold(l.Protocol, "udp") || !strings.Contains(l.Policy+" "+l.Reason, tp.y+"/c-from-d") {
			t.Fatalf("IPv%d: log line %+v; want denied ingress %s -> %s udp/%d by the default deny of %s/c-from-d", fam, l, tp.a, tp.c, probePort, tp.y)
		}
	}

	// The flood: every datagram dropped, the lines cut to burst + rate per second.
	const flood = 3000
	counter, err := env.CountDatagrams(tp.c, probePort)
	must(t, err)
	skip := len(logLines(t, node))
	start := time.Now()
	must(t, env.SendDatagrams(tp.a, tp.c.Addr(4), probePort, flood))
	took := time.Since(start)
	time.Sleep(2 * time.Second) // let the reader drain what the kernel let through
	if got := counter.Close(); got != 0 {
		t.Fatalf("%d of %d denied datagrams arrived", got, flood)
	}
	var n int
	for _, l := range logLines(t, node)[skip:] {
		if l.Port == probePort {
			n++
		}
	}
	most := logBurst + int(float64(logRate)*(took.Seconds()+2.5)) + 1
	t.Logf("flood of %d datagrams in %s: %d log lines (limit %d/s, burst %d: at most %d)", flood, took.Round(time.Millisecond), n, logRate, logBurst, most)
	if n < logBurst || n > most {
		t.Fatalf("flood of %d denied datagrams in %s gave %d log lines, want %d to %d", flood, took, n, logBurst, most)
	}
}

// waitOneLine sends one datagram from pod from to addr:port until the node's log
// shows exactly one line for it that match accepts (the daemon may still be
// programming the change that makes it so), and returns that line. Two lines for
// one datagram fail the test.
func waitOneLine(t *testing.T, env *cluster.Env, node *cluster.Node, from *cluster.Pod, addr netip.Addr, port uint16, match func(logLine) bool) logLine {
	t.Helper()
	deadline := time.Now().Add(converge)
	for {
		skip := len(logLines(t, node))
		must(t, env.SendDatagrams(from, addr, port, 1))
		time.Sleep(300 * time.Millisecond)
		var hit []logLine
		for _, l := range logLines(t, node)[skip:] {
			if l.Port == int(port) {
				hit = append(hit, l)
			}
		}
		if len(hit) == 1 && match(hit[0]) {
			return hit[0]
		}
		if len(hit) > 1 || time.Now().After(deadline) {
			t.Fatalf("lines of %s for one datagram %s -> %s:%d: %+v; none as wanted", node.Name, from, addr, port, hit)
		}
	}
}

// env0 is the node of x/a and y/c.
func env0(tp *topology) *cluster.Node { return tp.env.Nodes[0] }

// TestIntegrationAuditMode: the same policy annotated for audit lets x/a through and
// logs "would-deny"; removing the annotation enforces it at once.
func TestIntegrationAuditMode(t *testing.T) {
	tp := started(t, cluster.Options{DaemonArgs: observeArgs})
	ctx := testCtx(t)
	env, node := tp.env, env0(tp)
	audited := policy(tp.y, "c-from-d", selecting(app("c")),
		ingress(from(peers(podPeer(app("d"))), port(corev1.ProtocolTCP, 80))))
	audited.Annotations = map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}
	must(t, env.ApplyPolicy(ctx, audited))
	// Nothing changes for the packets; wait for the policy to be programmed by its
	// log line.
	open := cluster.NewReachability(tp.all, true)
	waitOneLine(t, env, node, tp.a, tp.c.Addr(4), 5301, func(l logLine) bool {
		return l.Verdict == "would-deny" && l.Src == tp.a.String() && l.Dst == tp.c.String() && strings.Contains(l.Policy+" "+l.Reason, tp.y+"/c-from-d")
	})
	tp.expect(t, open, tcp80v4, tcp80v6)

	// Enforced: the annotation goes, the drop comes.
	enforced := policy(tp.y, "c-from-d", selecting(app("c")),
		ingress(from(peers(podPeer(app("d"))), port(corev1.ProtocolTCP, 80))))
	must(t, env.ApplyPolicy(ctx, enforced))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.c, false)
	want.Expect(tp.d, tp.c, true)
	tp.expect(t, want, tcp80v4, tcp80v6)
}

// TestIntegrationNodeAudit: with --audit every policy is audited: a deny-all policy
// lets everything through and each would-be drop is logged.
func TestIntegrationNodeAudit(t *testing.T) {
	tp := started(t, cluster.Options{DaemonArgs: append([]string{"--audit"}, observeArgs...)})
	ctx := testCtx(t)
	env, node := tp.env, env0(tp)
	must(t, env.ApplyPolicy(ctx, policy(tp.y, "deny-all", selecting(nil), ingress(), egress())))
	waitOneLine(t, env, node, tp.a, tp.c.Addr(6), 5302, func(l logLine) bool {
		return l.Verdict == "would-deny" && strings.Contains(l.Policy+" "+l.Reason, tp.y+"/deny-all")
	})
	tp.expect(t, cluster.NewReachability(tp.all, true), tcp80v4, udp53v6)
}

// TestIntegrationPolicyMetrics: the per-policy counters move with traffic and show in
// /metrics, and each policy change is counted once by the programming-latency
// histogram.
func TestIntegrationPolicyMetrics(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	env, node := tp.env, env0(tp)
	const latency = `nftwarden_policy_programming_duration_seconds_count{kind="networkpolicy"}`
	before := metricOr0(t, node, latency)
	must(t, env.ApplyPolicy(ctx, policy(tp.y, "c-from-d", selecting(app("c")),
		ingress(from(peers(podPeer(app("d"))), port(corev1.ProtocolTCP, 80))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.c, false)
	want.Expect(tp.d, tp.c, true)
	tp.expect(t, want, tcp80v4)
	if after := metric(t, node, latency); after != before+1 {
		t.Fatalf("%s went from %v to %v after one policy change; want one more", latency, before, after)
	}

	const denied, allowed = 40, 7
	must(t, env.SendDatagrams(tp.a, tp.c.Addr(4), 5303, denied))
	for range allowed {
		ok, err := env.Probe(ctx, tp.d, tp.c, tcp80v4)
		must(t, err)
		if !ok {
			t.Fatal("y/d -> y/c:80 denied")
		}
	}
	series := func(verdict string) string {
		return fmt.Sprintf(`nftwarden_policy_packets_total{direction="ingress",kind="NetworkPolicy",namespace=%q,policy="c-from-d",verdict=%q}`, tp.y, verdict)
	}
	deadline := time.Now().Add(converge)
	for {
		d, a := metricOr0(t, node, series("denied")), metricOr0(t, node, series("allowed"))
		// Denied: the datagrams plus the SYNs of the matrix probes from a and b
		// above; allowed: at least the SYNs of d's probes.
		if d >= denied && a >= allowed {
			t.Logf("c-from-d: %v denied, %v allowed new-connection packets", d, a)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c-from-d counters: %v denied (want >= %d), %v allowed (want >= %d)", d, denied, a, allowed)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// metric reads one sample from the node daemon's /metrics.
func metric(t *testing.T, n *cluster.Node, sample string) float64 {
	t.Helper()
	body, err := n.DaemonGet(testCtx(t), "/metrics")
	must(t, err)
	v, err := metricValue(body, sample)
	if err != nil {
		t.Fatalf("%v in /metrics of %s", err, n.Name)
	}
	return v
}

// metricOr0 is metric for a series that may not exist yet.
func metricOr0(t *testing.T, n *cluster.Node, sample string) float64 {
	t.Helper()
	body, err := n.DaemonGet(testCtx(t), "/metrics")
	must(t, err)
	v, err := metricValue(body, sample)
	if err != nil {
		return 0
	}
	return v
}

// TestIntegrationAuditClusterNetworkPolicy: an Admin-tier Deny of y's traffic to x,
// annotated for audit, lets it through and logs "would-deny" naming the admin
// policy; without the annotation it denies.
func TestIntegrationAuditClusterNetworkPolicy(t *testing.T) {
	c := controlPlane(t)
	ctx := testCtx(t)
	installCNPCRD(t, ctx, c)
	tp := started(t, cluster.Options{DaemonArgs: observeArgs})
	env, node := tp.env, env0(tp)
	cnps := clientsFor(t, c.Config).cnp.PolicyV1beta1().ClusterNetworkPolicies()
	deny := denyNamespaceCNP(env.Name("audit-y-to-x"), policyv1beta1.AdminTier, tp.x, tp.y)
	deny.Annotations = map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}
	created, err := cnps.Create(ctx, deny, metav1.CreateOptions{})
	must(t, err)
	// y/c -> x/a stays open (both on node 0), logged as what the policy would deny.
	l := waitOneLine(t, env, node, tp.c, tp.a.Addr(4), 5304, func(l logLine) bool {
		return l.Verdict == "would-deny" && l.Src == tp.c.String() && l.Dst == tp.a.String() && strings.Contains(l.Rule+" "+l.Reason, deny.Name)
	})
	t.Logf("audit line: %+v", l)
	tp.expect(t, cluster.NewReachability(tp.all, true), tcp80v4, tcp80v6)

	// Enforced: the annotation goes, y's connections to x are dropped.
	created.Annotations = nil
	_, err = cnps.Update(ctx, created, metav1.UpdateOptions{})
	must(t, err)
	yToXDenied := cluster.NewReachability(tp.all, true)
	for _, from := range []*cluster.Pod{tp.c, tp.d} {
		for _, to := range []*cluster.Pod{tp.a, tp.b} {
			yToXDenied.Expect(from, to, false)
		}
	}
	tp.expect(t, yToXDenied, tcp80v4, tcp80v6)
}
