package daemon

// IP plan of npWorld (NetworkPolicy only): team-a/client 198.18.0.2 and
// 2001:db8:a::2, team-b/db 198.18.1.3 and 2001:db8:b::3, team-b/cache
// 198.18.1.4 (not isolated); 198.19.0.1 is a host outside the cluster.
// tierWorld (explain_test.go) has its own plan. firstPacketWorld is npWorld
// with the pod CIDR 198.18.1.0/24, in which 198.18.1.9 is no pod's.

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft/nflog"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// updateFlowLog rewrites testdata/flowlog.{text,json} (a flag of its own: other
// golden tests of this package have theirs).
var updateFlowLog = flag.Bool("update-flowlog", false, "rewrite the golden files of the deny/flow log")

// npWorld: team-b/db is isolated for ingress by two NetworkPolicies,
// db-from-client (team-a's client on TCP 5432) and db-default-deny (no
// rules); team-a/client is isolated for egress by client-egress, which allows
// TCP 5432 and UDP 53 anywhere; team-b/cache-lockdown, in audit mode, would
// isolate team-b/cache for ingress.
func npWorld(t testing.TB) *enforcer.Engine {
	t.Helper()
	eng, err := enforcer.New(enforcer.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"team-a", "team-b"} {
		mustOK(t, eng.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}}))
	}
	client := testPod("team-a", "client", "node-a", "198.18.0.2")
	client.Status.PodIPs = append(client.Status.PodIPs, corev1.PodIP{IP: "2001:db8:a::2"})
	db := testPod("team-b", "db", "node-a", "198.18.1.3")
	db.Status.PodIPs = append(db.Status.PodIPs, corev1.PodIP{IP: "2001:db8:b::3"})
	for _, p := range []*corev1.Pod{client, db, testPod("team-b", "cache", "node-a", "198.18.1.4")} {
		mustOK(t, eng.UpsertPod(p))
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	p5432, p53 := intstr.FromInt32(5432), intstr.FromInt32(53)
	selectApp := func(app string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	clientSel := selectApp("client")
	for _, np := range []*networkingv1.NetworkPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "db-from-client"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: selectApp("db"),
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "team-a"}},
						PodSelector:       &clientSel,
					}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p5432}},
				}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "db-default-deny"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: selectApp("db"),
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			},
		},
		{
			// In audit mode: it would isolate cache, and denies nothing.
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "cache-lockdown",
				Annotations: map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: selectApp("cache"),
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "client-egress"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: selectApp("client"),
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p5432}, {Protocol: &udp, Port: &p53}},
				}},
			},
		},
	} {
		mustOK(t, eng.UpsertNetworkPolicy(np))
	}
	return eng
}

// firstPacketWorld is npWorld with first-packet isolation on
// (enforcer.Engine.SetPodCIDRs).
func firstPacketWorld(t testing.TB) *enforcer.Engine {
	t.Helper()
	eng := npWorld(t)
	mustOK(t, eng.SetPodCIDRs([]netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")}))
	return eng
}

func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// logTime is the time of every test event: the golden lines must not move.
var logTime = time.Date(2026, 12, 6, 11, 30, 0, 123456000, time.UTC)

func event(prefix, src, dst string, proto uint8, sport, dport uint16) nflog.Event {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	fam, hdr := nflog.IPv4, 20
	if s.Is6() {
		fam, hdr = nflog.IPv6, 40
	}
	return nflog.Event{Time: logTime, Prefix: prefix, Family: fam, Src: s, Dst: d, Protocol: proto, SrcPort: sport, DstPort: dport, Length: hdr + 40}
}

// goldenEvents are logged packets of both worlds, each with what it shows.
func goldenEvents() []struct {
	world string
	ev    nflog.Event
} {
	type we = struct {
		world string
		ev    nflog.Event
	}
	return []we{
		// The NetworkPolicies isolating db allow no UDP: its default deny.
		{"np", event("nftw deny in np", "198.18.0.2", "198.18.1.3", nflog.ProtocolUDP, 40000, 53)},
		// The same over IPv6, and TCP to a port no rule opens.
		{"np", event("nftw deny in np", "2001:db8:a::2", "2001:db8:b::3", nflog.ProtocolTCP, 40001, 22)},
		// Egress of the client: only 5432/tcp and 53/udp; to a host outside.
		{"np", event("nftw deny eg np", "198.18.0.2", "198.19.0.1", nflog.ProtocolTCP, 40002, 443)},
		// ICMP has no ports; no rule without ports allows it.
		{"np", event("nftw deny in np", "198.19.0.1", "198.18.1.3", nflog.ProtocolICMP, 0, 0)},
		// Audit mode: what cache-lockdown would drop, and a packet the
		// model no longer says it would (changed since).
		{"np", event("nftw audit in np", "198.19.0.1", "198.18.1.4", nflog.ProtocolTCP, 40003, 6379)},
		{"np", event("nftw audit in np", "198.18.0.2", "198.18.1.3", nflog.ProtocolTCP, 40011, 5432)},
		// The flow log: allowed both ways, by two policies.
		{"np", event("nftw allow - flow", "198.18.0.2", "198.18.1.3", nflog.ProtocolTCP, 40004, 5432)},
		// The flow log of a pod that no policy isolates.
		{"np", event("nftw allow - flow", "198.19.0.1", "198.18.1.4", nflog.ProtocolUDP, 40005, 8125)},
		// The kernel dropped it, but the model (changed since) allows it.
		{"np", event("nftw deny in np", "198.18.0.2", "198.18.1.3", nflog.ProtocolTCP, 40006, 5432)},
		// Tiers: an admin Deny rule, then a baseline Deny rule.
		{"tier", event("nftw deny in admin", "198.18.0.10", "198.18.2.31", nflog.ProtocolTCP, 40007, 80)},
		{"tier", event("nftw deny in baseline", "198.18.3.40", "198.18.0.10", nflog.ProtocolTCP, 40008, 80)},
		// Passed by the admin tier, allowed by a NetworkPolicy.
		{"tier", event("nftw allow - flow", "198.18.0.10", "198.18.2.30", nflog.ProtocolTCP, 40009, 5432)},
		// First-packet isolation: an address of the pod CIDRs that is no
		// known pod's, as destination and as source.
		{"fp", event("nftw deny in unknown", "198.18.0.2", "198.18.1.9", nflog.ProtocolTCP, 40012, 8080)},
		{"fp", event("nftw deny eg unknown", "198.18.1.9", "198.19.0.1", nflog.ProtocolUDP, 40013, 53)},
		// Not nftwarden's prefix: no line.
		{"np", event("DROP: ", "198.18.0.2", "198.18.1.3", nflog.ProtocolTCP, 40010, 1)},
	}
}

// TestFlowLogGolden writes the golden events in both formats with the real
// engine's Decide and compares with testdata/flowlog.{text,json}.
func TestFlowLogGolden(t *testing.T) {
	worlds := map[string]*enforcer.Engine{"np": npWorld(t), "tier": tierWorld(t), "fp": firstPacketWorld(t)}
	for _, format := range []string{formatText, formatJSON} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := newFlowLogWriter(&buf, format)
			if err != nil {
				t.Fatal(err)
			}
			src := &fakeEventSource{}
			for _, e := range goldenEvents() {
				newFlowLog(worlds[e.world], w, src, slog.New(slog.DiscardHandler)).handle(e.ev)
			}
			path := "testdata/flowlog." + format
			if want := nfttest.Golden(t, path, buf.String(), *updateFlowLog); buf.String() != want {
				t.Errorf("lines differ from %s (-want +got):\n%s", path, cmp.Diff(want, buf.String()))
			}
		})
	}
}

func TestNewFlowLogWriterFormat(t *testing.T) {
	if _, err := newFlowLogWriter(&bytes.Buffer{}, "yaml"); err == nil {
		t.Error("format yaml: no error")
	}
}

// fakeEventSource delivers events given to it, then closes.
type fakeEventSource struct {
	ch    chan nflog.Event
	stats nflog.Stats
}

func (f *fakeEventSource) Events() <-chan nflog.Event { return f.ch }
func (f *fakeEventSource) Stats() nflog.Stats         { return f.stats }
func (f *fakeEventSource) Run(ctx context.Context) error {
	<-ctx.Done()
	close(f.ch)
	return nil
}

// failingWriter fails every write while fail is set.
type failingWriter struct {
	fail bool
	buf  bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.fail {
		return 0, errWriteFailed
	}
	return w.buf.Write(p)
}

var errWriteFailed = &writeError{}

type writeError struct{}

func (*writeError) Error() string { return "disk full" }

// TestFlowLogRunAndMetrics runs the log over a source: each event is one
// line or one counted drop, by reason.
func TestFlowLogRunAndMetrics(t *testing.T) {
	out := &failingWriter{}
	w, err := newFlowLogWriter(out, formatJSON)
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeEventSource{ch: make(chan nflog.Event, 16), stats: nflog.Stats{QueueFull: 3, Lost: 5, Malformed: 1}}
	var logs bytes.Buffer
	fl := newFlowLog(npWorld(t), w, src, slog.New(slog.NewTextHandler(&logs, nil)))
	reg := prometheus.NewRegistry()
	reg.MustRegister(fl)

	for _, e := range goldenEvents()[:8] { // 4 denied, 2 audit, 2 allowed
		fl.handle(e.ev)
	}
	fl.handle(event("nftw nonsense", "198.18.0.2", "198.18.1.3", nflog.ProtocolTCP, 1, 2))
	out.fail = true
	fl.handle(goldenEvents()[0].ev)
	fl.handle(goldenEvents()[0].ev)
	out.fail = false
	// Through run: the source's channel, until ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	src.ch <- goldenEvents()[0].ev
	done := make(chan error)
	go func() { done <- fl.run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(fl.lines.WithLabelValues(verdictDenied)) < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}

	want := `
# HELP nftwarden_log_events_dropped_total ` + logDroppedHelp + `
# TYPE nftwarden_log_events_dropped_total counter
nftwarden_log_events_dropped_total{reason="enobufs"} 5
nftwarden_log_events_dropped_total{reason="malformed"} 1
nftwarden_log_events_dropped_total{reason="queue_full"} 3
nftwarden_log_events_dropped_total{reason="unknown_prefix"} 1
nftwarden_log_events_dropped_total{reason="write_error"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "nftwarden_log_events_dropped_total"); err != nil {
		t.Error(err)
	}
	for verdict, n := range map[string]float64{verdictDenied: 5, verdictWouldDeny: 2, verdictAllowed: 2} {
		if got := testutil.ToFloat64(fl.lines.WithLabelValues(verdict)); got != n {
			t.Errorf("log_events_total{verdict=%q} = %v, want %v", verdict, got, n)
		}
	}
	if lines := strings.Count(out.buf.String(), "\n"); lines != 9 {
		t.Errorf("%d lines written, want 9:\n%s", lines, out.buf.String())
	}
	// The failure is said once, and its end once.
	if n := strings.Count(logs.String(), "cannot write"); n != 1 {
		t.Errorf("write failure logged %d times, want once:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "written again"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, logs.String())
	}
}

// The log file is created at start (an unwritable path fails the start)
// and rotated by size, keeping the configured number of backups.
func TestFlowLogOutputFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/sub/verdicts.log"
	out, err := openFlowLogOutput(path, 1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the file is not created at start: %v", err)
	}
	line := strings.Repeat("x", 1023) + "\n"
	for range 3 * 1024 { // 3 MiB through a 1 MiB file: rotated, one backup kept
		if _, err := io.WriteString(out, line); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	// lumberjack removes old backups in the background after a rotation.
	var files []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		entries, err := os.ReadDir(dir + "/sub")
		if err != nil {
			t.Fatal(err)
		}
		files = files[:0]
		for _, e := range entries {
			files = append(files, e.Name())
		}
		if len(files) == 2 {
			break
		}
	}
	if len(files) != 2 {
		t.Errorf("files %v, want the log and one backup", files)
	}

	if _, err := openFlowLogOutput("/proc/nftwarden-test/verdicts.log", 1, 1, nil); err == nil {
		t.Error("an unwritable path: no error")
	}
	var buf bytes.Buffer
	stdout, err := openFlowLogOutput("", 1, 1, &buf)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(stdout, "line\n")
	if err := stdout.Close(); err != nil || buf.String() != "line\n" {
		t.Errorf("standard output: %q, close error %v", buf.String(), err)
	}
}
