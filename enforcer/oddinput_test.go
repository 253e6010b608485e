package enforcer_test

// IP plan: see helpers_test.go and semantics_test.go (the base world).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftwarden/nftwarden/enforcer"
)

// oddCase is an odd object fed through the library API and what must hold
// once it is in.
type oddCase struct {
	name string
	// pods and policies are upserted in this order.
	pods     []*corev1.Pod
	policies []*networkingv1.NetworkPolicy
	// wantErr is a substring of the upserts' errors; "" means accepted.
	wantErr string
	// flows: what an invalid part would have allowed is denied to the pods
	// the object selects, and traffic it has nothing to do with is as before.
	flows []flow
}

// apply upserts the case's objects into e and returns their errors.
func (tc oddCase) apply(e *enforcer.Engine) error {
	var errs []error
	for _, p := range tc.pods {
		errs = append(errs, e.UpsertPod(p))
	}
	for _, np := range tc.policies {
		errs = append(errs, e.UpsertNetworkPolicy(np))
	}
	return errors.Join(errs...)
}

func pols(nps ...*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy { return nps }

// webPolicy is a policy of namespace prod selecting the pods app=web.
func webPolicy(name string, tweaks ...polTweak) *networkingv1.NetworkPolicy {
	return mkPolicy("prod", name, append([]polTweak{selecting(sel("app", "web"))}, tweaks...)...)
}

// manyPorts is n ports, none adjacent to another of its protocol: TCP, UDP,
// SCTP in turn on 2, 4, 6, ...
func manyPorts(n int) []networkingv1.NetworkPolicyPort {
	out := make([]networkingv1.NetworkPolicyPort, n)
	for i := range out {
		out[i] = port([]corev1.Protocol{TCP, UDP, SCTP}[i%3], int32(2*i+2))
	}
	return out
}

// manyExcepts is 1,000 /26 blocks that cover 198.19.0.0-198.19.249.255.
func manyExcepts() []string {
	var out []string
	for i := range 250 {
		for k := range 4 {
			out = append(out, fmt.Sprintf("198.19.%d.%d/26", i, 64*k))
		}
	}
	return out
}

func withEndPort(p networkingv1.NetworkPolicyPort, end int32) networkingv1.NetworkPolicyPort {
	p.EndPort = &end
	return p
}

// oddCases are objects an API server accepts but that are odd, then objects
// only the library API lets through. The base world runs no policy.
func oddCases() []oddCase {
	long := strings.Repeat("l", 253)
	named := []networkingv1.NetworkPolicyPort{namedPort(TCP, "http")}
	for i := range 10_000 {
		named = append(named, namedPort(TCP, fmt.Sprintf("p%d", i)))
	}
	onlyFromCli := webPolicy("only-cli", ingress(peers(podPeer(sel("app", "cli"))), tcp(80)))
	fromOtherCli := webPolicy("from-other-cli", ingress(peers(nsPodPeer(sel("kubernetes.io/metadata.name", "other"), sel("app", "cli")))))
	return []oddCase{
		// Accepted by an API server.
		{name: "empty selectors", policies: pols(mkPolicy("prod", "empty",
			ingress(peers(podPeer(sel()), nsPodPeer(sel(), sel("app", "cli")))))),
			flows: []flow{
				allow("prod/cli", "prod/web", TCP, 80), allow("dev/cli@6", "prod/db@6", TCP, 5432),
				deny("dev/web", "prod/web", TCP, 80), deny("198.19.0.5", "prod/web", TCP, 80), allow("dev/web", "dev/cli", TCP, 80),
			}},
		{name: "10,000 ports", policies: pols(webPolicy("many-ports", ingress(nil, manyPorts(10_000)...))),
			flows: []flow{
				allow("prod/cli", "prod/web", TCP, 2), allow("prod/cli", "prod/web", UDP, 4), allow("prod/cli@6", "prod/web@6", SCTP, 19_998),
				deny("prod/cli", "prod/web", TCP, 4), deny("prod/cli", "prod/web", TCP, 3), deny("prod/cli", "prod/web", TCP, 20_002),
				allow("prod/cli", "dev/web", TCP, 3),
			}},
		{name: "10,000 named ports to any address", policies: pols(mkPolicy("dev", "many-named", selecting(sel("app", "cli")),
			types(networkingv1.PolicyTypeEgress), egress(nil, named...))),
			flows: []flow{
				allow("dev/cli", "prod/web", TCP, 8080), allow("dev/cli@6", "prod/web@6", TCP, 8080),
				deny("dev/cli", "prod/web", TCP, 5432), deny("dev/cli", "198.19.0.5", TCP, 8080), allow("dev/web", "prod/db", TCP, 5432),
			}},
		{name: "1,000 except blocks", policies: pols(webPolicy("many-excepts", ingress(peers(ipBlock("198.19.0.0/16", manyExcepts()...)), tcp(80)))),
			flows: []flow{
				deny("198.19.0.5", "prod/web", TCP, 80), deny("198.19.249.200", "prod/web", TCP, 80),
				allow("198.19.250.5", "prod/web", TCP, 80), allow("198.19.255.254", "prod/web", TCP, 80),
				deny("prod/cli", "prod/web", TCP, 80), allow("198.19.0.5", "prod/db", TCP, 80),
			}},
		{name: "overlapping and repeated excepts", policies: pols(webPolicy("overlaps", ingress(peers(ipBlock("198.19.0.0/16",
			"198.19.0.0/24", "198.19.0.0/25", "198.19.0.128/26", "198.19.0.0/24", "198.19.1.0/24", "198.19.0.0/23")), tcp(80)))),
			flows: []flow{allow("198.19.2.5", "prod/web", TCP, 80), deny("198.19.0.5", "prod/web", TCP, 80),
				deny("198.19.0.200", "prod/web", TCP, 80), deny("198.19.1.5", "prod/web", TCP, 80)}},
		{name: "IPv6 blocks on IPv4-only pods", policies: pols(mkPolicy("other", "v6-blocks", selecting(sel("app", "x")),
			types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress),
			ingress(peers(ipBlock("2001:db8:ff::/48"))), egress(peers(ipBlock("2001:db8:ff::/48"))))),
			flows: []flow{
				deny("198.19.0.5", "other/x", TCP, 80), deny("other/x", "198.19.0.5", TCP, 80), deny("other/x", "prod/web", TCP, 80),
				allow("2001:db8:ff::5", "other/v6@6", TCP, 80), allow("other/v6@6", "2001:db8:ff::5", TCP, 80), deny("other/v6@6", "dev/web@6", TCP, 80),
			}},
		{name: "a named port some selected pods lack", policies: pols(mkPolicy("prod", "pg", ingress(nil, namedPort(TCP, "pg")))),
			flows: []flow{allow("prod/cli", "prod/db", TCP, 5432), deny("prod/cli", "prod/web", TCP, 5432), deny("prod/cli", "prod/web", TCP, 8080)}},
		{name: "a pod without an address", pods: []*corev1.Pod{mkPod("prod", "pending", podLabels("app", "web"))}, policies: pols(onlyFromCli),
			flows: []flow{allow("prod/cli", "prod/web", TCP, 80), deny("dev/cli", "prod/web", TCP, 80)}},
		{name: "a finished pod keeps its address", policies: pols(
			mkPolicy("other", "isolated", selecting(sel("app", "cli")), types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)),
			fromOtherCli),
			flows: []flow{deny("198.18.1.99", "prod/web", TCP, 80), allow("prod/db", "198.18.1.99", TCP, 80), allow("198.18.1.99", "prod/db", TCP, 80)}},
		{name: "a running pod reuses a finished pod's address",
			pods: []*corev1.Pod{mkPod("other", "again", podLabels("app", "cli"), podIPs("198.18.1.99"))}, policies: pols(fromOtherCli),
			flows: []flow{allow("198.18.1.99", "prod/web", TCP, 80), deny("other/x", "prod/web", TCP, 80)}},
		{name: "a pod that changes node", pods: []*corev1.Pod{mkPod("prod", "web", podLabels("app", "web"), onNode("node-b"),
			podIPs("198.18.1.10", "2001:db8:1::10"), containerPort("http", TCP, 8080))}, policies: pols(onlyFromCli),
			flows: []flow{allow("prod/cli", "prod/web", TCP, 80), deny("dev/cli", "prod/web", TCP, 80), deny("dev/cli@6", "prod/web@6", TCP, 80)}},
		{name: "hostNetwork pods", policies: pols(mkPolicy("other", "all", types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))),
			flows: []flow{
				allow("prod/web", "198.18.0.1", TCP, 10250), allow("198.18.0.1", "prod/web", TCP, 80),
				deny("prod/web", "other/x", TCP, 80), deny("other/x", "prod/web", TCP, 80),
			}},
		{name: "names and selectors at the API's length limits",
			pods: []*corev1.Pod{mkPod("prod", long, podLabels("app", "web", "k", strings.Repeat("v", 63)), podIPs("198.18.1.12"), containerPort("http", TCP, 8080))},
			policies: pols(webPolicy(long, ingress(peers(nsPodPeer(sel("kubernetes.io/metadata.name", "prod"), sel("app", "cli", "x", strings.Repeat("v", 63))),
				podPeer(sel("app", "cli"))), namedPort(TCP, "http")))),
			flows: []flow{allow("prod/cli", "198.18.1.12", TCP, 8080), deny("prod/cli", "198.18.1.12", TCP, 80), deny("dev/cli", "prod/web", TCP, 8080)}},

		// Only through the library: an API server rejects these.
		{name: "ipBlock cidr that is no address", wantErr: `ipBlock cidr "not-a-cidr"`,
			policies: pols(webPolicy("bad-cidr", ingress(peers(ipBlock("not-a-cidr"), podPeer(sel("app", "cli"))), tcp(80)))),
			flows:    []flow{deny("198.19.0.5", "prod/web", TCP, 80), allow("prod/cli", "prod/web", TCP, 80)}},
		{name: "ipBlock cidr with host bits is masked", policies: pols(webPolicy("host-bits", ingress(peers(ipBlock("198.19.0.1/16")), tcp(80)))),
			flows: []flow{allow("198.19.0.5", "prod/web", TCP, 80), allow("198.19.255.5", "prod/web", TCP, 80), deny("2001:db8:ff::5", "prod/web@6", TCP, 80)}},
		{name: "ipBlock with a zone", wantErr: "ipBlock", policies: pols(webPolicy("zone", ingress(peers(
			ipBlock("2001:db8:ff::/48%eth0"), ipBlock("2001:db8:fe::/48", "2001:db8:fe:1::/64%eth0")), tcp(80)))),
			flows: []flow{deny("2001:db8:ff::5", "prod/web@6", TCP, 80), deny("2001:db8:fe::5", "prod/web@6", TCP, 80)}},
		{name: "except of the other family", wantErr: "not inside the cidr",
			policies: pols(webPolicy("except-family", ingress(peers(ipBlock("198.19.0.0/16", "2001:db8:ff::/64")), tcp(80)))),
			flows:    []flow{deny("198.19.0.5", "prod/web", TCP, 80), deny("198.19.1.5", "prod/web", TCP, 80)}},
		{name: "except outside the cidr", wantErr: "not inside the cidr",
			policies: pols(webPolicy("except-outside", ingress(peers(ipBlock("198.19.0.0/24", "198.19.1.0/24")), tcp(80)))),
			flows:    []flow{deny("198.19.0.5", "prod/web", TCP, 80)}},
		{name: "except wider than the cidr", wantErr: "not inside the cidr",
			policies: pols(webPolicy("except-wider", ingress(peers(ipBlock("198.19.0.0/24", "198.19.0.0/16")), tcp(80)))),
			flows:    []flow{deny("198.19.0.5", "prod/web", TCP, 80)}},
		{name: "IPv4-mapped cidr", wantErr: "IPv4-mapped",
			policies: pols(webPolicy("mapped", ingress(peers(ipBlock("::ffff:198.19.0.0/112")), tcp(80)))),
			flows:    []flow{deny("198.19.0.5", "prod/web", TCP, 80)}},
		{name: "selector with an unknown operator", wantErr: "podSelector",
			policies: pols(webPolicy("bad-op", ingress(peers(podPeer(expr("app", "Foo", "cli"))), tcp(80)))),
			flows:    []flow{deny("prod/cli", "prod/web", TCP, 80), allow("prod/cli", "prod/db", TCP, 80)}},
		{name: "selectors with an invalid key or value", wantErr: "namespaceSelector",
			policies: pols(webPolicy("bad-kv", ingress(peers(podPeer(sel("bad key!", "x")), nsPeer(sel("env", "bad value!")),
				nsPodPeer(sel("env", "dev"), expr("app", metav1.LabelSelectorOpExists, "cli"))), tcp(80)))),
			flows: []flow{deny("prod/cli", "prod/web", TCP, 80), deny("dev/cli", "prod/web", TCP, 80)}},
		{name: "selector In without values", wantErr: "podSelector",
			policies: pols(webPolicy("in-empty", ingress(peers(podPeer(expr("app", metav1.LabelSelectorOpIn))), tcp(80)))),
			flows:    []flow{deny("prod/cli", "prod/web", TCP, 80)}},
		{name: "unknown policyTypes", wantErr: `unknown type "Sideways"`,
			policies: pols(webPolicy("sideways", types("Sideways"), ingress(nil))),
			flows:    []flow{deny("prod/cli", "prod/web", TCP, 80), deny("prod/web", "dev/web", TCP, 80), allow("prod/cli", "prod/db", TCP, 80)}},
		{name: "invalid pod IPs", wantErr: "malformed IP", pods: []*corev1.Pod{
			mkPod("prod", "cli2", podLabels("app", "cli"), onNode("node-b"), podIPs("300.1.1.1", "fe80::1%eth0", "", "198.18.2.77")),
			mkPod("prod", "web2", podLabels("app", "web"), podIPs("198.18.1.300")),
		}, policies: pols(onlyFromCli),
			flows: []flow{allow("198.18.2.77", "prod/web", TCP, 80), deny("dev/cli", "prod/web", TCP, 80), allow("dev/cli", "prod/db", TCP, 80)}},
		{name: "invalid ports", wantErr: "port", policies: pols(webPolicy("bad-ports",
			ingress(peers(podPeer(sel("app", "cli"))), tcp(0), tcp(70_000), portRange(TCP, 90, 80), withEndPort(namedPort(TCP, "http"), 8090),
				port("ICMP", 80), namedPort(TCP, ""), withEndPort(protoOnly(UDP), 53)),
			ingress(peers(podPeer(sel("app", "cli"))), tcp(443)))),
			flows: []flow{
				deny("prod/cli", "prod/web", TCP, 80), deny("prod/cli", "prod/web", TCP, 85), deny("prod/cli", "prod/web", TCP, 8080),
				deny("prod/cli", "prod/web", UDP, 53), allow("prod/cli", "prod/web", TCP, 443),
			}},
		{name: "a port name no pod can have", policies: pols(webPolicy("numeric-name", ingress(nil, networkingv1.NetworkPolicyPort{Port: ptr(intstr.FromString("80"))}))),
			flows: []flow{deny("prod/cli", "prod/web", TCP, 80)}},
	}
}

func ptr[T any](v T) *T { return &v }

// TestOddInput feeds each odd object into the engines of a two-node cluster
// running the base world: the call returns the error it should (or none),
// nothing panics, each engine flushes into its Fake, Decide and the traces
// agree on what the object allows and denies, and a second Flush sends
// nothing.
func TestOddInput(t *testing.T) {
	for _, tc := range oddCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, testNodes...)
			_ = c.each(func(e *enforcer.Engine) error { loadBaseWorld(e); return nil })
			err := c.each(tc.apply)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one about %q", err, tc.wantErr)
			}
			c.flush()
			for _, f := range tc.flows {
				c.checkFlow(f.src, f.dst, f.proto, f.port, f.want)
			}
			for _, n := range c.nodes {
				if res, err := c.engines[n].Flush(context.Background()); err != nil || res.Operations != 0 {
					t.Errorf("%s: second flush: %+v %v, want nothing sent", n, res, err)
				}
			}
		})
	}
}

// TestNilAndUnnamedObjects: objects without a name, or nil, are refused with
// an error and change nothing; deleting what does not exist is a no-op.
func TestNilAndUnnamedObjects(t *testing.T) {
	c := newCluster(t, "node-a")
	loadBase(t, c, basePolicies()...)
	e := c.engines["node-a"]
	unnamed := mkPod("prod", "", podIPs("198.18.1.80"))
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"nil namespace", func() error { return e.UpsertNamespace(nil) }},
		{"unnamed namespace", func() error { return e.UpsertNamespace(mkNamespace("")) }},
		{"nil pod", func() error { return e.UpsertPod(nil) }},
		{"unnamed pod", func() error { return e.UpsertPod(unnamed) }},
		{"pod without namespace", func() error { return e.UpsertPod(mkPod("", "p", podIPs("198.18.1.80"))) }},
		{"nil parsed pod", func() error { return e.UpsertParsedPod(nil) }},
		{"zero parsed pod", func() error { return e.UpsertParsedPod(&enforcer.Pod{}) }},
		{"parsed unnamed pod", func() error { return e.UpsertParsedPod(enforcer.NewPod(unnamed)) }},
		{"nil policy", func() error { return e.UpsertNetworkPolicy(nil) }},
		{"unnamed policy", func() error { return e.UpsertNetworkPolicy(mkPolicy("prod", "")) }},
		{"policy without namespace", func() error { return e.UpsertNetworkPolicy(mkPolicy("", "p")) }},
	} {
		if err := tc.call(); err == nil || !strings.HasPrefix(err.Error(), "enforcer: ") {
			t.Errorf("%s: error %v, want one from the enforcer", tc.name, err)
		}
	}
	e.DeleteNamespace("")
	e.DeleteNamespace("missing")
	e.DeletePod("", "")
	e.DeletePod("prod", "missing")
	e.DeleteNetworkPolicy("", "")
	e.DeleteNetworkPolicy("prod", "missing")
	if res, err := e.Flush(context.Background()); err != nil || res.Operations != 0 {
		t.Fatalf("flush after refused objects: %+v %v, want nothing sent", res, err)
	}
	if st := e.Stats(); st.Pods != 10 || st.Namespaces != 3 || st.Policies != 3 {
		t.Errorf("stats %+v after refused objects, want the base world's", st)
	}
}
