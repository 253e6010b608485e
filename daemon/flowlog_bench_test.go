package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft/nflog"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// benchWorld is a cluster of `policies` NetworkPolicies in namespaces of
// policiesPerNamespace, each namespace with podsPerNamespace pods (app-0..):
// policy j of a namespace selects app-(j mod pods) for ingress and allows
// TCP port 1000+j from app-((j+1) mod pods) of the same namespace. Pod i of
// namespace n has 198.18.n.i (n < 256 namespaces, so up to 25,600 policies).
const (
	policiesPerNamespace = 100
	podsPerNamespace     = 20
)

func benchWorld(b *testing.B, policies int) (*enforcer.Engine, int) {
	b.Helper()
	eng, err := enforcer.New(enforcer.Config{NodeName: "node-a", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	namespaces := (policies + policiesPerNamespace - 1) / policiesPerNamespace
	tcp := corev1.ProtocolTCP
	for n := range namespaces {
		ns := fmt.Sprintf("ns-%d", n)
		mustOK(b, eng.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}}))
		for i := range podsPerNamespace {
			mustOK(b, eng.UpsertPod(testPod(ns, fmt.Sprint("app-", i), "node-a", fmt.Sprintf("198.18.%d.%d", n, i+1))))
		}
		for j := range min(policiesPerNamespace, policies-n*policiesPerNamespace) {
			port := intstr.FromInt32(int32(1000 + j))
			mustOK(b, eng.UpsertNetworkPolicy(&networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprint("pol-", j)},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint("app-", j%podsPerNamespace)}},
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
					Ingress: []networkingv1.NetworkPolicyIngressRule{{
						From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint("app-", (j+1)%podsPerNamespace)}}}},
						Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
					}},
				},
			}))
		}
	}
	return eng, namespaces
}

// benchEvents are denied packets (half of them) and flows: pod i to pod
// i+2 of a namespace, to a port no policy opens or one that a policy does.
func benchEvents(namespaces int) []nflog.Event {
	var out []nflog.Event
	for n := range namespaces {
		for i := range podsPerNamespace {
			src := netip.AddrFrom4([4]byte{198, 18, byte(n), byte(i + 1)})
			dst := netip.AddrFrom4([4]byte{198, 18, byte(n), byte((i+2)%podsPerNamespace + 1)})
			out = append(out,
				nflog.Event{Prefix: "nftw deny in np", Family: nflog.IPv4, Src: src, Dst: dst, Protocol: nflog.ProtocolTCP, SrcPort: 40000, DstPort: 22, Length: 60},
				nflog.Event{Prefix: "nftw allow - flow", Family: nflog.IPv4, Src: src, Dst: dst, Protocol: nflog.ProtocolTCP, SrcPort: 40001, DstPort: 1000, Length: 60})
		}
	}
	return out
}

// BenchmarkFlowLog is the daemon's cost per logged packet: prefix, Decide
// (which names pods and policies), formatting and the write, to a discarded
// output and to a log file (with lumberjack). It reports CPU per 1,000
// events (user+system, the file's write syscalls included).
func BenchmarkFlowLog(b *testing.B) {
	for _, policies := range []int{100, 1000, 10000} {
		eng, namespaces := benchWorld(b, policies)
		events := benchEvents(namespaces)
		for _, output := range []string{"discard", "file"} {
			for _, format := range []string{formatText, formatJSON} {
				b.Run(fmt.Sprintf("policies=%d/%s/%s", policies, output, format), func(b *testing.B) {
					var out io.Writer = io.Discard
					if output == "file" {
						f, err := openFlowLogOutput(filepath.Join(b.TempDir(), "verdicts.log"), 100, 1, nil)
						if err != nil {
							b.Fatal(err)
						}
						defer f.Close()
						out = f
					}
					w, err := newFlowLogWriter(out, format)
					if err != nil {
						b.Fatal(err)
					}
					fl := newFlowLog(eng, w, &fakeEventSource{}, slog.New(slog.DiscardHandler))
					b.ReportAllocs()
					cpu := nfttest.CPUTime(b)
					b.ResetTimer()
					for i := range b.N {
						fl.handle(events[i%len(events)])
					}
					b.StopTimer()
					b.ReportMetric(float64((nfttest.CPUTime(b)-cpu).Microseconds())/float64(b.N)*1000/1000, "cpu-ms/1000events")
				})
			}
		}
	}
}

// BenchmarkFlowLogWrite is the formatting and write of one line alone (the
// part of BenchmarkFlowLog that is not Decide).
func BenchmarkFlowLogWrite(b *testing.B) {
	r := flowRecord{Time: logTime, Verdict: verdictDenied, Direction: "ingress", Src: "team-a/client", Dst: "team-b/db",
		SrcIP: netip.MustParseAddr("198.18.0.2"), DstIP: netip.MustParseAddr("198.18.1.3"), Protocol: "tcp", SrcPort: 40000, DstPort: 22,
		Policies: []string{"team-b/db-default-deny", "team-b/db-from-client"}, Reason: "default deny of team-b/db-default-deny, team-b/db-from-client",
		Site: siteNetworkPolicy, Length: 60}
	for _, format := range []string{formatText, formatJSON} {
		b.Run(format, func(b *testing.B) {
			w, err := newFlowLogWriter(io.Discard, format)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for range b.N {
				if err := w.write(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
