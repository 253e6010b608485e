package enforcer_test

// IP plan: see helpers_test.go. The base world of these tests:
//
//	namespace prod {env=prod}:  web  node-a 198.18.1.10 2001:db8:1::10  app=web  ports http/TCP 8080, dns/UDP 53
//	                            db   node-a 198.18.1.11 2001:db8:1::11  app=db   ports pg/TCP 5432; sidecar metrics 9090;
//	                                                                           non-restartable init container port setup 7000
//	                            cli  node-b 198.18.2.10 2001:db8:2::10  app=cli
//	namespace dev {env=dev}:    cli  node-a 198.18.1.20 2001:db8:1::20  app=cli tier=fe
//	                            web  node-b 198.18.2.20 2001:db8:2::20  app=web ports http/TCP 80
//	namespace other (no labels): x   node-a 198.18.1.30 (IPv4 only)     app=x
//	                            v6   node-b 2001:db8:2::30 (IPv6 only)  app=x
//	                            host node-a hostNetwork 198.18.0.1      app=cli
//	                            done node-a Succeeded 198.18.1.99       app=cli
//	                            noip node-a (no address yet)            app=cli
//	outside: 198.19.0.5, 198.19.1.5, 2001:db8:ff::5, 2001:db8:ff:1::5

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/enforcer"
)

const (
	TCP  = corev1.ProtocolTCP
	UDP  = corev1.ProtocolUDP
	SCTP = corev1.ProtocolSCTP
)

func baseWorld() ([]*corev1.Namespace, []*corev1.Pod) {
	nss := []*corev1.Namespace{mkNamespace("prod", "env", "prod"), mkNamespace("dev", "env", "dev"), mkNamespace("other")}
	pods := []*corev1.Pod{
		mkPod("prod", "web", podLabels("app", "web"), podIPs("198.18.1.10", "2001:db8:1::10"),
			containerPort("http", TCP, 8080), containerPort("dns", UDP, 53)),
		mkPod("prod", "db", podLabels("app", "db"), podIPs("198.18.1.11", "2001:db8:1::11"),
			containerPort("pg", TCP, 5432), initPort("metrics", 9090, true), initPort("setup", 7000, false)),
		mkPod("prod", "cli", podLabels("app", "cli"), onNode("node-b"), podIPs("198.18.2.10", "2001:db8:2::10")),
		mkPod("dev", "cli", podLabels("app", "cli", "tier", "fe"), podIPs("198.18.1.20", "2001:db8:1::20")),
		mkPod("dev", "web", podLabels("app", "web"), onNode("node-b"), podIPs("198.18.2.20", "2001:db8:2::20"),
			containerPort("http", TCP, 80)),
		mkPod("other", "x", podLabels("app", "x"), podIPs("198.18.1.30")),
		mkPod("other", "v6", podLabels("app", "x"), onNode("node-b"), podIPs("2001:db8:2::30")),
		mkPod("other", "host", podLabels("app", "cli"), hostNet(), podIPs("198.18.0.1")),
		mkPod("other", "done", podLabels("app", "cli"), phase(corev1.PodSucceeded), podIPs("198.18.1.99")),
		mkPod("other", "noip", podLabels("app", "cli")),
	}
	return nss, pods
}

// loadBaseWorld upserts the namespaces and pods of the base world into e.
func loadBaseWorld(e engineAPI) {
	nss, pods := baseWorld()
	for _, ns := range nss {
		_ = e.UpsertNamespace(ns)
	}
	for _, p := range pods {
		_ = e.UpsertPod(p)
	}
}

type flow struct {
	src, dst string
	proto    corev1.Protocol
	port     uint16
	want     bool
}

// allow and deny build flows; "@6" after a pod name picks its IPv6 address.
func allow(src, dst string, proto corev1.Protocol, port uint16) flow {
	return flow{src, dst, proto, port, true}
}
func deny(src, dst string, proto corev1.Protocol, port uint16) flow {
	return flow{src, dst, proto, port, false}
}

// semanticsCase is a set of policies (and pods added after them) over the
// base world, with the verdicts of flows.
type semanticsCase struct {
	name     string
	policies []*networkingv1.NetworkPolicy
	extra    []*corev1.Pod
	wantErr  string // substring of the upsert error, for invalid policies
	flows    []flow
}

func TestSemantics(t *testing.T) {
	webSel := sel("app", "web")
	cases := []semanticsCase{
		{
			name: "no policy allows everything",
			flows: []flow{
				allow("prod/cli", "prod/web", TCP, 80), allow("prod/cli@6", "prod/web@6", UDP, 1),
				allow("198.19.0.5", "dev/cli", SCTP, 9), allow("dev/cli@6", "2001:db8:ff::5", TCP, 443),
			},
		},
		{
			name:     "default deny ingress isolates only ingress",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "deny")},
			flows: []flow{
				deny("prod/cli", "prod/web", TCP, 80), deny("dev/cli@6", "prod/db@6", TCP, 5432),
				deny("198.19.0.5", "prod/web", TCP, 80), deny("other/x", "prod/web", TCP, 8080),
				allow("prod/web", "dev/web", TCP, 80), allow("prod/web@6", "2001:db8:ff::5", TCP, 80),
				allow("prod/cli", "dev/cli", TCP, 80),
			},
		},
		{
			name:     "empty ingress rule allows all",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "all", ingress(nil))},
			flows:    []flow{allow("prod/cli", "prod/web", TCP, 80), allow("198.19.0.5", "prod/db", UDP, 5), allow("dev/web@6", "prod/web@6", SCTP, 1)},
		},
		{
			name: "pod selector peer is namespace-local",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "web", selecting(webSel),
				ingress(peers(podPeer(sel("app", "cli")))))},
			flows: []flow{
				allow("prod/cli", "prod/web", TCP, 80), allow("prod/cli@6", "prod/web@6", UDP, 53),
				deny("dev/cli", "prod/web", TCP, 80), deny("dev/cli@6", "prod/web@6", TCP, 80),
				allow("dev/cli", "prod/db", TCP, 5432), // db is not selected
			},
		},
		{
			name: "namespace selector peer",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "web", selecting(webSel),
				ingress(peers(nsPeer(sel("env", "dev")))))},
			flows: []flow{
				allow("dev/cli", "prod/web", TCP, 80), allow("dev/web@6", "prod/web@6", TCP, 80),
				deny("prod/cli", "prod/web", TCP, 80), deny("other/x", "prod/web", TCP, 80),
			},
		},
		{
			name: "namespace and pod selector combined",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "web", selecting(webSel),
				ingress(peers(nsPodPeer(sel("env", "dev"), sel("app", "cli")))))},
			flows: []flow{
				allow("dev/cli", "prod/web", TCP, 80), allow("dev/cli@6", "prod/web@6", TCP, 80),
				deny("dev/web", "prod/web", TCP, 80), deny("prod/cli@6", "prod/web@6", TCP, 80),
			},
		},
		{
			name: "empty namespace selector means every namespace",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "web", selecting(webSel),
				ingress(peers(nsPodPeer(sel(), sel("app", "cli")))))},
			flows: []flow{
				allow("dev/cli", "prod/web", TCP, 80), allow("prod/cli@6", "prod/web@6", TCP, 80),
				deny("dev/web", "prod/web", TCP, 80),
				deny("198.18.0.1", "prod/web", TCP, 80),  // hostNetwork pod labelled app=cli: not in sets
				deny("198.18.1.99", "prod/web", TCP, 80), // finished pod labelled app=cli
			},
		},
		{
			name: "namespace name label is set by the engine",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "web", selecting(webSel),
				ingress(peers(nsPeer(sel("kubernetes.io/metadata.name", "other")))))},
			flows: []flow{allow("other/x", "prod/web", TCP, 80), allow("other/v6@6", "prod/web@6", TCP, 80), deny("dev/cli", "prod/web", TCP, 80)},
		},
		{
			name: "match expressions In NotIn Exists DoesNotExist",
			policies: []*networkingv1.NetworkPolicy{
				mkPolicy("prod", "in", selecting(expr("app", metav1.LabelSelectorOpIn, "web", "db")),
					ingress(peers(nsPodPeer(sel(), expr("tier", metav1.LabelSelectorOpExists))), tcp(80))),
				mkPolicy("prod", "notin", selecting(expr("app", metav1.LabelSelectorOpNotIn, "web", "cli")),
					ingress(peers(nsPodPeer(expr("env", metav1.LabelSelectorOpDoesNotExist), sel())), tcp(81))),
			},
			flows: []flow{
				allow("dev/cli", "prod/web", TCP, 80), deny("prod/cli", "prod/web", TCP, 80), // tier exists only on dev/cli
				deny("other/x", "prod/web", TCP, 81), // notin does not select web
				allow("other/x", "prod/db", TCP, 81), allow("other/v6@6", "prod/db@6", TCP, 81),
				deny("dev/cli", "prod/db", TCP, 81), allow("dev/cli@6", "prod/db@6", TCP, 80),
				allow("dev/cli", "prod/cli", TCP, 1), // prod/cli: In(web,db) no, NotIn(web,cli) no -> not isolated
			},
		},
		{
			name: "ipBlock with except",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "web", selecting(webSel),
				ingress(peers(ipBlock("198.19.0.0/16", "198.19.1.0/24", "198.19.2.128/25"), ipBlock("2001:db8:ff::/48", "2001:db8:ff:1::/64"))))},
			flows: []flow{
				allow("198.19.0.5", "prod/web", TCP, 80), deny("198.19.1.5", "prod/web", TCP, 80),
				allow("198.19.2.5", "prod/web", TCP, 80), deny("198.19.2.200", "prod/web", TCP, 80),
				allow("198.19.255.255", "prod/web", TCP, 80),
				allow("2001:db8:ff::5", "prod/web@6", TCP, 80), deny("2001:db8:ff:1::5", "prod/web@6", TCP, 80),
				deny("prod/cli", "prod/web", TCP, 80),
			},
		},
		{
			name: "ipBlock matches pod addresses too",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "web", selecting(webSel),
				ingress(peers(ipBlock("198.18.2.0/24"), ipBlock("2001:db8:1::/64", "2001:db8:1::20/128"))))},
			flows: []flow{
				allow("prod/cli", "prod/web", TCP, 80), deny("prod/cli@6", "prod/web@6", TCP, 80),
				allow("prod/db@6", "prod/web@6", TCP, 80), deny("dev/cli@6", "prod/web@6", TCP, 80),
			},
		},
		{
			name: "numeric ports and protocols",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "web", selecting(webSel),
				ingress(nil, tcp(80), port(UDP, 53), port(SCTP, 3868), tcp(443)))},
			flows: []flow{
				allow("prod/cli", "prod/web", TCP, 80), deny("prod/cli", "prod/web", TCP, 81), deny("prod/cli", "prod/web", UDP, 80),
				allow("dev/cli@6", "prod/web@6", UDP, 53), allow("dev/cli", "prod/web", SCTP, 3868), deny("dev/cli", "prod/web", TCP, 3868),
				allow("198.19.0.5", "prod/web", TCP, 443),
			},
		},
		{
			name: "endPort range and protocol without port",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "web", selecting(webSel),
				ingress(nil, portRange(TCP, 8000, 8080), portRange(TCP, 8070, 8090), protoOnly(UDP)))},
			flows: []flow{
				deny("dev/cli", "prod/web", TCP, 7999), allow("dev/cli", "prod/web", TCP, 8000), allow("dev/cli", "prod/web", TCP, 8085),
				allow("dev/cli@6", "prod/web@6", TCP, 8090), deny("dev/cli@6", "prod/web@6", TCP, 8091),
				allow("dev/cli", "prod/web", UDP, 1), allow("dev/cli@6", "prod/web@6", UDP, 65535), deny("dev/cli", "prod/web", SCTP, 1),
			},
		},
		{
			name: "named ports in ingress resolve per target pod",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "named",
				ingress(peers(podPeer(sel("app", "cli"))), namedPort(TCP, "http"), namedPort(TCP, "metrics"), namedPort(TCP, "setup"), namedPort(UDP, "dns")))},
			flows: []flow{
				allow("prod/cli", "prod/web", TCP, 8080), allow("prod/cli@6", "prod/web@6", TCP, 8080),
				deny("prod/cli", "prod/web", TCP, 80), deny("prod/cli", "prod/web", UDP, 8080),
				allow("prod/cli", "prod/web", UDP, 53), deny("prod/cli", "prod/web", TCP, 53),
				allow("prod/cli", "prod/db", TCP, 9090), // restartable init container (sidecar)
				deny("prod/cli", "prod/db", TCP, 7000),  // ordinary init container
				deny("prod/cli", "prod/db", TCP, 8080),  // http is web's port, not db's
			},
		},
		{
			name: "named ports in ingress with ipBlock peers",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "named", selecting(webSel),
				ingress(peers(ipBlock("198.19.0.0/16")), namedPort(TCP, "http")))},
			flows: []flow{allow("198.19.0.5", "prod/web", TCP, 8080), deny("198.19.0.5", "prod/web", TCP, 80)},
		},
		{
			name: "named ports in egress resolve per peer pod",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("dev", "cli", selecting(sel("app", "cli")), types(networkingv1.PolicyTypeEgress),
				egress(peers(nsPodPeer(sel(), sel("app", "web")), ipBlock("198.19.0.0/16")), namedPort(TCP, "http")),
				egress(nil, namedPort(UDP, "dns")))},
			flows: []flow{
				allow("dev/cli", "prod/web", TCP, 8080), allow("dev/cli@6", "prod/web@6", TCP, 8080),
				allow("dev/cli", "dev/web", TCP, 80), deny("dev/cli", "dev/web", TCP, 8080),
				deny("dev/cli", "prod/web", TCP, 80),
				deny("dev/cli", "198.19.0.5", TCP, 8080), // ipBlock peer, but no pod holds the address
				allow("dev/cli", "prod/web", UDP, 53),    // rule without peers: any pod with a dns port
				deny("dev/cli", "198.19.0.5", UDP, 53), deny("dev/cli", "prod/db", UDP, 53),
			},
		},
		{
			name: "named ports in egress to ipBlocks resolve on the destination pod",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("dev", "cli", selecting(sel("app", "cli")), types(networkingv1.PolicyTypeEgress),
				egress(peers(ipBlock("198.18.1.0/24", "198.18.1.10/32"), ipBlock("2001:db8:1::/64")),
					namedPort(TCP, "http"), namedPort(UDP, "dns"), namedPort(TCP, "metrics"), namedPort(TCP, "setup")))},
			extra: []*corev1.Pod{
				// After the policy: the incremental path adds its named ports.
				mkPod("dev", "late", podLabels("app", "late"), onNode("node-b"), podIPs("198.18.1.41"), containerPort("http", TCP, 8443)),
				// Inside the block, with the port, but never in pod sets.
				mkPod("other", "hostsvc", hostNet(), podIPs("198.18.1.97"), containerPort("http", TCP, 8080)),
				mkPod("other", "old", phase(corev1.PodFailed), podIPs("198.18.1.98"), containerPort("http", TCP, 8080)),
			},
			flows: []flow{
				deny("dev/cli", "prod/web", TCP, 8080), // excepted address
				allow("dev/cli@6", "prod/web@6", TCP, 8080), allow("dev/cli@6", "prod/web@6", UDP, 53),
				deny("dev/cli@6", "prod/web@6", TCP, 80), deny("dev/cli@6", "prod/web@6", UDP, 8080),
				allow("dev/cli", "prod/db", TCP, 9090), allow("dev/cli@6", "prod/db@6", TCP, 9090), // restartable init container
				deny("dev/cli", "prod/db", TCP, 7000), // ordinary init container
				deny("dev/cli", "prod/db", TCP, 8080), // http is web's port, not db's
				deny("dev/cli", "dev/web", TCP, 80),   // has http, but outside the blocks
				allow("dev/cli", "dev/late", TCP, 8443), deny("dev/cli", "dev/late", TCP, 8080),
				deny("dev/cli", "198.18.1.200", TCP, 8080), // inside the block, not a pod
				deny("dev/cli", "198.18.1.97", TCP, 8080),  // hostNetwork pod
				deny("dev/cli", "198.18.1.98", TCP, 8080),  // finished pod
			},
		},
		{
			name: "named ports in egress with selector and ipBlock peers in one rule",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("dev", "cli", selecting(sel("app", "cli")), types(networkingv1.PolicyTypeEgress),
				egress(peers(podPeer(sel("app", "web")), ipBlock("198.18.1.11/32")), namedPort(TCP, "http"), namedPort(TCP, "pg")))},
			flows: []flow{
				allow("dev/cli", "dev/web", TCP, 80), allow("dev/cli@6", "dev/web@6", TCP, 80), // selector peer: its own ports
				deny("dev/cli", "dev/web", TCP, 5432),
				allow("dev/cli", "prod/db", TCP, 5432), // ipBlock peer: the ports of the pod at the address
				deny("dev/cli@6", "prod/db@6", TCP, 5432), deny("dev/cli", "prod/db", TCP, 80),
				deny("dev/cli", "prod/web", TCP, 8080), // neither peer
			},
		},
		{
			name: "egress with pod peers, ipBlock and default deny",
			policies: []*networkingv1.NetworkPolicy{
				mkPolicy("dev", "eg", selecting(sel("app", "cli")),
					egress(peers(podPeer(sel("app", "web"))), tcp(80)),
					egress(peers(ipBlock("198.19.0.0/16", "198.19.1.0/24"), ipBlock("2001:db8:ff::/48")))),
				mkPolicy("other", "deny-egress", types(networkingv1.PolicyTypeEgress)),
			},
			flows: []flow{
				allow("dev/cli", "dev/web", TCP, 80), allow("dev/cli@6", "dev/web@6", TCP, 80), deny("dev/cli", "dev/web", TCP, 81),
				deny("dev/cli", "prod/web", TCP, 80), allow("dev/cli", "198.19.0.5", UDP, 1), deny("dev/cli", "198.19.1.5", UDP, 1),
				allow("dev/cli@6", "2001:db8:ff:1::5", UDP, 1),
				deny("other/x", "prod/web", TCP, 80), deny("other/v6@6", "2001:db8:ff::5", TCP, 80),
				allow("dev/web", "other/x", TCP, 80), // egress of dev/web is not isolated; ingress of other/x neither
			},
		},
		{
			name: "policyTypes defaults and explicit lists",
			policies: []*networkingv1.NetworkPolicy{
				// Egress rules without policyTypes: both directions.
				mkPolicy("prod", "implicit", selecting(webSel), egress(peers(podPeer(sel("app", "db"))))),
				// Explicit Ingress+Egress with only ingress rules: egress denied.
				mkPolicy("prod", "both", selecting(sel("app", "db")), types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress),
					ingress(peers(podPeer(sel("app", "web"))))),
			},
			flows: []flow{
				deny("prod/cli", "prod/web", TCP, 80), allow("prod/web", "prod/db", TCP, 5432), allow("prod/web@6", "prod/db@6", TCP, 1),
				deny("prod/web", "prod/cli", TCP, 80), deny("prod/db", "prod/web", TCP, 80), deny("prod/db@6", "198.19.0.5", TCP, 80),
				deny("prod/cli", "prod/db", TCP, 5432),
			},
		},
		{
			name: "union of policies",
			policies: []*networkingv1.NetworkPolicy{
				mkPolicy("prod", "a", selecting(webSel), ingress(peers(podPeer(sel("app", "cli"))), tcp(80))),
				mkPolicy("prod", "b", selecting(webSel), ingress(peers(nsPeer(sel("env", "dev"))), tcp(443))),
				mkPolicy("prod", "c", ingress(peers(ipBlock("198.19.0.0/16")))),
			},
			flows: []flow{
				allow("prod/cli", "prod/web", TCP, 80), deny("prod/cli", "prod/web", TCP, 443),
				allow("dev/cli@6", "prod/web@6", TCP, 443), deny("dev/cli", "prod/web", TCP, 80),
				allow("198.19.0.5", "prod/web", UDP, 7), allow("198.19.0.5", "prod/db", UDP, 7), deny("prod/web", "prod/db", TCP, 5432),
			},
		},
		{
			name:     "hostNetwork pods are never targets",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("other", "deny", types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))},
			flows: []flow{
				allow("prod/web", "198.18.0.1", TCP, 10250), allow("198.18.0.1", "prod/web", TCP, 80),
				deny("prod/web", "other/x", TCP, 80), deny("other/x", "prod/web", TCP, 80),
			},
		},
		{
			name: "invalid pod selector fails closed",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "bad",
				selecting(expr("app", metav1.LabelSelectorOpIn)), // In without values
				ingress(nil))},
			wantErr: "podSelector",
			flows: []flow{
				deny("prod/cli", "prod/web", TCP, 80), deny("dev/cli", "prod/db", TCP, 5432), deny("2001:db8:ff::5", "prod/web@6", TCP, 80),
				allow("prod/web", "dev/web", TCP, 80),
			},
		},
		{
			name: "invalid peers match nothing, valid ones still do",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "bad", selecting(webSel),
				ingress(peers(ipBlock("198.19.0.0/33"), ipBlock("198.19.0.0/16", "198.20.0.0/24"), podPeer(expr("a", "Foo", "b")))),
				ingress(peers(podPeer(sel("app", "cli")))))},
			wantErr: "ipBlock",
			flows:   []flow{deny("198.19.0.5", "prod/web", TCP, 80), allow("prod/cli", "prod/web", TCP, 80), deny("dev/cli", "prod/web", TCP, 80)},
		},
		{
			name: "invalid ports match nothing",
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "bad", selecting(webSel),
				ingress(nil, portRange(TCP, 90, 80), port("ICMP", 1)))},
			wantErr: "port",
			flows:   []flow{deny("prod/cli", "prod/web", TCP, 85), deny("prod/cli", "prod/web", TCP, 1)},
		},
		{
			name:     "pods added later: dual-stack target and peer",
			extra:    []*corev1.Pod{mkPod("dev", "new", podLabels("app", "cli"), podIPs("2001:db8:1::40", "198.18.1.40"))},
			policies: []*networkingv1.NetworkPolicy{mkPolicy("prod", "web", selecting(webSel), ingress(peers(nsPodPeer(sel("env", "dev"), sel("app", "cli")))))},
			flows:    []flow{allow("dev/new", "prod/web", TCP, 80), allow("dev/new@6", "prod/web@6", TCP, 80), deny("dev/web", "prod/web", TCP, 80)},
		},
	}
	// Each case runs again with every tag of the shared sets colliding
	// (CollideTags): groups and named-port sets told apart by probed tags
	// give the same verdicts.
	for _, tc := range cases {
		for _, collide := range []bool{false, true} {
			name := tc.name
			if collide {
				name += ", colliding tags"
			}
			t.Run(name, func(t *testing.T) { runSemanticsCase(t, tc, collide) })
		}
	}
}

// runSemanticsCase loads the base world and tc's policies and pods into a
// cluster (with colliding tags if collide) and checks tc's flows.
func runSemanticsCase(t *testing.T, tc semanticsCase, collide bool) {
	c := newCluster(t, testNodes...)
	if collide {
		for _, e := range c.engines {
			enforcer.CollideTags(e)
		}
	}
	nss, pods := baseWorld()
	for _, ns := range nss {
		if err := c.each(func(e *enforcer.Engine) error { return e.UpsertNamespace(ns) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pods {
		if err := c.each(func(e *enforcer.Engine) error { return e.UpsertPod(p) }); err != nil {
			t.Fatal(err)
		}
	}
	var polErr error
	for _, np := range tc.policies {
		if err := c.each(func(e *enforcer.Engine) error { return e.UpsertNetworkPolicy(np) }); err != nil && polErr == nil {
			polErr = err
		}
	}
	switch {
	case tc.wantErr == "" && polErr != nil:
		t.Fatalf("policy error: %v", polErr)
	case tc.wantErr != "" && (polErr == nil || !strings.Contains(polErr.Error(), tc.wantErr)):
		t.Fatalf("policy error %v, want one about %q", polErr, tc.wantErr)
	}
	// Pods that arrive after the policies exercise the incremental paths.
	for _, p := range tc.extra {
		if err := c.each(func(e *enforcer.Engine) error { return e.UpsertPod(p) }); err != nil {
			t.Fatal(err)
		}
	}
	c.flush()
	for _, f := range tc.flows {
		c.checkFlow(f.src, f.dst, f.proto, f.port, f.want)
	}
}
