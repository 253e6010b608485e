package enforcer

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
)

// tierGridAddrs are the ends of the flows checkTiersGrid traces: every pod of
// cnpWorld, the hostNetwork pod and an address outside the cluster.
var tierGridAddrs = []string{harry, herm, draco, cedric, luna, "198.18.0.9", "198.19.0.1"}

// tierGridPorts cover the ports and ranges of cnpCases, their edges and
// ports no rule names.
var tierGridPorts = []uint16{53, 79, 80, 5353, 8080, 8081, 9003, 9004, 9006}

// checkTiersGrid traces every (src, dst, protocol, port) of the grid through
// the Fake and holds the verdict against Decide. A direction whose subject
// address several pods claim may be denied where Decide allows (claimants
// selected by different CNPs are dropped: fail closed, tiers.go), never
// the reverse; it returns how many flows were so denied.
func checkTiersGrid(t *testing.T, e *Engine, fake *nft.Fake) (closed int) {
	t.Helper()
	return checkTiersGridOf(t, e, fake, tierGridAddrs)
}

// checkTiersGridOf is checkTiersGrid over the given ends of flows.
func checkTiersGridOf(t *testing.T, e *Engine, fake *nft.Fake, addrs []string) (closed int) {
	t.Helper()
	if _, err := e.Flush(context.Background()); err != nil {
		t.Fatalf("flush: %v", err)
	}
	bad := 0
	for _, src := range addrs {
		for _, dst := range addrs {
			if src == dst {
				continue
			}
			for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
				for _, port := range tierGridPorts {
					fl := cnpFlow{src: src, dst: dst, proto: proto, port: port}.flow()
					d := e.Decide(fl)
					got, path := TraceFlow(fake, fl)
					if !got && d.Allowed && (len(d.Egress.Claimants) > 1 || len(d.Ingress.Claimants) > 1) {
						closed++
						continue
					}
					if got != d.Allowed {
						if bad++; bad <= 10 {
							t.Errorf("%s -> %s %s/%d: traced %v, Decide %v (%s)\npath: %s", src, dst, proto, port, got, d.Allowed, d.Reason, path)
						}
					}
				}
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d flows differ in all", bad)
	}
	return closed
}

// TestCompiledTiersMatchDecide compiles each world of cnpCases (CNPs of
// both tiers, Pass, priorities, NetworkPolicies, networks peers, broken and
// degraded policies) and holds the traced verdict of every flow of the grid
// against Decide: after loading, after deleting the CNPs one by one (the
// program must come back to the NetworkPolicies alone), and after loading
// them again over those deletions.
func TestCompiledTiersMatchDecide(t *testing.T) {
	for _, tc := range cnpCases() {
		t.Run(tc.name, func(t *testing.T) {
			fake := nft.NewFake(nft.DefaultTable)
			e := newCNPWorldOn(t, slog.New(slog.DiscardHandler), fake)
			tc.load(t, e)
			checkTiersGrid(t, e, fake)
			for _, c := range tc.cnps {
				e.DeleteClusterNetworkPolicy(c.Name)
				checkTiersGrid(t, e, fake)
			}
			for _, c := range tc.cnps {
				_ = e.UpsertClusterNetworkPolicy(c) // errors checked by TestDecideClusterNetworkPolicy
			}
			checkTiersGrid(t, e, fake)
		})
	}
}

// TestCompiledTiersFollowPodsAndNamespaces: groups and classes follow pods
// that arrive, change labels or leave after the CNPs, and namespace labels.
func TestCompiledTiersFollowPodsAndNamespaces(t *testing.T) {
	fake := nft.NewFake(nft.DefaultTable)
	e := newCNPWorldOn(t, slog.New(slog.DiscardHandler), fake)
	for _, c := range []*v1beta1.ClusterNetworkPolicy{
		mkCNP("seeker-in", v1beta1.AdminTier, 1, podSubject("gryffindor", metav1.LabelSelector{MatchLabels: map[string]string{"app": "seeker"}}),
			cnpIn("", deny, nsPeerOf("slytherin"), cnpTCP(80)), cnpIn("", pass, nsPeerOf("ravenclaw"))),
		mkCNP("to-seekers", v1beta1.AdminTier, 2, nsSubject("hufflepuff"),
			cnpOut("", deny, podsPeerOf("gryffindor", metav1.LabelSelector{MatchLabels: map[string]string{"app": "seeker"}}), cnpTCPRange(80, 8080))),
		mkCNP("base", v1beta1.BaselineTier, 1, nsSubject("gryffindor"), cnpIn("", deny, nsPeerOf("ravenclaw")), cnpOut("", deny, networksPeer("198.18.0.0/29"))),
	} {
		if err := e.UpsertClusterNetworkPolicy(c); err != nil {
			t.Fatal(err)
		}
	}
	checkTiersGrid(t, e, fake)
	steps := []struct {
		name string
		do   func() error
	}{
		{"hermione becomes a seeker", func() error {
			return e.UpsertPod(cnpPod(herm, "198.18.0.5", "app", "seeker"))
		}},
		{"harry is no seeker", func() error { return e.UpsertPod(cnpPod(harry, "198.18.0.1")) }},
		{"slytherin relabelled ravenclaw", func() error {
			return e.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "slytherin", Labels: map[string]string{"conformance-house": "ravenclaw"}}})
		}},
		{"draco leaves", func() error { e.DeletePod("slytherin", "draco-malfoy"); return nil }},
		{"draco comes back", func() error { return e.UpsertPod(cnpPod(draco, "198.18.0.2")) }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := s.do(); err != nil {
				t.Fatal(err)
			}
			checkTiersGrid(t, e, fake)
		})
	}
}

// TestCompiledTiersClaimants compiles the claimants world of
// TestClusterPolicyClaimants: a peer class follows every claimant of an
// address, and claimants judged by different CNPs are dropped.
func TestCompiledTiersClaimants(t *testing.T) {
	fake := nft.NewFake(nft.DefaultTable)
	e := newCNPWorldOn(t, slog.New(slog.DiscardHandler), fake)
	loadClaimants(t, e)
	if closed := checkTiersGrid(t, e, fake); closed == 0 {
		t.Error("no flow of the claimed address was dropped: the claimants are judged by different CNPs")
	}
	// Not every claimant of draco's address is in slytherin: to-sly's peer
	// does not match it, and no CNP or NetworkPolicy isolates either
	// claimant for ingress.
	fl := cnpFlow{src: harry, dst: draco, proto: corev1.ProtocolTCP, port: 80}.flow()
	if ok, path := TraceFlow(fake, fl); !ok {
		t.Errorf("harry -> draco's claimed address dropped:\n%s", path)
	}
	e.DeletePod("ravenclaw", "cho")
	if closed := checkTiersGrid(t, e, fake); closed != 0 {
		t.Errorf("%d flows dropped with one claimant left", closed)
	}
}

// cnpPod is a running pod of cnpWorld's node with its house label and kv.
func cnpPod(id, ip string, kv ...string) *corev1.Pod {
	ns, name, _ := strings.Cut(id, "/")
	l := map[string]string{"conformance-house": ns}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec:       corev1.PodSpec{NodeName: "node-a"},
		Status:     corev1.PodStatus{PodIP: ip, Phase: corev1.PodRunning},
	}
}

// TestCompiledTiersIPv6: class maps of the IPv6 family, with a networks
// peer cut around the pods inside it and a pods peer, in both tiers.
func TestCompiledTiersIPv6(t *testing.T) {
	fake := nft.NewFake(nft.DefaultTable)
	e, err := New(Config{NodeName: "node-a", Dataplane: fake, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"gryffindor", "slytherin"} {
		if err := e.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"conformance-house": ns}}}); err != nil {
			t.Fatal(err)
		}
	}
	addrs := []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::4", "2001:db8:ff::1"}
	for i, id := range []string{"gryffindor/a", "gryffindor/b", "slytherin/c"} {
		if err := e.UpsertPod(cnpPod(id, addrs[i])); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*v1beta1.ClusterNetworkPolicy{
		mkCNP("out", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
			cnpOut("", accept, nsPeerOf("slytherin"), cnpTCP(80)),
			cnpOut("", deny, networksPeer("2001:db8:1::/120"), cnpTCPRange(80, 90)),
			cnpOut("", pass, networksPeer("2001:db8::/32"))),
		mkCNP("base", v1beta1.BaselineTier, 1, nsSubject("gryffindor"),
			cnpOut("", deny, networksPeer("2001:db8:ff::/48")),
			cnpIn("", deny, nsPeerOf("slytherin"), cnpUDP(53))),
	} {
		if err := e.UpsertClusterNetworkPolicy(c); err != nil {
			t.Fatal(err)
		}
	}
	checkTiersGridOf(t, e, fake, addrs)
	if err := e.UpsertNetworkPolicy(npAllowingFrom("gryffindor", "slytherin")); err != nil {
		t.Fatal(err)
	}
	checkTiersGridOf(t, e, fake, addrs)
}
