package daemon

// IP plan: frontend/web 198.18.0.10 + 2001:db8:a::10 (dual stack), backend/api
// 198.18.1.20 (IPv4 only), backend/v6 2001:db8:b::30 (IPv6 only); 198.19.0.1 is
// an address outside the cluster.

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in      string
		want    endpoint
		wantErr bool
	}{
		{in: "frontend/web", want: endpoint{Namespace: "frontend", Name: "web"}},
		{in: "198.18.0.10", want: endpoint{Addr: netip.MustParseAddr("198.18.0.10")}},
		{in: "2001:db8::1", want: endpoint{Addr: netip.MustParseAddr("2001:db8::1")}},
		{in: "::ffff:198.18.0.10", want: endpoint{Addr: netip.MustParseAddr("198.18.0.10")}},
		{in: "web", wantErr: true},
		{in: "/web", wantErr: true},
		{in: "frontend/", wantErr: true},
		{in: "a/b/c", wantErr: true},
		{in: "198.18.0.10/32", wantErr: true},
		{in: "Frontend/web", wantErr: true},
		{in: "frontend/web_1", wantErr: true},
	}
	for _, tc := range tests {
		got, err := parseEndpoint(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseEndpoint(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if got != tc.want {
			t.Errorf("parseEndpoint(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		in      string
		want    portSpec
		wantErr bool
	}{
		{in: "8080", want: portSpec{Protocol: corev1.ProtocolTCP, From: 8080, To: 8080}},
		{in: "53/udp", want: portSpec{Protocol: corev1.ProtocolUDP, From: 53, To: 53}},
		{in: "53/UDP", want: portSpec{Protocol: corev1.ProtocolUDP, From: 53, To: 53}},
		{in: "9/sctp", want: portSpec{Protocol: corev1.ProtocolSCTP, From: 9, To: 9}},
		{in: "65535/tcp", want: portSpec{Protocol: corev1.ProtocolTCP, From: 65535, To: 65535}},
		{in: "8000-8100/tcp", want: portSpec{Protocol: corev1.ProtocolTCP, From: 8000, To: 8100}},
		{in: "1-65535/udp", want: portSpec{Protocol: corev1.ProtocolUDP, From: 1, To: 65535}},
		{in: "80-80", want: portSpec{Protocol: corev1.ProtocolTCP, From: 80, To: 80}},
		{in: "http", want: portSpec{Protocol: corev1.ProtocolTCP, Name: "http"}},
		{in: "dns-udp/udp", want: portSpec{Protocol: corev1.ProtocolUDP, Name: "dns-udp"}},
		{in: "0", wantErr: true},
		{in: "65536", wantErr: true},
		{in: "8100-8000", wantErr: true},
		{in: "0-10", wantErr: true},
		{in: "10-", wantErr: true},
		{in: "-10", wantErr: true},
		{in: "10-x", wantErr: true},
		{in: "Http", wantErr: true},
		{in: "a-name-too-long-for-a-port", wantErr: true},
		{in: "80/icmp", wantErr: true},
		{in: "http/icmp", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		got, err := parsePort(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parsePort(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if got != tc.want {
			t.Errorf("parsePort(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// fakeDecider answers with fixed decisions and records the flows asked.
type fakeDecider struct {
	pods  map[string][]netip.Addr
	flows []enforcer.Flow
	d     enforcer.Decision
}

func (f *fakeDecider) PodIPs(ns, name string) ([]netip.Addr, bool) {
	ips, ok := f.pods[ns+"/"+name]
	return ips, ok
}

func (f *fakeDecider) Decide(fl enforcer.Flow) enforcer.Decision {
	f.flows = append(f.flows, fl)
	return f.d
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestExplainOutput(t *testing.T) {
	pods := map[string][]netip.Addr{
		"frontend/web":  addrs("198.18.0.10", "2001:db8:a::10"),
		"backend/api":   addrs("198.18.1.20"),
		"backend/v6":    addrs("2001:db8:b::30"),
		"backend/no-ip": nil,
	}
	allowed := enforcer.Decision{
		Allowed: true,
		Egress:  enforcer.DirectionDecision{Pod: "frontend/web", Allowed: true},
		Ingress: enforcer.DirectionDecision{Pod: "backend/api", Isolated: true, Allowed: true, Policies: []string{"backend/allow-web", "backend/allow-all-8080"}},
		Reason:  "allowed: egress of frontend/web is not isolated; ingress of backend/api is allowed by backend/allow-web",
	}
	denied := enforcer.Decision{
		Egress:  enforcer.DirectionDecision{Pod: "frontend/web", Isolated: true, Policies: []string{"frontend/deny-egress"}},
		Ingress: enforcer.DirectionDecision{Allowed: true},
		Reason:  "denied: egress of frontend/web is isolated by frontend/deny-egress and no rule allows it",
	}
	tests := []struct {
		name      string
		from, to  string
		port      string
		decision  enforcer.Decision
		want      string
		wantFlows int
		wantErr   string
	}{
		{
			name: "allowed between pods", from: "frontend/web", to: "backend/api", port: "8080/tcp", decision: allowed, wantFlows: 1,
			want: `flow:     frontend/web (198.18.0.10) -> backend/api (198.18.1.20), TCP/8080
verdict:  ALLOWED
egress:   allowed (frontend/web is not isolated for egress: no policy applies)
ingress:  allowed (backend/api is isolated for ingress; allowed by backend/allow-web, backend/allow-all-8080)
reason:   allowed: egress of frontend/web is not isolated; ingress of backend/api is allowed by backend/allow-web
`,
		},
		{
			name: "denied to an external address", from: "frontend/web", to: "198.19.0.1", port: "53/udp", decision: denied, wantFlows: 1,
			want: `flow:     frontend/web (198.18.0.10) -> 198.19.0.1, UDP/53
verdict:  DENIED
egress:   DENIED (frontend/web is isolated for egress by frontend/deny-egress, and no rule of theirs allows this flow)
ingress:  allowed (the destination 198.19.0.1 is not a pod: no policy applies)
reason:   denied: egress of frontend/web is isolated by frontend/deny-egress and no rule allows it
`,
		},
		{
			name: "to an address of the pod CIDRs that is no known pod's", from: "frontend/web", to: "198.18.1.9", port: "8080/tcp", wantFlows: 1,
			decision: enforcer.Decision{
				Egress:  enforcer.DirectionDecision{Pod: "frontend/web", Allowed: true},
				Ingress: enforcer.DirectionDecision{Unknown: true},
				Reason:  "denied: egress of frontend/web is not isolated; ingress of 198.18.1.9 is denied: the address is in the node's pod CIDRs but is no known pod's",
			},
			want: `flow:     frontend/web (198.18.0.10) -> 198.18.1.9, TCP/8080
verdict:  DENIED
egress:   allowed (frontend/web is not isolated for egress: no policy applies)
ingress:  DENIED (the destination 198.18.1.9 is in the node's pod CIDRs but is no known pod of this node: first-packet isolation drops it until its pod is programmed)
reason:   denied: egress of frontend/web is not isolated; ingress of 198.18.1.9 is denied: the address is in the node's pod CIDRs but is no known pod's
`,
		},
		{
			name: "dual stack to dual stack: once per family", from: "frontend/web", to: "frontend/web", port: "80", decision: allowed, wantFlows: 2,
		},
		{
			name: "IPv6 only peer picks the IPv6 address", from: "frontend/web", to: "backend/v6", port: "80", decision: allowed, wantFlows: 1,
		},
		{name: "no common family", from: "backend/api", to: "backend/v6", port: "80", wantErr: "no address family in common"},
		{name: "unknown pod", from: "backend/nope", to: "backend/api", port: "80", wantErr: "--from: pod backend/nope not found"},
		{name: "pod without IP", from: "backend/api", to: "backend/no-ip", port: "80", wantErr: "--to: pod backend/no-ip has no IP address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := explainQueryFrom(tc.from, tc.to, tc.port)
			if err != nil {
				t.Fatal(err)
			}
			f := &fakeDecider{pods: pods, d: tc.decision}
			var out bytes.Buffer
			err = explain(f, q, nil, outputText, &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("explain error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(f.flows) != tc.wantFlows {
				t.Errorf("%d flows decided, want %d: %+v", len(f.flows), tc.wantFlows, f.flows)
			}
			for _, fl := range f.flows {
				if fl.Src.Is4() != fl.Dst.Is4() {
					t.Errorf("flow mixes address families: %+v", fl)
				}
			}
			if tc.want != "" {
				if diff := cmp.Diff(tc.want, out.String()); diff != "" {
					t.Errorf("output (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// tierWorld is a model with both ClusterNetworkPolicy tiers and
// NetworkPolicies (IP plan: shop/web 198.18.0.10, shop/api 198.18.1.20,
// secrets/db 198.18.2.30, secrets/cache 198.18.2.31, tools/probe 198.18.3.40):
//
//   - admin deny-to-secrets (subject namespace secrets), ingress rules in
//     order: 0 allow-tools (Accept from tools), 1 pass-shop-db (Pass from
//     shop on TCP 5432), 2 deny-all (Deny from every namespace);
//   - baseline default-deny-shop (subject namespace shop): 0 deny-all;
//   - NetworkPolicy secrets/db-from-web: db admits shop's web on TCP 5432;
//   - NetworkPolicy shop/api-from-tools: api admits tools.
func tierWorld(t testing.TB) *enforcer.Engine {
	t.Helper()
	eng, err := enforcer.New(enforcer.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	nsSel := func(ns string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	}
	for _, ns := range []string{"shop", "secrets", "tools"} {
		must(t, eng.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}}))
	}
	for _, p := range []*corev1.Pod{
		testPod("shop", "web", "node-a", "198.18.0.10"), testPod("shop", "api", "node-b", "198.18.1.20"),
		testPod("secrets", "db", "node-a", "198.18.2.30"), testPod("secrets", "cache", "node-a", "198.18.2.31"),
		testPod("tools", "probe", "node-b", "198.18.3.40"),
	} {
		must(t, eng.UpsertPod(p))
	}
	tcp := corev1.ProtocolTCP
	port5432 := intstr.FromInt32(5432)
	for _, np := range []*networkingv1.NetworkPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "secrets", Name: "db-from-web"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("shop"), PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port5432}},
				}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-from-tools"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("tools")}}}},
			},
		},
	} {
		must(t, eng.UpsertNetworkPolicy(np))
	}
	from := func(ns *metav1.LabelSelector) []v1beta1.ClusterNetworkPolicyIngressPeer {
		return []v1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: ns}}
	}
	for _, cnp := range []*v1beta1.ClusterNetworkPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Name: "deny-to-secrets"},
			Spec: v1beta1.ClusterNetworkPolicySpec{
				Tier: v1beta1.AdminTier, Priority: 10,
				Subject: v1beta1.ClusterNetworkPolicySubject{Namespaces: nsSel("secrets")},
				Ingress: []v1beta1.ClusterNetworkPolicyIngressRule{
					{Name: "allow-tools", Action: v1beta1.ClusterNetworkPolicyRuleActionAccept, From: from(nsSel("tools"))},
					{Name: "pass-shop-db", Action: v1beta1.ClusterNetworkPolicyRuleActionPass, From: from(nsSel("shop")),
						Protocols: []v1beta1.ClusterNetworkPolicyProtocol{{TCP: &v1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &v1beta1.Port{Number: 5432}}}}},
					{Name: "deny-all", Action: v1beta1.ClusterNetworkPolicyRuleActionDeny, From: from(&metav1.LabelSelector{})},
				},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "default-deny-shop"},
			Spec: v1beta1.ClusterNetworkPolicySpec{
				Tier: v1beta1.BaselineTier, Priority: 10,
				Subject: v1beta1.ClusterNetworkPolicySubject{Namespaces: nsSel("shop")},
				Ingress: []v1beta1.ClusterNetworkPolicyIngressRule{
					{Name: "deny-all", Action: v1beta1.ClusterNetworkPolicyRuleActionDeny, From: from(&metav1.LabelSelector{})},
				},
			},
		},
	} {
		must(t, eng.UpsertClusterNetworkPolicy(cnp))
	}
	return eng
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestExplainTiers explains flows of tierWorld with the real engine's
// evaluator: each names the tier, policy and rule that decided, in order.
func TestExplainTiers(t *testing.T) {
	eng := tierWorld(t)
	for _, tc := range []struct {
		name, from, to, port string
		want                 string // the verdict, egress and ingress lines
	}{
		{
			name: "admin deny", from: "shop/web", to: "secrets/db", port: "80",
			want: `verdict:  DENIED
egress:   allowed (shop/web is not isolated for egress: no policy applies)
ingress:  DENIED by admin policy deny-to-secrets rule 2 (deny-all) (ingress of secrets/db)
`,
		},
		{
			name: "admin accept", from: "tools/probe", to: "secrets/db", port: "80",
			want: `verdict:  ALLOWED
egress:   allowed (tools/probe is not isolated for egress: no policy applies)
ingress:  allowed by admin policy deny-to-secrets rule 0 (allow-tools) (ingress of secrets/db)
`,
		},
		{
			name: "admin pass, then a NetworkPolicy allows", from: "shop/web", to: "secrets/db", port: "5432",
			want: `verdict:  ALLOWED
egress:   allowed (shop/web is not isolated for egress: no policy applies)
ingress:  passed by admin policy deny-to-secrets rule 1 (pass-shop-db), then allowed by NetworkPolicy secrets/db-from-web (ingress of secrets/db)
`,
		},
		{
			name: "admin pass, then a NetworkPolicy isolates", from: "shop/api", to: "secrets/db", port: "5432",
			want: `verdict:  DENIED
egress:   allowed (shop/api is not isolated for egress: no policy applies)
ingress:  passed by admin policy deny-to-secrets rule 1 (pass-shop-db), then DENIED by NetworkPolicy secrets/db-from-web: isolated, and no rule of theirs allows this flow (ingress of secrets/db)
`,
		},
		{
			name: "admin pass, then no policy", from: "shop/web", to: "secrets/cache", port: "5432",
			want: `verdict:  ALLOWED
egress:   allowed (shop/web is not isolated for egress: no policy applies)
ingress:  passed by admin policy deny-to-secrets rule 1 (pass-shop-db), then allowed: no policy applies (ingress of secrets/cache)
`,
		},
		{
			name: "baseline deny", from: "tools/probe", to: "shop/web", port: "80",
			want: `verdict:  DENIED
egress:   allowed (tools/probe is not isolated for egress: no policy applies)
ingress:  DENIED by baseline policy default-deny-shop rule 0 (deny-all) (ingress of shop/web)
`,
		},
		{
			name: "a NetworkPolicy overrides the baseline", from: "tools/probe", to: "shop/api", port: "80",
			want: `verdict:  ALLOWED
egress:   allowed (tools/probe is not isolated for egress: no policy applies)
ingress:  allowed by NetworkPolicy shop/api-from-tools (ingress of shop/api)
`,
		},
		{
			name: "no policy applies", from: "secrets/db", to: "tools/probe", port: "80",
			want: `verdict:  ALLOWED
egress:   allowed (secrets/db is not isolated for egress: no policy applies)
ingress:  allowed (tools/probe is not isolated for ingress: no policy applies)
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := explainQueryFrom(tc.from, tc.to, tc.port)
			must(t, err)
			var out bytes.Buffer
			must(t, explain(eng, q, nil, outputText, &out))
			lines := strings.SplitAfter(out.String(), "\n")
			if len(lines) < 4 {
				t.Fatalf("output too short:\n%s", out.String())
			}
			if diff := cmp.Diff(tc.want, strings.Join(lines[1:4], "")); diff != "" {
				t.Errorf("explain (-want +got):\n%s\nwhole output:\n%s", diff, out.String())
			}
		})
	}
}
