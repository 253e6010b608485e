package enforcer

// IP plan: the conformance world of cnp_internal_test.go (one pod per house
// namespace on node-a, 198.18.0.1-5).

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
)

// auditAnnotation is the annotation that puts a policy in audit mode.
var auditAnnotation = map[string]string{EnforcementAnnotation: EnforcementAudit}

func auditedCNP(c *v1beta1.ClusterNetworkPolicy) *v1beta1.ClusterNetworkPolicy {
	c.Annotations = auditAnnotation
	return c
}

func auditedNP(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	np.Annotations = auditAnnotation
	return np
}

// namedNP renames a policy (npAllowingFrom names them all "np").
func namedNP(name string, np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	np.Name = name
	return np
}

// auditFlow is a flow with its enforced verdict and what audit mode says:
// the tier of the first finding ("" for none) and a substring of the reason.
type auditFlow struct {
	src, dst   string
	proto      corev1.Protocol
	port       uint16
	allowed    bool
	auditTier  string
	reasonPart string
}

// auditCases are worlds of audited and enforced policies over the
// conformance world, with flows whose decisions are known.
func auditCases() []struct {
	name  string
	cfg   Config
	cnps  []*v1beta1.ClusterNetworkPolicy
	nps   []*networkingv1.NetworkPolicy
	flows []auditFlow
} {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	return []struct {
		name  string
		cfg   Config
		cnps  []*v1beta1.ClusterNetworkPolicy
		nps   []*networkingv1.NetworkPolicy
		flows []auditFlow
	}{
		{
			name: "audited NetworkPolicy alone",
			nps:  []*networkingv1.NetworkPolicy{auditedNP(npAllowingFrom("gryffindor", "slytherin"))},
			flows: []auditFlow{
				{draco, harry, tcp, 80, true, "", ""},
				{luna, harry, tcp, 80, true, tierNameNetworkPolicy, "(audit mode: would be denied by NetworkPolicy gryffindor/np, isolated and no rule allows it)"},
			},
		},
		{
			name: "an enforced NetworkPolicy isolates: the audited one is left out",
			nps: []*networkingv1.NetworkPolicy{auditedNP(npAllowingFrom("gryffindor", "ravenclaw")),
				namedNP("enforced", npAllowingFrom("gryffindor", "slytherin"))},
			flows: []auditFlow{
				{draco, harry, tcp, 80, true, "", "allowed by gryffindor/enforced"},
				{luna, harry, tcp, 80, false, "", "isolated by gryffindor/enforced"},
			},
		},
		{
			name: "audited NetworkPolicy before a Baseline deny: logged, then dropped",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("base", v1beta1.BaselineTier, 1, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("ravenclaw")))},
			nps:  []*networkingv1.NetworkPolicy{auditedNP(npAllowingFrom("gryffindor", "slytherin"))},
			flows: []auditFlow{
				{draco, harry, tcp, 80, true, "", ""},
				{luna, harry, tcp, 80, false, tierNameNetworkPolicy, "denied by baseline policy base rule 0"},
				{cedric, harry, udp, 53, true, tierNameNetworkPolicy, ""},
			},
		},
		{
			name: "audited Admin deny",
			cnps: []*v1beta1.ClusterNetworkPolicy{auditedCNP(mkCNP("try", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpIn("no-web", deny, nsPeerOf("slytherin"), cnpTCP(80))))},
			flows: []auditFlow{
				{draco, harry, tcp, 80, true, tierNameAdmin, "(audit mode: would be denied by admin policy try rule 0 (no-web))"},
				{draco, harry, tcp, 81, true, "", ""},
				{luna, harry, tcp, 80, true, "", ""},
			},
		},
		{
			name: "audited Accept before an audited Deny: its ports are not logged",
			cnps: []*v1beta1.ClusterNetworkPolicy{auditedCNP(mkCNP("try", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
				cnpIn("web", accept, nsPeerOf("slytherin"), cnpTCPRange(80, 90)), cnpIn("rest", deny, nsPeerOf("slytherin"))))},
			flows: []auditFlow{
				{draco, harry, tcp, 80, true, "", ""},
				{draco, harry, tcp, 90, true, "", ""},
				{draco, harry, tcp, 91, true, tierNameAdmin, "rule 1 (rest)"},
				{draco, harry, udp, 80, true, tierNameAdmin, "rule 1 (rest)"},
			},
		},
		{
			name: "audited Deny before an enforced one: logged and dropped",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				auditedCNP(mkCNP("try", v1beta1.AdminTier, 0, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("slytherin"), cnpTCPRange(80, 81)))),
				mkCNP("real", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("slytherin"), cnpTCP(80))),
			},
			flows: []auditFlow{
				{draco, harry, tcp, 80, false, tierNameAdmin, "denied by admin policy real rule 0"},
				{draco, harry, tcp, 81, true, tierNameAdmin, "would be denied by admin policy try rule 0"},
			},
		},
		{
			name: "an enforced Accept first: nothing to log",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				mkCNP("real", v1beta1.AdminTier, 0, nsSubject("gryffindor"), cnpIn("", accept, nsPeerOf("slytherin"), cnpTCP(80))),
				auditedCNP(mkCNP("try", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("slytherin")))),
			},
			flows: []auditFlow{
				{draco, harry, tcp, 80, true, "", "allowed by admin policy real rule 0"},
				{draco, harry, tcp, 81, true, tierNameAdmin, ""},
			},
		},
		{
			name: "node-wide audit: nothing is denied",
			cfg:  Config{Audit: true, LogDenied: true},
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("real", v1beta1.AdminTier, 0, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("slytherin"), cnpTCP(80)))},
			nps:  []*networkingv1.NetworkPolicy{auditedNP(npAllowingFrom("gryffindor", "hufflepuff"))},
			flows: []auditFlow{
				{draco, harry, tcp, 80, true, tierNameAdmin, "(audit mode: would be denied by admin policy real rule 0)"},
				{luna, harry, tcp, 80, true, tierNameNetworkPolicy, ""},
				{cedric, harry, tcp, 80, true, "", ""},
			},
		},
	}
}

// TestAuditDecideAndProgram holds Decide's enforced verdict and audit view
// to the known answers, and the program traced in nft.Fake to the verdict,
// under the deny log and counters (plain policies otherwise) or the case's
// configuration.
func TestAuditDecideAndProgram(t *testing.T) {
	for _, tc := range auditCases() {
		t.Run(tc.name, func(t *testing.T) {
			fake := nft.NewFake(nft.DefaultTable)
			cfg := tc.cfg
			if !cfg.Audit {
				cfg.LogDenied, cfg.Counters = true, true
			}
			cfg.NodeName, cfg.Logger, cfg.Dataplane = "node-a", slog.New(slog.DiscardHandler), fake
			e := newCNPWorldWith(t, cfg)
			for _, c := range tc.cnps {
				if err := e.UpsertClusterNetworkPolicy(c); err != nil {
					t.Fatal(err)
				}
			}
			for _, np := range tc.nps {
				if err := e.UpsertNetworkPolicy(np); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			checkAuditFlows(t, e, fake, cfg, tc.flows)
		})
	}
}

// checkAuditFlows holds Decide's verdict and audit view for each flow to
// the known answers, and the program traced in fake to Decide: the verdict,
// and the log lines (wantLogs).
func checkAuditFlows(t *testing.T, e *Engine, fake *nft.Fake, cfg Config, flows []auditFlow) {
	t.Helper()
	for _, af := range flows {
		f := cnpFlow{src: af.src, dst: af.dst, proto: af.proto, port: af.port}.flow()
		d := e.Decide(f)
		audit := d.Ingress.Audit
		if d.Allowed != af.allowed || (audit == nil) != (af.auditTier == "") || audit != nil && audit.Tier != af.auditTier {
			t.Errorf("%s -> %s %s/%d: Decide allowed %v audit %+v (%s), want allowed %v audit tier %q",
				af.src, af.dst, af.proto, af.port, d.Allowed, audit, d.Reason, af.allowed, af.auditTier)
		}
		if !strings.Contains(d.Reason, af.reasonPart) {
			t.Errorf("%s -> %s %s/%d: reason %q lacks %q", af.src, af.dst, af.proto, af.port, d.Reason, af.reasonPart)
		}
		ok, logs, path := TraceFlowLogs(fake, f)
		if ok != d.Allowed {
			t.Errorf("%s -> %s %s/%d: traced %v, Decide %v:\n%s", af.src, af.dst, af.proto, af.port, ok, d.Allowed, path)
		}
		if want := wantLogs(cfg, d); !slices.Equal(logs, want) {
			t.Errorf("%s -> %s %s/%d: logged %q, want %q:\n%s", af.src, af.dst, af.proto, af.port, logs, want, path)
		}
	}
}

// TestAuditNamedPorts: with the experimental channel, named ports of
// audited rules take part in what an audited Deny logs like numeric ones:
// an earlier audited rule's named port, or number, is left out of the
// later Deny's log, whichever of the two each is.
func TestAuditNamedPorts(t *testing.T) {
	for _, tc := range auditNamedCases() {
		t.Run(tc.name, func(t *testing.T) {
			fake := nft.NewFake(nft.DefaultTable)
			e := newExpWorld(t, fake, true)
			if err := e.UpsertClusterNetworkPolicy(tc.cnp); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			checkAuditFlows(t, e, fake, Config{}, tc.flows)
		})
	}
}

// TestPrivilegedKernelAcceptsAuditNamedPorts programs the worlds of
// TestAuditNamedPorts into a kernel (negated lookups of named-port sets,
// family matches): each flush is accepted and reads back as desired.
func TestPrivilegedKernelAcceptsAuditNamedPorts(t *testing.T) {
	var cases []cnpCase
	for _, tc := range auditNamedCases() {
		cases = append(cases, cnpCase{name: tc.name, cnps: []*v1beta1.ClusterNetworkPolicy{tc.cnp}})
	}
	programWorlds(t, cases, func(k *nft.Kernel) *Engine { return newExpWorld(t, k, true) })
}

// auditNamedCases are audited policies with named ports over the
// experimental world, with flows whose decisions are known.
func auditNamedCases() []struct {
	name  string
	cnp   *v1beta1.ClusterNetworkPolicy
	flows []auditFlow
} {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	return []struct {
		name  string
		cnp   *v1beta1.ClusterNetworkPolicy
		flows []auditFlow
	}{
		{
			name: "named Accept before a Deny of everything",
			cnp: auditedCNP(mkCNP("try", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
				cnpIn("web", accept, nsPeerOf("slytherin"), cnpNamed("web")), cnpIn("rest", deny, nsPeerOf("slytherin")))),
			flows: []auditFlow{
				{draco, harry, tcp, 80, true, "", ""},
				{draco, harry, tcp, 81, true, tierNameAdmin, "rule 1 (rest)"},
				{draco, harry, udp, 53, true, tierNameAdmin, "rule 1 (rest)"},
			},
		},
		{
			name: "numeric Accept before a named Deny",
			cnp: auditedCNP(mkCNP("try", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
				cnpIn("web", accept, nsPeerOf("slytherin"), cnpTCP(80)), cnpIn("named", deny, nsPeerOf("slytherin"), cnpNamed("web"), cnpNamed("dns")))),
			flows: []auditFlow{
				{draco, harry, tcp, 80, true, "", ""},
				{draco, harry, udp, 53, true, tierNameAdmin, "rule 1 (named)"},
				{draco, harry, tcp, 81, true, "", ""},
			},
		},
		{
			name: "named Pass before a named Deny of the same name",
			cnp: auditedCNP(mkCNP("try", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
				cnpIn("pass", pass, nsPeerOf("slytherin"), cnpNamed("dns")), cnpIn("named", deny, nsPeerOf("slytherin"), cnpNamed("dns"), cnpNamed("web")))),
			flows: []auditFlow{
				{draco, harry, udp, 53, true, "", ""},
				{draco, harry, tcp, 80, true, tierNameAdmin, "rule 1 (named)"},
			},
		},
	}
}

// wantLogs are the log prefixes the program should write for a flow of an
// ingress decision d: the audit finding's site, then the drop site's when
// the deny log is on and the flow is denied (node-wide audit: the first
// drop site, audited).
func wantLogs(cfg Config, d Decision) []string {
	var out []string
	if a := d.Ingress.Audit; a != nil {
		out = append(out, "nftw audit in "+DropSite(*a))
	}
	if !d.Allowed && cfg.LogDenied {
		out = append(out, "nftw deny in "+DropSite(d.Ingress))
	}
	return out
}
