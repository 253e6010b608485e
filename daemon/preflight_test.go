package daemon

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftwarden/nftwarden/nft"
)

func TestBridgeBypass(t *testing.T) {
	sysctls := func(values map[string]string) func(string) (string, error) {
		return func(name string) (string, error) {
			v, ok := values[name]
			if !ok {
				return "", fs.ErrNotExist
			}
			return v, nil
		}
	}
	on := map[string]string{"net/bridge/bridge-nf-call-iptables": "1", "net/bridge/bridge-nf-call-ip6tables": "1"}
	tests := []struct {
		name    string
		bridges []string
		sysctl  map[string]string
		want    string // substring; "" = no problem
	}{
		{name: "no bridge, no br_netfilter", sysctl: nil},
		{name: "bridge with br_netfilter on", bridges: []string{"cni0"}, sysctl: on},
		{name: "bridge without br_netfilter", bridges: []string{"cni0"}, sysctl: nil, want: "br_netfilter is not loaded"},
		{name: "bridge with iptables calls off", bridges: []string{"cni0"},
			sysctl: map[string]string{"net/bridge/bridge-nf-call-iptables": "0", "net/bridge/bridge-nf-call-ip6tables": "1"},
			want:   "net.bridge.bridge-nf-call-iptables=0"},
		{name: "bridge with both off", bridges: []string{"br0"},
			sysctl: map[string]string{"net/bridge/bridge-nf-call-iptables": "0", "net/bridge/bridge-nf-call-ip6tables": "0"},
			want:   "bridge-nf-call-iptables=0 and net.bridge.bridge-nf-call-ip6tables=0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := bridgeBypass(tc.bridges, sysctls(tc.sysctl))
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("bridgeBypass = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOtherEnforcers(t *testing.T) {
	tests := []struct {
		name string
		inv  []nft.ChainRef
		want string
	}{
		{name: "only ours and kube-proxy", inv: []nft.ChainRef{
			{Family: "inet", Table: "nftwarden"}, {Family: "inet", Table: "nftwarden", Chain: "egress"},
			{Family: "ip", Table: "kube-proxy"}, {Family: "ip", Table: "kube-proxy", Chain: "services"},
		}},
		{name: "kube-network-policies", inv: []nft.ChainRef{{Family: "inet", Table: "kube-network-policies"}},
			want: "kube-network-policies (table inet kube-network-policies)"},
		{name: "calico nftables", inv: []nft.ChainRef{{Family: "ip", Table: "calico"}, {Family: "ip6", Table: "calico"}},
			want: "Calico (nftables mode) (table ip calico)"},
		{name: "kube-router via iptables-nft", inv: []nft.ChainRef{{Family: "ip", Table: "filter", Chain: "KUBE-ROUTER-FORWARD"}},
			want: "kube-router (table ip filter chain KUBE-ROUTER-FORWARD)"},
		{name: "a chain named like a marker table is not the table", inv: []nft.ChainRef{{Family: "ip", Table: "x", Chain: "calico"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := otherEnforcers(tc.inv, "nftwarden")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("otherEnforcers = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPreflightNodeObject runs the checks against a fake API server that has
// or lacks this daemon's Node.
func TestPreflightNodeObject(t *testing.T) {
	for _, tc := range []struct {
		name    string
		nodes   []string
		problem bool
	}{
		{name: "node registered", nodes: []string{"node-a"}},
		{name: "no such node", nodes: []string{"Node-A.example"}, problem: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			for _, n := range tc.nodes {
				if _, err := client.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			var logs bytes.Buffer
			d := &daemon{cfg: runConfig{NodeName: "node-a", Table: "nftwarden"}, log: slog.New(slog.NewTextHandler(&logs, nil)), client: client}
			results := map[string]bool{}
			d.preflight(context.Background(), func(check string, problem bool) { results[check] = problem })
			if got, ok := results[checkNodeObject]; !ok || got != tc.problem {
				t.Errorf("node-object problem = %v (reported %v), want %v; log:\n%s", got, ok, tc.problem, logs.String())
			}
			if tc.problem && !strings.Contains(logs.String(), `no Node object is named \"node-a\"`) {
				t.Errorf("log lacks the node warning:\n%s", logs.String())
			}
		})
	}
}
