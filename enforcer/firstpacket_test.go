package enforcer_test

// IP plan: the base world (helpers_test.go, semantics_test.go) on node-a,
// whose pod CIDRs are 198.18.1.0/24 and 2001:db8:1::/64 (nodeAPodCIDRs):
//
//	198.18.1.7, 2001:db8:1::7  inside them, no pod's (a pod not programmed yet)
//	198.18.1.99                other/done: finished, so no known pod's
//	198.18.1.40                other/stray, a pod of node-b given an address of node-a's CIDRs
//	198.18.0.1                 other/host: hostNetwork, a node address (outside them)
//	198.18.2.10                prod/cli on node-b (outside them)
//	198.19.0.5                 a host outside the cluster

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

func TestDecideFirstPacket(t *testing.T) {
	addr := netip.MustParseAddr
	unknownV4 := "198.18.1.7 is denied: the address is in the node's pod CIDRs but is no known pod's, so its new connections are dropped until its pod is programmed (first-packet isolation)"
	for _, tc := range []struct {
		name  string
		audit bool // Config.Audit
		flow  enforcer.Flow
		want  enforcer.Decision
	}{
		{
			name: "from an unknown address",
			flow: enforcer.Flow{Src: addr("198.18.1.7"), Dst: addr("198.18.1.10"), Protocol: TCP, Port: 80},
			want: enforcer.Decision{
				Egress:  enforcer.DirectionDecision{Unknown: true},
				Ingress: enforcer.DirectionDecision{Pod: "prod/web", Isolated: true, Policies: []string{"prod/web"}},
				Reason:  "denied: egress of " + unknownV4 + "; ingress of prod/web is isolated by prod/web and no rule allows it"},
		},
		{
			name: "to an unknown address",
			flow: enforcer.Flow{Src: addr("198.18.1.10"), Dst: addr("198.18.1.7"), Protocol: TCP, Port: 80},
			want: enforcer.Decision{
				Egress:  enforcer.DirectionDecision{Pod: "prod/web", Isolated: true, Policies: []string{"prod/web"}},
				Ingress: enforcer.DirectionDecision{Unknown: true},
				Reason:  "denied: egress of prod/web is isolated by prod/web and no rule allows it; ingress of " + unknownV4},
		},
		{
			name: "IPv6, to an unknown address from a pod not isolated",
			flow: enforcer.Flow{Src: addr("2001:db8:1::11"), Dst: addr("2001:db8:1::7"), Protocol: UDP, Port: 53},
			want: enforcer.Decision{
				Egress:  enforcer.DirectionDecision{Pod: "prod/db", Allowed: true},
				Ingress: enforcer.DirectionDecision{Unknown: true},
				Reason: "denied: egress of prod/db is not isolated; ingress of 2001:db8:1::7 is denied: the address is in the node's pod CIDRs but is no known pod's, " +
					"so its new connections are dropped until its pod is programmed (first-packet isolation)"},
		},
		{
			name: "a finished pod's address is no known pod's",
			flow: enforcer.Flow{Src: addr("198.18.1.99"), Dst: addr("198.19.0.5"), Protocol: TCP, Port: 443},
			want: enforcer.Decision{
				Egress:  enforcer.DirectionDecision{Unknown: true},
				Ingress: enforcer.DirectionDecision{Allowed: true},
				Reason: "denied: egress of 198.18.1.99 is denied: the address is in the node's pod CIDRs but is no known pod's, " +
					"so its new connections are dropped until its pod is programmed (first-packet isolation)"},
		},
		{
			name: "a pod of another node in the node's pod CIDRs",
			flow: enforcer.Flow{Src: addr("198.18.1.11"), Dst: addr("198.18.1.40"), Protocol: TCP, Port: 80},
			want: enforcer.Decision{
				Egress:  enforcer.DirectionDecision{Pod: "prod/db", Allowed: true},
				Ingress: enforcer.DirectionDecision{Pod: "other/stray", Unknown: true},
				Reason: "denied: egress of prod/db is not isolated; ingress of 198.18.1.40 is denied: the address is in the node's pod CIDRs but is no local pod's " +
					"(other/stray claims it from another node), so its new connections are dropped until its pod is programmed (first-packet isolation)"},
		},
		{
			name: "node addresses and other nodes' pods are outside",
			flow: enforcer.Flow{Src: addr("198.18.0.1"), Dst: addr("198.18.2.10"), Protocol: TCP, Port: 80},
			want: enforcer.Decision{Allowed: true, Egress: enforcer.DirectionDecision{Allowed: true}, Ingress: enforcer.DirectionDecision{Pod: "prod/cli", Allowed: true},
				Reason: "allowed: ingress of prod/cli is not isolated"},
		},
		{
			name: "known pods are judged by policy",
			flow: enforcer.Flow{Src: addr("198.18.2.10"), Dst: addr("198.18.1.10"), Protocol: TCP, Port: 80},
			want: enforcer.Decision{Allowed: true,
				Egress:  enforcer.DirectionDecision{Pod: "prod/cli", Allowed: true},
				Ingress: enforcer.DirectionDecision{Pod: "prod/web", Isolated: true, Allowed: true, Policies: []string{"prod/web"}},
				Reason:  "allowed: egress of prod/cli is not isolated; ingress of prod/web is allowed by prod/web"},
		},
		{
			name:  "node-wide audit: allowed, and logged as unknown",
			audit: true,
			flow:  enforcer.Flow{Src: addr("198.18.1.7"), Dst: addr("198.19.0.5"), Protocol: TCP, Port: 443},
			want: enforcer.Decision{Allowed: true,
				Egress:  enforcer.DirectionDecision{Allowed: true, Audit: &enforcer.DirectionDecision{Unknown: true}},
				Ingress: enforcer.DirectionDecision{Allowed: true},
				Reason: "allowed: egress of 198.18.1.7 is allowed (audit mode: would be denied: the address is in the node's pod CIDRs but no known local pod's, " +
					"first-packet isolation)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterWith(t, enforcer.Config{PodCIDRs: nodeAPodCIDRs, Audit: tc.audit}, "node-a")
			loadBase(t, c, basePolicies()...)
			if err := c.engines["node-a"].UpsertPod(mkPod("other", "stray", onNode("node-b"), podIPs("198.18.1.40"))); err != nil {
				t.Fatal(err)
			}
			c.flush()
			if diff := cmp.Diff(tc.want, c.engines["node-a"].Decide(tc.flow)); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			checkAgreement(t, c, tc.flow)
		})
	}
}

// TestSetPodCIDRsRefusesBadPrefixes: SetPodCIDRs refuses what cannot be a
// pod CIDR and changes nothing; New masks a non-canonical prefix of
// Config.PodCIDRs (the same addresses) and leaves an invalid one out.
func TestSetPodCIDRsRefusesBadPrefixes(t *testing.T) {
	c := newClusterWith(t, enforcer.Config{PodCIDRs: nodeAPodCIDRs}, "node-a")
	loadBase(t, c, basePolicies()...)
	e := c.engines["node-a"]
	for _, tc := range []struct {
		name  string
		cidrs []netip.Prefix
		err   string
	}{
		{"host bits set", []netip.Prefix{netip.MustParsePrefix("198.18.1.7/24")}, "not canonical (host bits set; 198.18.1.0/24?)"},
		{"zero prefix", []netip.Prefix{{}}, "invalid prefix"},
		{"IPv4-mapped", []netip.Prefix{netip.MustParsePrefix("::ffff:198.18.1.0/120")}, "IPv4-mapped prefixes are not supported"},
		{"one bad among good", []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("2001:db8:1::1/64")}, "2001:db8:1::1/64: not canonical"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.SetPodCIDRs(tc.cidrs)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("SetPodCIDRs(%v) = %v, want an error with %q", tc.cidrs, err, tc.err)
			}
			if res, err := e.Flush(context.Background()); err != nil || res.Operations != 0 {
				t.Fatalf("after a refused SetPodCIDRs the flush sent %d operations (%v)", res.Operations, err)
			}
			c.checkFlow("198.18.1.7", "prod/web", TCP, 80, false)
		})
	}

	// New: the same program from canonical prefixes, from sloppy ones,
	// from overlapping ones, with an invalid one left out.
	want := freshDesired(t, baseKeyedWorld(), c.config("node-a"))
	for _, cidrs := range [][]netip.Prefix{
		{netip.MustParsePrefix("198.18.1.77/24"), netip.MustParsePrefix("2001:db8:1::1/64")},
		{netip.MustParsePrefix("198.18.1.128/25"), netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("2001:db8:1::/64"), netip.MustParsePrefix("198.18.1.0/24")},
		{netip.MustParsePrefix("198.18.1.0/24"), {}, netip.MustParsePrefix("2001:db8:1::/64")},
	} {
		cfg := c.config("node-a")
		cfg.PodCIDRs = cidrs
		if tx := nft.Diff(want, freshDesired(t, baseKeyedWorld(), cfg), nil); !tx.Empty() {
			t.Errorf("Config.PodCIDRs %v: the program differs from the canonical one's:\n%s", cidrs, tx)
		}
	}
}

// TestSetPodCIDRsRestricts: a flush that adds pod CIDRs, or forgets a known
// address, may deny connections allowed before: it Restricts, also when it
// sends elements only.
func TestSetPodCIDRsRestricts(t *testing.T) {
	c := newCluster(t, "node-a")
	loadBase(t, c, basePolicies()...)
	e := c.engines["node-a"]
	p := netip.MustParsePrefix
	for _, step := range []struct {
		name   string
		change func() error
	}{
		{"on", func() error { return e.SetPodCIDRs([]netip.Prefix{p("198.18.1.0/24")}) }},
		{"a CIDR added", func() error { return e.SetPodCIDRs([]netip.Prefix{p("198.18.1.0/24"), p("198.18.3.0/24")}) }},
		{"a known pod finished", func() error {
			return e.UpsertPod(mkPod("other", "x", podLabels("app", "x"), podIPs("198.18.1.30"), phase(corev1.PodFailed)))
		}},
	} {
		if err := step.change(); err != nil {
			t.Fatal(err)
		}
		res, err := e.Flush(context.Background())
		if err != nil || !res.Restricts {
			t.Errorf("%s: flush %+v %v, want Restricts", step.name, res, err)
		}
	}
}
