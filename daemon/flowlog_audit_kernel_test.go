package daemon

// Per-policy audit mode with packets, on a kernelNode (flowlog_kernel_test.go).

import (
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// Per-policy audit mode: with allow-web annotated for audit, a connection
// it would deny passes and is logged as would-deny; without the annotation
// the next one is dropped (and logged as denied).
func TestKernelPolicyAuditAnnotation(t *testing.T) {
	n, lines := startLoggingNode(t, verdictLogConfig{programConfig: programConfig{LogDenied: true, Rate: 100, Burst: 200}})
	setAnnotation := func(value string) {
		t.Helper()
		p := allowWeb(portOf(corev1.ProtocolTCP, 8080))
		if value != "" {
			p.Annotations = map[string]string{enforcer.EnforcementAnnotation: value}
		}
		if _, err := n.client.NetworkingV1().NetworkPolicies("backend").Update(n.ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	probe9090 := func() bool {
		ok, err := nfttest.Probe(n.web, "tcp", netip.AddrPortFrom(n.api.V4, 9090))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// lineAfter waits for a line of verdict after the first n lines.
	lineAfter := func(n int, verdict string) (map[string]any, int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			all := jsonLines(t, lines)
			for _, l := range all[min(n, len(all)):] {
				if l["verdict"] == verdict {
					return l, len(all)
				}
			}
		}
		t.Fatalf("no %s line after the first %d:\n%s", verdict, n, lines.String())
		return nil, 0
	}
	wantLine := func(l map[string]any, verdict string) {
		t.Helper()
		for k, v := range map[string]any{"verdict": verdict, "src": "backend/web", "dst": "backend/api", "dport": float64(9090),
			"policies": "backend/allow-web", "reason": "default deny of backend/allow-web"} {
			if l[k] != v {
				t.Errorf("%s = %v, want %v (line %v)", k, l[k], v, l)
			}
		}
	}

	setAnnotation(enforcer.EnforcementAudit)
	for deadline := time.Now().Add(5 * time.Second); !probe9090(); {
		if time.Now().After(deadline) {
			t.Fatal("a connection allow-web would deny does not pass in audit mode")
		}
	}
	audited, seen := lineAfter(0, verdictWouldDeny)
	wantLine(audited, verdictWouldDeny)

	// Without the annotation the next connection is dropped and logged.
	setAnnotation("")
	for deadline := time.Now().Add(5 * time.Second); probe9090(); {
		if time.Now().After(deadline) {
			t.Fatal("the connection still passes after the annotation is removed")
		}
	}
	denied, _ := lineAfter(seen, verdictDenied)
	wantLine(denied, verdictDenied)
}
