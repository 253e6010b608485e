package daemon

// IP plan: tierWorld's (explain_test.go): shop/web 198.18.0.10, shop/api
// 198.18.1.20, secrets/db 198.18.2.30, secrets/cache 198.18.2.31,
// tools/probe 198.18.3.40; 198.19.0.1 is outside the cluster.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/enforcer"
)

var update = flag.Bool("update", false, "rewrite the golden files of explain's output")

// golden compares got with testdata/explain/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "explain", name)
	if *update {
		must(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	must(t, err)
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got; -update rewrites it):\n%s", path, diff)
	}
}

// TestExplainGolden explains flows of tierWorld in text and JSON: one port,
// a range split where the answer changes, a port name, an address.
func TestExplainGolden(t *testing.T) {
	eng := tierWorld(t)
	db := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "secrets", Name: "db"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Ports: []corev1.ContainerPort{
			{Name: "metrics", ContainerPort: 9187},
			{Name: "pg", ContainerPort: 5432, Protocol: corev1.ProtocolTCP},
		}}}},
	}
	getPod := func(ns, name string) (*corev1.Pod, error) {
		if ns+"/"+name == "secrets/db" {
			return db, nil
		}
		return nil, errors.New("not found")
	}
	for _, tc := range []struct {
		name, from, to, port string
	}{
		{"one-port", "tools/probe", "shop/web", "80"},
		{"range", "shop/web", "secrets/db", "5430-5434/tcp"},
		{"named-port", "shop/web", "secrets/db", "pg"},
		{"to-address", "shop/api", "198.19.0.1", "53/udp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := explainQueryFrom(tc.from, tc.to, tc.port)
			must(t, err)
			must(t, resolveQueryPort(&q, getPod))
			for _, output := range []string{outputText, outputJSON} {
				var out bytes.Buffer
				must(t, explain(eng, q, nil, output, &out))
				if output == outputJSON && !json.Valid(out.Bytes()) {
					t.Errorf("invalid JSON:\n%s", out.String())
				}
				golden(t, tc.name+"."+output, out.Bytes())
			}
		})
	}
}

// TestExplainAuditGolden: a policy in audit mode changes no verdict, and
// explain says what it would deny (IP plan: shop/web 198.18.0.10, shop/api
// 198.18.1.20; shop/api-quarantine, annotated for audit, isolates api for
// ingress and admits nothing).
func TestExplainAuditGolden(t *testing.T) {
	eng, err := enforcer.New(enforcer.Config{Logger: slog.New(slog.DiscardHandler)})
	must(t, err)
	must(t, eng.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	must(t, eng.UpsertPod(testPod("shop", "web", "node-a", "198.18.0.10")))
	must(t, eng.UpsertPod(testPod("shop", "api", "node-b", "198.18.1.20")))
	must(t, eng.UpsertNetworkPolicy(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-quarantine",
			Annotations: map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}))
	q, err := explainQueryFrom("shop/web", "shop/api", "80")
	must(t, err)
	for _, output := range []string{outputText, outputJSON} {
		var out bytes.Buffer
		must(t, explain(eng, q, nil, output, &out))
		golden(t, "audit."+output, out.Bytes())
	}
}

// The range 5430-5434 splits where the answer changes: three runs.
func TestExplainRangeRuns(t *testing.T) {
	q, err := explainQueryFrom("shop/web", "secrets/db", "5430-5434")
	must(t, err)
	flows, err := explainFlows(tierWorld(t), q, nil)
	must(t, err)
	var got []string
	for _, f := range flows {
		got = append(got, f.portLabel()+" "+map[bool]string{true: "allowed", false: "denied"}[f.Decision.Allowed])
	}
	if want := []string{"5430-5431 denied", "5432 allowed", "5433-5434 denied"}; !cmp.Equal(got, want) {
		t.Errorf("runs = %q, want %q", got, want)
	}
}

func TestResolveQueryPort(t *testing.T) {
	sidecar := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: "proxy", RestartPolicy: &sidecar, Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001}}},
				{Name: "migrate", Ports: []corev1.ContainerPort{{Name: "migrate", ContainerPort: 1}}},
			},
			Containers: []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 8080},
				{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP},
			}}},
		},
	}
	getPod := func(string, string) (*corev1.Pod, error) { return pod, nil }
	tests := []struct {
		to, port string
		want     uint16
		wantErr  string
	}{
		{to: "shop/web", port: "http", want: 8080},
		{to: "shop/web", port: "http/tcp", want: 8080},
		{to: "shop/web", port: "dns/udp", want: 5353},
		{to: "shop/web", port: "proxy", want: 15001}, // a sidecar's port counts
		{to: "shop/web", port: "dns", wantErr: `no TCP port named "dns"; its named ports: proxy (TCP/15001), http (TCP/8080), dns (UDP/5353)`},
		{to: "shop/web", port: "migrate", wantErr: `no TCP port named "migrate"`}, // an ordinary init container's does not
		{to: "shop/web", port: "8081", want: 8081},
		{to: "198.19.0.1", port: "http", wantErr: "a port name needs a destination pod"},
	}
	for _, tc := range tests {
		q, err := explainQueryFrom("shop/api", tc.to, tc.port)
		if err == nil {
			err = resolveQueryPort(&q, getPod)
		}
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s %s: error %v, want %q", tc.to, tc.port, err, tc.wantErr)
			}
			continue
		}
		if err != nil || q.Port.From != tc.want || q.Port.To != tc.want {
			t.Errorf("%s %s: %+v, %v; want port %d", tc.to, tc.port, q.Port, err, tc.want)
		}
	}
}

// BenchmarkExplainRange explains every port of a range between two pods of
// tierWorld (one Decide per port, runs merged), without and with --trace
// (tables: the table compiled for node-a, as kernel and as expected).
func BenchmarkExplainRange(b *testing.B) {
	eng := tierWorld(b)
	desired := eng.Desired()
	for _, ports := range []string{"1-100", "1-1000", "1-65535"} {
		for _, traced := range []bool{false, true} {
			var tables *traceTables
			name := "ports=" + ports
			if traced {
				tables = &traceTables{Node: "node-a", Table: "nftwarden", Kernel: desired, Expected: desired}
				name += "/trace"
			}
			b.Run(name, func(b *testing.B) {
				q, err := explainQueryFrom("shop/web", "secrets/db", ports)
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := explainFlows(eng, q, tables); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
