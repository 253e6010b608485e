package daemon

// IP plan: frontend/web 198.18.0.10 + 2001:db8:a::10 (dual stack), backend/api
// 198.18.1.20 (IPv4 only), backend/v6 2001:db8:b::30 (IPv6 only); 198.19.0.1 is
// an address outside the cluster.

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

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
		in        string
		wantProto corev1.Protocol
		wantPort  uint16
		wantErr   bool
	}{
		{in: "8080", wantProto: corev1.ProtocolTCP, wantPort: 8080},
		{in: "53/udp", wantProto: corev1.ProtocolUDP, wantPort: 53},
		{in: "53/UDP", wantProto: corev1.ProtocolUDP, wantPort: 53},
		{in: "9/sctp", wantProto: corev1.ProtocolSCTP, wantPort: 9},
		{in: "65535/tcp", wantProto: corev1.ProtocolTCP, wantPort: 65535},
		{in: "0", wantErr: true},
		{in: "65536", wantErr: true},
		{in: "http", wantErr: true},
		{in: "80/icmp", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		proto, port, err := parsePort(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parsePort(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if proto != tc.wantProto || port != tc.wantPort {
			t.Errorf("parsePort(%q) = %s %d, want %s %d", tc.in, proto, port, tc.wantProto, tc.wantPort)
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
egress:   allowed (frontend/web is not isolated for egress: no policy selects it)
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
			err = explain(f, q, &out)
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
