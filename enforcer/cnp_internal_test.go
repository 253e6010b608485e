package enforcer

// IP plan (the network-policy-api conformance world, conformance/base/manifests.yaml,
// one pod per house namespace, labelled conformance-house=<house>):
//   harry-potter    gryffindor  198.18.0.1   (also app=seeker)
//   hermione        gryffindor  198.18.0.5   (no app label: for pod-selector subjects)
//   draco-malfoy    slytherin   198.18.0.2
//   cedric-diggory  hufflepuff  198.18.0.3
//   luna-lovegood   ravenclaw   198.18.0.4
//   host-net        hufflepuff  198.18.0.9   (hostNetwork: never a subject nor a peer)
//   outside         198.19.0.1   (no pod)

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
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
)

const (
	accept = v1beta1.ClusterNetworkPolicyRuleActionAccept
	deny   = v1beta1.ClusterNetworkPolicyRuleActionDeny
	pass   = v1beta1.ClusterNetworkPolicyRuleActionPass
)

var cnpWorld = map[string]string{ // pod -> IP
	"gryffindor/harry-potter":   "198.18.0.1",
	"gryffindor/hermione":       "198.18.0.5",
	"slytherin/draco-malfoy":    "198.18.0.2",
	"hufflepuff/cedric-diggory": "198.18.0.3",
	"ravenclaw/luna-lovegood":   "198.18.0.4",
}

func newCNPWorld(t *testing.T, log *slog.Logger) *Engine {
	t.Helper()
	return newCNPWorldOn(t, log, nil)
}

// newCNPWorldOn is newCNPWorld programming dp (nil: no dataplane).
func newCNPWorldOn(t *testing.T, log *slog.Logger, dp nft.Dataplane) *Engine {
	t.Helper()
	return newCNPWorldWith(t, Config{NodeName: "node-a", Logger: log, Dataplane: dp})
}

// newCNPWorldWith is newCNPWorld with the given configuration.
func newCNPWorldWith(t *testing.T, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"gryffindor", "slytherin", "hufflepuff", "ravenclaw"} {
		if err := e.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h, Labels: map[string]string{"conformance-house": h}}}); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(id, ip string, host bool) *corev1.Pod {
		ns, name, _ := strings.Cut(id, "/")
		l := map[string]string{"conformance-house": ns}
		if name == "harry-potter" {
			l["app"] = "seeker"
		}
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
			Spec:       corev1.PodSpec{NodeName: "node-a", HostNetwork: host},
			Status:     corev1.PodStatus{PodIP: ip, Phase: corev1.PodRunning},
		}
	}
	for id, ip := range cnpWorld {
		if err := e.UpsertPod(pod(id, ip, false)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.UpsertPod(pod("hufflepuff/host-net", "198.18.0.9", true)); err != nil {
		t.Fatal(err)
	}
	return e
}

func house(h string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchLabels: map[string]string{"conformance-house": h}}
}

type cnpTweak func(*v1beta1.ClusterNetworkPolicy)

func mkCNP(name string, tier v1beta1.Tier, prio int32, subj v1beta1.ClusterNetworkPolicySubject, tweaks ...cnpTweak) *v1beta1.ClusterNetworkPolicy {
	c := &v1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1beta1.ClusterNetworkPolicySpec{Tier: tier, Priority: prio, Subject: subj}}
	for _, tw := range tweaks {
		tw(c)
	}
	return c
}

func nsSubject(h string) v1beta1.ClusterNetworkPolicySubject {
	s := house(h)
	return v1beta1.ClusterNetworkPolicySubject{Namespaces: &s}
}

func podSubject(h string, pods metav1.LabelSelector) v1beta1.ClusterNetworkPolicySubject {
	return v1beta1.ClusterNetworkPolicySubject{Pods: &v1beta1.NamespacedPod{NamespaceSelector: house(h), PodSelector: pods}}
}

func nsPeerOf(h string) v1beta1.ClusterNetworkPolicyEgressPeer {
	s := house(h)
	return v1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: &s}
}

func podsPeerOf(h string, pods metav1.LabelSelector) v1beta1.ClusterNetworkPolicyEgressPeer {
	return v1beta1.ClusterNetworkPolicyEgressPeer{Pods: &v1beta1.NamespacedPod{NamespaceSelector: house(h), PodSelector: pods}}
}

func networksPeer(cidrs ...v1beta1.CIDR) v1beta1.ClusterNetworkPolicyEgressPeer {
	return v1beta1.ClusterNetworkPolicyEgressPeer{Networks: cidrs}
}

func cnpTCP(n int32) v1beta1.ClusterNetworkPolicyProtocol {
	return v1beta1.ClusterNetworkPolicyProtocol{TCP: &v1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &v1beta1.Port{Number: n}}}
}

func cnpUDP(n int32) v1beta1.ClusterNetworkPolicyProtocol {
	return v1beta1.ClusterNetworkPolicyProtocol{UDP: &v1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: &v1beta1.Port{Number: n}}}
}

func cnpSCTPRange(s, e int32) v1beta1.ClusterNetworkPolicyProtocol {
	return v1beta1.ClusterNetworkPolicyProtocol{SCTP: &v1beta1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: &v1beta1.Port{Range: &v1beta1.PortRange{Start: s, End: e}}}}
}

func cnpTCPRange(s, e int32) v1beta1.ClusterNetworkPolicyProtocol {
	return v1beta1.ClusterNetworkPolicyProtocol{TCP: &v1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &v1beta1.Port{Range: &v1beta1.PortRange{Start: s, End: e}}}}
}

// cnpIn adds an ingress rule whose peers are given as egress peers (the
// namespaces and pods fields are common to both).
func cnpIn(name string, a v1beta1.ClusterNetworkPolicyRuleAction, peer v1beta1.ClusterNetworkPolicyEgressPeer, protos ...v1beta1.ClusterNetworkPolicyProtocol) cnpTweak {
	return func(c *v1beta1.ClusterNetworkPolicy) {
		c.Spec.Ingress = append(c.Spec.Ingress, v1beta1.ClusterNetworkPolicyIngressRule{Name: name, Action: a, Protocols: protos,
			From: []v1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: peer.Namespaces, Pods: peer.Pods}}})
	}
}

func cnpOut(name string, a v1beta1.ClusterNetworkPolicyRuleAction, peer v1beta1.ClusterNetworkPolicyEgressPeer, protos ...v1beta1.ClusterNetworkPolicyProtocol) cnpTweak {
	return func(c *v1beta1.ClusterNetworkPolicy) {
		c.Spec.Egress = append(c.Spec.Egress, v1beta1.ClusterNetworkPolicyEgressRule{Name: name, Action: a, Protocols: protos,
			To: []v1beta1.ClusterNetworkPolicyEgressPeer{peer}})
	}
}

// npAllowingFrom is a NetworkPolicy selecting every pod of ns for ingress
// and egress, allowing ingress from house from (none: allows nothing).
func npAllowingFrom(ns, from string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "np"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	if from != "" {
		s := house(from)
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &s}}}}
	}
	return np
}

type cnpFlow struct {
	src, dst string // pod IDs of cnpWorld or addresses
	proto    corev1.Protocol
	port     uint16
	allowed  bool
	reason   string // a substring of Decision.Reason ("" = not checked)
}

func (c cnpFlow) flow() Flow {
	addr := func(s string) netip.Addr {
		if ip, ok := cnpWorld[s]; ok {
			s = ip
		}
		return netip.MustParseAddr(s)
	}
	return Flow{Src: addr(c.src), Dst: addr(c.dst), Protocol: c.proto, Port: c.port}
}

const (
	harry  = "gryffindor/harry-potter"
	herm   = "gryffindor/hermione"
	draco  = "slytherin/draco-malfoy"
	cedric = "hufflepuff/cedric-diggory"
	luna   = "ravenclaw/luna-lovegood"
)

// cnpCase is a world of CNPs and NetworkPolicies over cnpWorld with flows
// whose decisions are known.
type cnpCase struct {
	name    string
	cnps    []*v1beta1.ClusterNetworkPolicy
	nps     []*networkingv1.NetworkPolicy
	flows   []cnpFlow
	wantErr string // substring of the upsert errors ("" = none)
}

// cnpCases are the cases of TestDecideClusterNetworkPolicy, also compiled
// and traced by TestCompiledTiersMatchDecide.
func cnpCases() []cnpCase {
	tcp, udp, sctp := corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP
	return []cnpCase{
		{
			// conformance/tests/admin-network-policy-standard-ingress-tcp-rules.go,
			// ...-egress-tcp-rules.go, ...-ingress-udp/sctp-rules.go: rules
			// per protocol and port apply to that protocol and port only.
			name: "admin per-protocol rules",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("tcp-udp", v1beta1.AdminTier, 5, nsSubject("gryffindor"),
				cnpIn("deny-tcp-80-from-slytherin", deny, nsPeerOf("slytherin"), cnpTCP(80)),
				cnpOut("deny-udp-53-to-hufflepuff", deny, nsPeerOf("hufflepuff"), cnpUDP(53)))},
			flows: []cnpFlow{
				{draco, harry, tcp, 80, false, "ingress of gryffindor/harry-potter is denied by admin policy tcp-udp rule 0 (deny-tcp-80-from-slytherin)"},
				{draco, harry, tcp, 8080, true, ""},
				{draco, harry, udp, 80, true, ""},
				{harry, cedric, udp, 53, false, "egress of gryffindor/harry-potter is denied by admin policy tcp-udp rule 0 (deny-udp-53-to-hufflepuff)"},
				{harry, cedric, tcp, 53, true, ""},
				{luna, harry, tcp, 80, true, ""},
			},
		},
		{
			// conformance/tests/admin-network-policy-standard-priority.go
			// (base/admin_tier/standard-priority-field.yaml): a Deny at 50
			// wins over a Pass at 60; moved to 40 the Pass wins and the
			// Baseline Accept decides.
			name: "admin priority 50 deny before 60 pass",
			cnps: priorityWorld(60),
			flows: []cnpFlow{
				{harry, draco, tcp, 80, false, "egress of gryffindor/harry-potter is denied by admin policy priority-50-example rule 0"},
				{draco, harry, udp, 53, false, "ingress of gryffindor/harry-potter is denied by admin policy priority-50-example rule 0"},
			},
		},
		{
			name: "admin priority 40 pass before 50 deny, baseline accepts",
			cnps: priorityWorld(40),
			flows: []cnpFlow{
				{harry, draco, tcp, 80, true, "egress of gryffindor/harry-potter is passed by admin policy pass-example rule 0 (pass-all-egress-to-slytherin), then allowed by baseline policy default rule 0"},
				{draco, harry, sctp, 9003, true, "passed by admin policy pass-example rule 0 (pass-all-ingress-from-slytherin), then allowed by baseline policy default rule 0"},
			},
		},
		{
			// conformance/tests/admin-network-policy-standard-same-priority.go
			// (base/admin_tier/standard-same-priority.yaml): policies of equal
			// priority all apply, whether they share a subject with disjoint
			// rules or name the same peer from different subjects.
			name: "admin same priority all apply",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				mkCNP("same-priority-gryffindor-slytherin", v1beta1.AdminTier, 15, nsSubject("gryffindor"),
					cnpIn("", deny, nsPeerOf("slytherin"), cnpTCP(80)), cnpOut("", deny, nsPeerOf("slytherin"), cnpTCP(80))),
				mkCNP("same-priority-gryffindor-hufflepuff", v1beta1.AdminTier, 15, nsSubject("gryffindor"),
					cnpIn("", deny, nsPeerOf("hufflepuff"), cnpTCP(80)), cnpOut("", deny, nsPeerOf("hufflepuff"), cnpTCP(80))),
				mkCNP("same-priority-hufflepuff-slytherin", v1beta1.AdminTier, 15, nsSubject("hufflepuff"),
					cnpIn("", deny, nsPeerOf("slytherin"), cnpTCP(8080)), cnpOut("", deny, nsPeerOf("slytherin"), cnpTCP(8080))),
			},
			flows: []cnpFlow{
				{draco, harry, tcp, 80, false, "same-priority-gryffindor-slytherin rule 0"},
				{cedric, harry, tcp, 80, false, "denied by admin policy same-priority-gryffindor-hufflepuff rule 0"},
				{harry, cedric, tcp, 80, false, "egress of gryffindor/harry-potter is denied by admin policy same-priority-gryffindor-hufflepuff rule 0"},
				{draco, cedric, tcp, 8080, false, "ingress of hufflepuff/cedric-diggory is denied by admin policy same-priority-hufflepuff-slytherin rule 0"},
				{draco, cedric, tcp, 80, true, ""},
				{luna, harry, tcp, 80, true, ""},
			},
		},
		{
			// Equal priorities that disagree: the documented order (by name)
			// decides, "a-accept" before "b-deny".
			name: "admin same priority conflicting rules: first by name",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				mkCNP("b-deny", v1beta1.AdminTier, 7, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("slytherin"))),
				mkCNP("a-accept", v1beta1.AdminTier, 7, nsSubject("gryffindor"), cnpIn("", accept, nsPeerOf("slytherin"))),
			},
			flows: []cnpFlow{{draco, harry, tcp, 80, true, "allowed by admin policy a-accept rule 0"}},
		},
		{
			// conformance/tests/admin-network-policy-standard-gress-rules.go
			// (base/admin_tier/standard-gress-rules-combined.yaml): rules apply
			// in written order, the first match wins.
			name: "admin gress rules in written order",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("gress-rules", v1beta1.AdminTier, 4, nsSubject("gryffindor"),
				cnpIn("accept-80-from-slytherin", accept, nsPeerOf("slytherin"), cnpTCP(80)),
				cnpIn("deny-from-slytherin", deny, nsPeerOf("slytherin")),
				cnpOut("deny-to-ravenclaw", deny, nsPeerOf("ravenclaw")),
				cnpOut("accept-80-to-ravenclaw", accept, nsPeerOf("ravenclaw"), cnpTCP(80)))},
			flows: []cnpFlow{
				{draco, harry, tcp, 80, true, "allowed by admin policy gress-rules rule 0"},
				{draco, harry, tcp, 8080, false, "denied by admin policy gress-rules rule 1 (deny-from-slytherin)"},
				{harry, luna, tcp, 80, false, "denied by admin policy gress-rules rule 0 (deny-to-ravenclaw)"},
			},
		},
		{
			// conformance/tests/admin-network-policy-standard-pod-selector-rules.go:
			// a pods subject selects by namespace AND pod labels; a pods peer
			// likewise.
			name: "admin pod selector subject and peer",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("seeker", v1beta1.AdminTier, 3,
				podSubject("gryffindor", metav1.LabelSelector{MatchLabels: map[string]string{"app": "seeker"}}),
				cnpIn("", deny, podsPeerOf("slytherin", house("slytherin"))),
				cnpOut("", deny, podsPeerOf("gryffindor", metav1.LabelSelector{})))},
			flows: []cnpFlow{
				{draco, harry, tcp, 80, false, "ingress of gryffindor/harry-potter is denied by admin policy seeker rule 0"},
				{draco, herm, tcp, 80, true, ""},
				{harry, herm, tcp, 80, false, "egress of gryffindor/harry-potter is denied by admin policy seeker rule 0"},
				{herm, harry, tcp, 80, true, ""},
			},
		},
		{
			// conformance/tests/admin-network-policy-standard-port-range-rules.go
			// (base/admin_tier/standard-port-range-rules-combined.yaml).
			name: "admin port ranges",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("port-range", v1beta1.AdminTier, 8, nsSubject("gryffindor"),
				cnpIn("", deny, nsPeerOf("slytherin"), cnpTCPRange(80, 8080), cnpSCTPRange(9003, 9005)))},
			flows: []cnpFlow{
				{draco, harry, tcp, 80, false, "rule 0"},
				{draco, harry, tcp, 8080, false, ""},
				{draco, harry, tcp, 8081, true, ""},
				{draco, harry, tcp, 79, true, ""},
				{draco, harry, sctp, 9004, false, ""},
				{draco, harry, sctp, 9006, true, ""},
				{draco, harry, udp, 80, true, ""},
			},
		},
		{
			// conformance/tests/admin-network-policy-standard-egress-inline-cidr-rules.go
			// (base/admin_tier/standard-egress-inline-cidr-rules.yaml):
			// networks match addresses outside the cluster and pods' own.
			name: "admin inline CIDR egress",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("cidr", v1beta1.AdminTier, 9, nsSubject("gryffindor"),
				cnpOut("accept-draco", accept, networksPeer("198.18.0.2/32")),
				cnpOut("deny-the-rest", deny, networksPeer("198.18.0.0/15")))},
			flows: []cnpFlow{
				{harry, draco, tcp, 80, true, "allowed by admin policy cidr rule 0 (accept-draco)"},
				{harry, luna, tcp, 80, false, "denied by admin policy cidr rule 1 (deny-the-rest)"},
				{harry, "198.19.0.1", udp, 53, false, "rule 1"},
				{harry, "203.0.113.1", tcp, 443, true, ""},
			},
		},
		{
			// conformance/tests/baseline-admin-network-policy-standard-gress-rules.go
			// and ...-egress-tcp-rules.go: the Baseline tier decides for pods
			// no NetworkPolicy isolates; a Pass there is no decision.
			name: "baseline decides, pass is no decision",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				mkCNP("default", v1beta1.BaselineTier, 1, nsSubject("gryffindor"),
					cnpIn("", pass, nsPeerOf("ravenclaw")),
					cnpIn("", deny, nsPeerOf("slytherin")),
					cnpOut("", deny, nsPeerOf("hufflepuff"))),
				mkCNP("never-reached", v1beta1.BaselineTier, 2, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("ravenclaw"))),
			},
			flows: []cnpFlow{
				{draco, harry, tcp, 80, false, "ingress of gryffindor/harry-potter is denied by baseline policy default rule 1"},
				{luna, harry, tcp, 80, true, "ingress of gryffindor/harry-potter is passed by baseline policy default rule 0, then allowed (no policy decides)"},
				{harry, cedric, tcp, 80, false, "egress of gryffindor/harry-potter is denied by baseline policy default rule 0"},
				{cedric, draco, tcp, 80, true, ""},
			},
		},
		{
			// conformance/tests/admin-network-policy-standard-integration.go
			// (base/api_integration/standard-anp-np-banp.yaml): an Admin Deny
			// beats a NetworkPolicy allow.
			name: "integration: admin deny over NetworkPolicy",
			cnps: integrationWorld(deny),
			nps:  []*networkingv1.NetworkPolicy{npAllowingFrom("gryffindor", "slytherin")},
			flows: []cnpFlow{
				{draco, harry, tcp, 80, false, "denied by admin policy pass-example rule 0"},
				{cedric, harry, tcp, 80, false, "ingress of gryffindor/harry-potter is isolated by gryffindor/np and no rule allows it"},
			},
		},
		{
			// Same file: with the Admin rule turned to Pass, the
			// NetworkPolicy decides and the Baseline Deny is not consulted.
			name: "integration: admin pass, NetworkPolicy allows",
			cnps: integrationWorld(pass),
			nps:  []*networkingv1.NetworkPolicy{npAllowingFrom("gryffindor", "slytherin")},
			flows: []cnpFlow{
				{draco, harry, tcp, 80, true, "ingress of gryffindor/harry-potter is passed by admin policy pass-example rule 0, then allowed by NetworkPolicy gryffindor/np"},
			},
		},
		{
			// Same file: without the NetworkPolicy the Baseline Deny decides.
			name:  "integration: admin pass, no NetworkPolicy, baseline denies",
			cnps:  integrationWorld(pass),
			flows: []cnpFlow{{draco, harry, tcp, 80, false, "passed by admin policy pass-example rule 0, then denied by baseline policy default-deny rule 0"}},
		},
		{
			// A NetworkPolicy that isolates decides even when it allows
			// nothing: the Baseline Accept is never reached; an Admin Accept
			// overrides it.
			name: "integration: NetworkPolicy isolation beats baseline accept, admin accept beats it",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				mkCNP("baseline-accept", v1beta1.BaselineTier, 1, nsSubject("gryffindor"), cnpIn("", accept, nsPeerOf("hufflepuff"))),
				mkCNP("admin-accept", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpIn("", accept, nsPeerOf("ravenclaw"))),
			},
			nps: []*networkingv1.NetworkPolicy{npAllowingFrom("gryffindor", "")},
			flows: []cnpFlow{
				{cedric, harry, tcp, 80, false, "isolated by gryffindor/np"},
				{luna, harry, tcp, 80, true, "ingress of gryffindor/harry-potter is allowed by admin policy admin-accept rule 0"},
			},
		},
		{
			// Accept on egress stops egress evaluation only: the destination's
			// ingress still applies.
			name: "egress accept does not bypass the destination's ingress",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				mkCNP("out", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpOut("", accept, nsPeerOf("slytherin"))),
				mkCNP("in", v1beta1.AdminTier, 2, nsSubject("slytherin"), cnpIn("", deny, nsPeerOf("gryffindor"))),
			},
			flows: []cnpFlow{{harry, draco, tcp, 80, false, "egress of gryffindor/harry-potter is allowed by admin policy out rule 0; ingress of slytherin/draco-malfoy is denied by admin policy in rule 0"}},
		},
		{
			// hostNetwork pods are neither subjects nor peers (API:
			// "host-networked pods are not included").
			name:  "hostNetwork pods are not subjects or peers",
			cnps:  []*v1beta1.ClusterNetworkPolicy{mkCNP("huff", v1beta1.AdminTier, 1, nsSubject("hufflepuff"), cnpOut("", deny, nsPeerOf("gryffindor")), cnpIn("", deny, nsPeerOf("gryffindor")))},
			flows: []cnpFlow{{"198.18.0.9", harry, tcp, 80, true, ""}, {harry, "198.18.0.9", tcp, 80, true, ""}, {cedric, harry, tcp, 80, false, ""}},
		},
		// Fail closed (the peer types' docs: "For Accept rules, fail closed
		// means treat the rule as matching no traffic. For Deny and Pass
		// rules, treat the rule as a Deny all rule").
		{
			name: "invalid selector in a Deny rule denies every connection of its direction",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("bad-deny", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
				cnpIn("", deny, v1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Bogus"}}}}))},
			flows: []cnpFlow{
				{luna, harry, tcp, 80, false, "denied by admin policy bad-deny rule 0 (invalid: denies all)"},
				{harry, luna, tcp, 80, true, ""},
			},
			wantErr: "ingress rule 0: peer 0: namespaces:",
		},
		{
			name: "invalid Pass rule denies, it does not pass",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				mkCNP("bad-pass", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpIn("", pass, v1beta1.ClusterNetworkPolicyEgressPeer{})),
				mkCNP("accept-all", v1beta1.BaselineTier, 1, nsSubject("gryffindor"), cnpIn("", accept, nsPeerOf("ravenclaw"))),
			},
			flows:   []cnpFlow{{luna, harry, tcp, 80, false, "denied by admin policy bad-pass rule 0 (invalid: denies all)"}},
			wantErr: "0 peer kinds set",
		},
		{
			name: "invalid selector in an Accept rule accepts nothing",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				mkCNP("bad-accept", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
					cnpIn("", accept, podsPeerOf("ravenclaw", metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}))),
				mkCNP("deny-rest", v1beta1.BaselineTier, 1, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("ravenclaw"))),
			},
			flows:   []cnpFlow{{luna, harry, tcp, 80, false, "denied by baseline policy deny-rest rule 0"}},
			wantErr: "the Accept rule matches nothing",
		},
		{
			name: "domainNames peer: unsupported, Accept matches nothing, Deny denies all",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				mkCNP("dns-accept", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
					cnpOut("", accept, v1beta1.ClusterNetworkPolicyEgressPeer{DomainNames: []v1beta1.DomainName{"kubernetes.io"}})),
				mkCNP("dns-deny", v1beta1.AdminTier, 2, nsSubject("ravenclaw"),
					cnpOut("", deny, v1beta1.ClusterNetworkPolicyEgressPeer{DomainNames: []v1beta1.DomainName{"*.example.com"}})),
			},
			flows: []cnpFlow{
				{harry, "203.0.113.1", tcp, 443, true, "egress of gryffindor/harry-potter is not isolated"},
				{luna, cedric, tcp, 80, false, "denied by admin policy dns-deny rule 0 (invalid: denies all)"},
			},
			wantErr: "domainNames peers are not supported",
		},
		{
			name: "nodes peers and named ports with the experimental channel off: fail closed",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("exp", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
				cnpOut("", deny, v1beta1.ClusterNetworkPolicyEgressPeer{Nodes: &metav1.LabelSelector{}}),
				cnpIn("", accept, nsPeerOf("slytherin"), v1beta1.ClusterNetworkPolicyProtocol{DestinationNamedPort: "web"}))},
			nps:     []*networkingv1.NetworkPolicy{npAllowingFrom("gryffindor", "")},
			flows:   []cnpFlow{{harry, luna, tcp, 80, false, "rule 0 (invalid: denies all)"}, {draco, harry, tcp, 80, false, "isolated by gryffindor/np"}},
			wantErr: "nodes peers are not supported with the experimental channel off",
		},
		{
			name: "unknown tier: admin, denying only",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("future", "Developer", 1, nsSubject("gryffindor"),
				cnpIn("", accept, nsPeerOf("slytherin")), cnpIn("", pass, nsPeerOf("ravenclaw")), cnpIn("", deny, nsPeerOf("hufflepuff")))},
			nps: []*networkingv1.NetworkPolicy{npAllowingFrom("gryffindor", "ravenclaw")},
			flows: []cnpFlow{
				{draco, harry, tcp, 80, false, "isolated by gryffindor/np"},
				{luna, harry, tcp, 80, false, "denied by admin policy future rule 1"},
				{cedric, harry, tcp, 80, false, "denied by admin policy future rule 2"},
			},
			wantErr: `unknown tier "Developer"`,
		},
		{
			name: "invalid subject: every pod, denying only",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("no-subject", v1beta1.AdminTier, 1, v1beta1.ClusterNetworkPolicySubject{},
				cnpIn("", deny, nsPeerOf("slytherin")), cnpIn("", accept, nsPeerOf("ravenclaw")))},
			nps: []*networkingv1.NetworkPolicy{npAllowingFrom("hufflepuff", "")},
			flows: []cnpFlow{
				{draco, cedric, tcp, 80, false, "denied by admin policy no-subject rule 0"},
				{luna, cedric, tcp, 80, false, "isolated by hufflepuff/np"},
			},
			wantErr: "subject: neither namespaces nor pods is set",
		},
		{
			name: "invalid ports: range start not below end, number 0",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("ports", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
				cnpIn("", deny, nsPeerOf("slytherin"), cnpTCPRange(90, 90)), cnpOut("", accept, nsPeerOf("slytherin"), cnpTCP(0)))},
			flows:   []cnpFlow{{luna, harry, udp, 5353, false, "rule 0 (invalid: denies all)"}, {harry, draco, tcp, 80, true, "egress of gryffindor/harry-potter is not isolated"}},
			wantErr: "destinationPort 0 is out of range",
		},
	}
}

func TestDecideClusterNetworkPolicy(t *testing.T) {
	for _, tc := range cnpCases() {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, newCNPWorld(t, slog.New(slog.DiscardHandler)))
		})
	}
}

// check loads the case into e and holds the upsert errors and Decide's
// answer for each flow against the case's.
func (tc cnpCase) check(t *testing.T, e *Engine) {
	t.Helper()
	errs := tc.load(t, e)
	if got := strings.Join(errs, "\n"); tc.wantErr == "" && got != "" || !strings.Contains(got, tc.wantErr) {
		t.Errorf("upsert errors %q, want one containing %q", got, tc.wantErr)
	}
	for _, fl := range tc.flows {
		d := e.Decide(fl.flow())
		if d.Allowed != fl.allowed || !strings.Contains(d.Reason, fl.reason) {
			t.Errorf("%s -> %s %s/%d: allowed %v (%s), want %v with %q", fl.src, fl.dst, fl.proto, fl.port, d.Allowed, d.Reason, fl.allowed, fl.reason)
		}
	}
}

// load upserts the case's NetworkPolicies, then its CNPs, and returns the
// CNPs' errors.
func (tc cnpCase) load(t *testing.T, e *Engine) []string {
	t.Helper()
	for _, np := range tc.nps {
		if err := e.UpsertNetworkPolicy(np); err != nil {
			t.Fatal(err)
		}
	}
	var errs []string
	for _, c := range tc.cnps {
		if err := e.UpsertClusterNetworkPolicy(c); err != nil {
			errs = append(errs, err.Error())
		}
	}
	return errs
}

// priorityWorld is base/admin_tier/standard-priority-field.yaml with the
// Pass policy at passPriority.
func priorityWorld(passPriority int32) []*v1beta1.ClusterNetworkPolicy {
	sly := podsPeerOf("slytherin", house("slytherin"))
	subj := podSubject("gryffindor", house("gryffindor"))
	return []*v1beta1.ClusterNetworkPolicy{
		mkCNP("priority-50-example", v1beta1.AdminTier, 50, subj, cnpIn("deny-all-ingress-from-slytherin", deny, sly), cnpOut("deny-all-egress-to-slytherin", deny, sly)),
		mkCNP("pass-example", v1beta1.AdminTier, passPriority, subj, cnpIn("pass-all-ingress-from-slytherin", pass, sly), cnpOut("pass-all-egress-to-slytherin", pass, sly)),
		mkCNP("default", v1beta1.BaselineTier, 10, subj, cnpIn("", accept, sly), cnpOut("", accept, sly)),
	}
}

// integrationWorld is base/api_integration/standard-anp-np-banp.yaml: an
// Admin rule on slytherin (action a) and a Baseline Deny of slytherin.
func integrationWorld(a v1beta1.ClusterNetworkPolicyRuleAction) []*v1beta1.ClusterNetworkPolicy {
	return []*v1beta1.ClusterNetworkPolicy{
		mkCNP("pass-example", v1beta1.AdminTier, 10, nsSubject("gryffindor"), cnpIn("", a, nsPeerOf("slytherin")), cnpOut("", a, nsPeerOf("slytherin"))),
		mkCNP("default-deny", v1beta1.BaselineTier, 10, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("slytherin")), cnpOut("", deny, nsPeerOf("slytherin"))),
	}
}

// TestDecideWithoutClusterPoliciesUnchanged: a CNP that selects nobody
// still changes nothing of a decision but Tier, and deleting the last CNP
// gives back exactly the NetworkPolicy-only decisions.
func TestDecideWithoutClusterPoliciesUnchanged(t *testing.T) {
	e := newCNPWorld(t, slog.New(slog.DiscardHandler))
	if err := e.UpsertNetworkPolicy(npAllowingFrom("gryffindor", "slytherin")); err != nil {
		t.Fatal(err)
	}
	flows := []cnpFlow{{draco, harry, corev1.ProtocolTCP, 80, true, ""}, {luna, harry, corev1.ProtocolTCP, 80, false, ""}, {harry, "198.19.0.1", corev1.ProtocolUDP, 53, true, ""}}
	var before []Decision
	for _, f := range flows {
		before = append(before, e.Decide(f.flow()))
	}
	if err := e.UpsertClusterNetworkPolicy(mkCNP("x", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("slytherin")))); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(flows[0].flow()); d.Allowed || d.Ingress.Tier != tierNameAdmin || d.Ingress.Rule != "admin policy x rule 0" {
		t.Fatalf("with the CNP: %+v", d)
	}
	e.DeleteClusterNetworkPolicy("x")
	e.DeleteClusterNetworkPolicy("x") // deleting what is absent is a no-op
	for i, f := range flows {
		if diff := cmp.Diff(before[i], e.Decide(f.flow())); diff != "" {
			t.Errorf("flow %d after delete (-before +after):\n%s", i, diff)
		}
	}
}

// loadClaimants adds to the CNP world a ravenclaw pod that reuses draco's
// address, and two admin policies that judge the claimants differently.
func loadClaimants(t *testing.T, e *Engine) {
	t.Helper()
	if err := e.UpsertPod(cnpPod("ravenclaw/cho", "198.18.0.2")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*v1beta1.ClusterNetworkPolicy{
		mkCNP("sly-out", v1beta1.AdminTier, 1, nsSubject("slytherin"), cnpOut("", deny, nsPeerOf("hufflepuff"))),
		mkCNP("to-sly", v1beta1.AdminTier, 2, nsSubject("gryffindor"), cnpOut("", deny, nsPeerOf("slytherin"))),
	} {
		if err := e.UpsertClusterNetworkPolicy(c); err != nil {
			t.Fatal(err)
		}
	}
}

// TestClusterPolicyClaimants: two live pods claiming one address are judged
// as one (doc.go): a tier that judges them differently denies; a selector
// peer matches the address only if every claimant matches.
func TestClusterPolicyClaimants(t *testing.T) {
	e := newCNPWorld(t, slog.New(slog.DiscardHandler))
	loadClaimants(t, e)
	for _, fl := range []cnpFlow{
		{draco, cedric, corev1.ProtocolTCP, 80, false, "the admin tier judges the claimants differently (admin policy sly-out rule 0; no rule)"},
		{draco, luna, corev1.ProtocolTCP, 80, true, ""},
		// Not every claimant of draco's address is in slytherin: the peer
		// does not match it.
		{harry, draco, corev1.ProtocolTCP, 80, true, ""},
	} {
		if d := e.Decide(fl.flow()); d.Allowed != fl.allowed || !strings.Contains(d.Reason, fl.reason) {
			t.Errorf("%s -> %s: allowed %v (%s), want %v with %q", fl.src, fl.dst, d.Allowed, d.Reason, fl.allowed, fl.reason)
		}
	}
}

// TestUpsertClusterPolicyLogsOncePerVersion: an identical upsert returns the
// same error without logging it again; a changed one is logged.
func TestUpsertClusterPolicyLogsOncePerVersion(t *testing.T) {
	var buf bytes.Buffer
	e := newCNPWorld(t, slog.New(slog.NewTextHandler(&buf, nil)))
	bad := mkCNP("bad", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpIn("", deny, v1beta1.ClusterNetworkPolicyEgressPeer{}))
	for range 3 {
		if err := e.UpsertClusterNetworkPolicy(bad); err == nil || !strings.Contains(err.Error(), "clusternetworkpolicy bad: ingress rule 0") {
			t.Fatalf("error %v", err)
		}
	}
	if n := strings.Count(buf.String(), "invalid cluster network policy"); n != 1 {
		t.Errorf("logged %d times, want 1:\n%s", n, buf.String())
	}
	bad.Spec.Priority = 2
	_ = e.UpsertClusterNetworkPolicy(bad)
	if n := strings.Count(buf.String(), "invalid cluster network policy"); n != 2 {
		t.Errorf("a new version logged %d times in all, want 2", n)
	}
	if err := e.UpsertClusterNetworkPolicy(nil); err == nil {
		t.Error("nil policy accepted")
	}
	good := mkCNP("bad", v1beta1.AdminTier, 1, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("slytherin")))
	if err := e.UpsertClusterNetworkPolicy(good); err != nil {
		t.Errorf("fixed policy: %v", err)
	}
	if len(e.cnpErrs) != 0 {
		t.Errorf("errors kept for a fixed policy: %v", e.cnpErrs)
	}
}
