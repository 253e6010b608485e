package enforcer

// The experimental channel of ClusterNetworkPolicy (Config.
// ClusterNetworkPolicyExperimental): nodes egress peers and named ports, over
// cnpWorld with Node objects and the conformance pods' named ports
// (conformance/base/manifests.yaml of network-policy-api v0.3.0: every pod
// names web 80/TCP and dns 53/UDP):
//   node-a  kubernetes.io/os=linux, role=worker   198.18.1.1, 2001:db8::1:1, ExternalIP 198.19.1.1
//   node-b  kubernetes.io/os=linux, role=infra    198.18.1.2
//   node-w  kubernetes.io/os=windows              198.18.1.3
// cedric also names web 9003/SCTP (a name on two protocols).

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
)

const (
	nodeA, nodeAExt, nodeB, nodeW = "198.18.1.1", "198.19.1.1", "198.18.1.2", "198.18.1.3"
	nodeA6                        = "2001:db8::1:1"
)

// expNode is a Node with labels kv and InternalIP addresses addrs.
func expNode(name string, addrs []string, kv ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Labels[kv[i]] = kv[i+1]
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	return n
}

// expPod is cnpPod naming ports web 80/TCP and dns 53/UDP, plus extra.
func expPod(id, ip string, extra ...corev1.ContainerPort) *corev1.Pod {
	p := cnpPod(id, ip)
	ports := append([]corev1.ContainerPort{{Name: "web", ContainerPort: 80, Protocol: corev1.ProtocolTCP},
		{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}, extra...)
	p.Spec.Containers = []corev1.Container{{Name: "c", Ports: ports}}
	return p
}

// newExpWorld is cnpWorld with the experimental channel on (or off), its
// Node objects and named ports, programming dp (nil: none).
func newExpWorld(t *testing.T, dp nft.Dataplane, experimental bool) *Engine {
	t.Helper()
	e := newCNPWorldWith(t, Config{NodeName: "node-a", Logger: slog.New(slog.DiscardHandler), Dataplane: dp, ClusterNetworkPolicyExperimental: experimental})
	a := expNode("node-a", []string{nodeA, nodeA6}, "kubernetes.io/os", "linux", "role", "worker")
	a.Status.Addresses = append(a.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: nodeAExt})
	for _, n := range []*corev1.Node{a,
		expNode("node-b", []string{nodeB}, "kubernetes.io/os", "linux", "role", "infra"),
		expNode("node-w", []string{nodeW}, "kubernetes.io/os", "windows")} {
		if err := e.UpsertNode(n); err != nil {
			t.Fatal(err)
		}
	}
	for id, ip := range cnpWorld {
		var extra []corev1.ContainerPort
		if id == cedric {
			extra = append(extra, corev1.ContainerPort{Name: "web", ContainerPort: 9003, Protocol: corev1.ProtocolSCTP})
		}
		if err := e.UpsertPod(expPod(id, ip, extra...)); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func nodesPeer(kv ...string) v1beta1.ClusterNetworkPolicyEgressPeer {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		sel.MatchLabels[kv[i]] = kv[i+1]
	}
	return v1beta1.ClusterNetworkPolicyEgressPeer{Nodes: sel}
}

func cnpNamed(name string) v1beta1.ClusterNetworkPolicyProtocol {
	return v1beta1.ClusterNetworkPolicyProtocol{DestinationNamedPort: name}
}

// expCases are the experimental worlds, decided by
// TestDecideClusterNetworkPolicyExperimental and traced by
// TestCompiledTiersExperimentalMatchDecide.
func expCases() []cnpCase {
	tcp, udp, sctp := corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP
	return []cnpCase{
		{
			// conformance/tests/admin-network-policy-experimental-egress-rules.go
			// (CNPAdminTierEgressNamedPort over base/admin_tier/standard-egress-tcp-rules.yaml):
			// rule 5, TCP 8080 to hufflepuff, rewritten to the named port web.
			name: "admin egress named port",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("egress-tcp", v1beta1.AdminTier, 6, nsSubject("gryffindor"),
				cnpOut("allow-to-ravenclaw-everything", accept, nsPeerOf("ravenclaw")),
				cnpOut("deny-to-ravenclaw-everything", deny, nsPeerOf("ravenclaw")),
				cnpOut("pass-to-ravenclaw-everything", pass, nsPeerOf("ravenclaw")),
				cnpOut("deny-to-slytherin-at-port-80", deny, nsPeerOf("slytherin"), cnpTCP(80)),
				cnpOut("pass-to-slytherin-at-port-80", pass, nsPeerOf("slytherin"), cnpTCP(80)),
				cnpOut("allow-to-hufflepuff-at-web", accept, nsPeerOf("hufflepuff"), cnpNamed("web")),
				cnpOut("deny-to-hufflepuff-everything-else", deny, nsPeerOf("hufflepuff")))},
			flows: []cnpFlow{
				{harry, cedric, tcp, 80, true, "allowed by admin policy egress-tcp rule 5 (allow-to-hufflepuff-at-web)"},
				{harry, cedric, tcp, 8080, false, "denied by admin policy egress-tcp rule 6"},
				{harry, cedric, sctp, 9003, true, "rule 5"}, // web is SCTP 9003 too on cedric
				{harry, cedric, udp, 80, false, "rule 6"},
				{harry, draco, tcp, 80, false, "rule 3"},
			},
		},
		{
			// conformance/tests/admin-network-policy-experimental-ingress-rules.go
			// (CNPAdminTierIngressNamedPort over base/admin_tier/standard-ingress-udp-rules.yaml):
			// rule 5, UDP 53 from gryffindor, rewritten to the named port dns,
			// which resolves on the subject pod.
			name: "admin ingress named port",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("ingress-udp", v1beta1.AdminTier, 4, nsSubject("hufflepuff"),
				cnpIn("allow-from-ravenclaw-everything", accept, nsPeerOf("ravenclaw")),
				cnpIn("deny-from-slytherin-at-port-5353", deny, nsPeerOf("slytherin"), cnpUDP(5353)),
				cnpIn("allow-from-gryffindor-at-dns", accept, nsPeerOf("gryffindor"), cnpNamed("dns")),
				cnpIn("deny-from-gryffindor-everything-else", deny, nsPeerOf("gryffindor")))},
			flows: []cnpFlow{
				{harry, cedric, udp, 53, true, "allowed by admin policy ingress-udp rule 2"},
				{harry, cedric, udp, 5353, false, "denied by admin policy ingress-udp rule 3"},
				{harry, cedric, tcp, 53, false, "rule 3"},
				{draco, cedric, udp, 5353, false, "rule 1"},
			},
		},
		{
			// conformance/tests/baseline-admin-network-policy-experimental-egress-rules.go
			// (CNPBaselineTierEgressNamedPort): a Baseline Accept by name and a
			// Deny of the rest, under a NetworkPolicy-free namespace.
			name: "baseline egress named port",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("default", v1beta1.BaselineTier, 1, nsSubject("gryffindor"),
				cnpOut("allow-dns", accept, nsPeerOf("slytherin"), cnpNamed("dns")),
				cnpOut("deny-rest", deny, nsPeerOf("slytherin")))},
			flows: []cnpFlow{
				{harry, draco, udp, 53, true, "allowed by baseline policy default rule 0"},
				{harry, draco, tcp, 53, false, "denied by baseline policy default rule 1"},
				{harry, cedric, tcp, 53, true, "egress of gryffindor/harry-potter is not isolated"},
			},
		},
		{
			// conformance/tests/admin-network-policy-experimental-egress-rules.go
			// (CNPAdminTierEgressNodePeers over base/admin_tier/experimental-egress-selector-rules.yaml,
			// with HostNetworkPorts 8080, 9003, 5353: ports of the tracing grid).
			name: "admin egress node peers",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("node-and-cidr-as-peers-example", v1beta1.AdminTier, 75,
				podSubject("gryffindor", house("gryffindor")),
				cnpOut("allow-egress-to-8080-on-nodes", accept, nodesPeer("kubernetes.io/os", "linux"), cnpTCP(8080)),
				cnpOut("pass-egress-to-5353-on-nodes", pass, nodesPeer("kubernetes.io/os", "linux"), cnpUDP(5353)),
				func(c *v1beta1.ClusterNetworkPolicy) {
					c.Spec.Egress = append(c.Spec.Egress, v1beta1.ClusterNetworkPolicyEgressRule{Name: "deny-egress-to-slytherin-and-nodes-and-internet", Action: deny,
						To: []v1beta1.ClusterNetworkPolicyEgressPeer{podsPeerOf("slytherin", house("slytherin")), nodesPeer("kubernetes.io/os", "linux"), networksPeer("0.0.0.0/0", "::/0")}})
				})},
			flows: []cnpFlow{
				{harry, nodeA, tcp, 8080, true, "allowed by admin policy node-and-cidr-as-peers-example rule 0"},
				{harry, nodeAExt, tcp, 8080, true, "rule 0"},
				{harry, nodeA6, tcp, 8080, true, "rule 0"},
				{harry, nodeB, udp, 5353, true, "passed by admin policy node-and-cidr-as-peers-example rule 1"},
				{harry, nodeA, tcp, 9003, false, "denied by admin policy node-and-cidr-as-peers-example rule 2"},
				{harry, nodeA, sctp, 5353, false, "rule 2"},
				{harry, nodeW, tcp, 8080, false, "rule 2"}, // not linux: the networks peer denies
				{harry, draco, tcp, 80, false, "rule 2"},
			},
		},
		{
			// conformance/tests/baseline-admin-network-policy-experimental-egress-rules.go
			// (CNPBaselineTierEgressNodePeers over base/baseline_tier/experimental-egress-selector-rules.yaml):
			// a Baseline Accept to some nodes, a Deny to the others.
			name: "baseline egress node peers by role",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("default", v1beta1.BaselineTier, 1, nsSubject("gryffindor"),
				cnpOut("allow-workers-8080", accept, nodesPeer("role", "worker"), cnpTCP(8080)),
				cnpOut("deny-nodes", deny, nodesPeer()))},
			flows: []cnpFlow{
				{harry, nodeA, tcp, 8080, true, "allowed by baseline policy default rule 0"},
				{harry, nodeB, tcp, 8080, false, "denied by baseline policy default rule 1"},
				{harry, nodeW, udp, 53, false, "rule 1"},
				{harry, "198.18.1.4", tcp, 8080, true, "not isolated"}, // no node's address
				{draco, nodeB, tcp, 8080, true, "not isolated"},
			},
		},
		{
			name: "named port with a networks or nodes peer fails closed",
			cnps: []*v1beta1.ClusterNetworkPolicy{
				mkCNP("net-named", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
					cnpOut("", deny, networksPeer("198.18.0.0/16"), cnpNamed("web"))),
				mkCNP("node-named", v1beta1.AdminTier, 2, nsSubject("hufflepuff"),
					cnpOut("", accept, nodesPeer(), cnpNamed("web")), cnpOut("", deny, nsPeerOf("slytherin"), cnpTCP(80))),
			},
			flows: []cnpFlow{
				{harry, luna, udp, 5353, false, "admin policy net-named rule 0 (invalid: denies all)"},
				{cedric, nodeA, tcp, 80, true, "not isolated"},
				{cedric, draco, tcp, 80, false, "admin policy node-named rule 1"},
			},
			wantErr: "destinationNamedPort with a networks or nodes peer",
		},
		{
			name: "named port and a protocol in one entry fails closed",
			cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("both", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
				cnpIn("", deny, nsPeerOf("slytherin"), v1beta1.ClusterNetworkPolicyProtocol{DestinationNamedPort: "web", TCP: &v1beta1.ClusterNetworkPolicyProtocolTCP{}}))},
			flows:   []cnpFlow{{luna, harry, udp, 53, false, "rule 0 (invalid: denies all)"}},
			wantErr: "exactly one is required",
		},
	}
}

// TestDecideClusterNetworkPolicyExperimental: with the experimental channel
// on, Decide matches nodes peers against the Node records' addresses and
// named ports on the pod at the destination.
func TestDecideClusterNetworkPolicyExperimental(t *testing.T) {
	for _, tc := range expCases() {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, newExpWorld(t, nil, true))
		})
	}
}

// TestDecideExperimentalOffFailsClosed: the same worlds with the channel
// off: every rule with a nodes peer or a named port is broken, so an Accept
// matches nothing and a Deny or Pass denies every connection.
func TestDecideExperimentalOffFailsClosed(t *testing.T) {
	tcp := corev1.ProtocolTCP
	tc := cnpCase{
		cnps: []*v1beta1.ClusterNetworkPolicy{mkCNP("exp", v1beta1.AdminTier, 1, nsSubject("gryffindor"),
			cnpOut("", accept, nsPeerOf("hufflepuff"), cnpNamed("web")),
			cnpOut("", pass, nodesPeer("role", "worker"), cnpTCP(8080)))},
		flows: []cnpFlow{
			{harry, cedric, tcp, 80, false, "admin policy exp rule 1 (invalid: denies all)"},
			{harry, luna, tcp, 8080, false, "rule 1 (invalid: denies all)"},
			{draco, harry, tcp, 80, true, ""},
		},
		wantErr: "named ports are not supported with the experimental channel off",
	}
	tc.check(t, newExpWorld(t, nil, false))
}

// expGridAddrs are tierGridAddrs with the nodes' addresses and an address
// next to them that no node has.
var expGridAddrs = append(slices.Clone(tierGridAddrs), nodeA, nodeAExt, nodeB, nodeW, "198.18.1.4")

// TestCompiledTiersExperimentalMatchDecide compiles each experimental world
// (nodes peers as points in the class maps, named ports as lookups of the
// every-pod named sets in the class chains) and holds every traced flow of
// the grid, nodes' addresses included, against Decide; then again after
// deleting the CNPs one by one and loading them back.
func TestCompiledTiersExperimentalMatchDecide(t *testing.T) {
	for _, tc := range expCases() {
		t.Run(tc.name, func(t *testing.T) {
			fake := nft.NewFake(nft.DefaultTable)
			e := newExpWorld(t, fake, true)
			tc.load(t, e)
			checkTiersGridOf(t, e, fake, expGridAddrs)
			for _, c := range tc.cnps {
				e.DeleteClusterNetworkPolicy(c.Name)
				checkTiersGridOf(t, e, fake, expGridAddrs)
			}
			for _, c := range tc.cnps {
				_ = e.UpsertClusterNetworkPolicy(c) // errors checked by TestDecideClusterNetworkPolicyExperimental
			}
			checkTiersGridOf(t, e, fake, expGridAddrs)
		})
	}
}

// TestCompiledTiersExperimentalFollowChanges: the class maps follow Node
// relabels, address changes, deletions and returns; the class chains'
// named-port lookups follow pods whose named ports change, a CNP that
// renames its port, and the families of the node's pods (the named sets of
// IPv6 appear with the first local IPv6 pod). Every step is traced against
// Decide over IPv4 and IPv6 ends.
func TestCompiledTiersExperimentalFollowChanges(t *testing.T) {
	fake := nft.NewFake(nft.DefaultTable)
	e := newExpWorld(t, fake, true)
	cases := expCases()
	for _, tc := range []cnpCase{cases[0], cases[1], cases[4]} {
		if errs := tc.load(t, e); len(errs) > 0 {
			t.Fatal(errs)
		}
	}
	const ginny, ernie = "2001:db8::5", "2001:db8::6"
	v6 := []string{nodeA6, ginny, ernie, "2001:db8::1:2"}
	check := func(t *testing.T) {
		t.Helper()
		checkTiersGridOf(t, e, fake, expGridAddrs)
		checkTiersGridOf(t, e, fake, v6)
	}
	check(t)
	web := func(port int32) corev1.ContainerPort {
		return corev1.ContainerPort{Name: "web", ContainerPort: port, Protocol: corev1.ProtocolTCP}
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"node-b relabelled worker", func() error {
			return e.UpsertNode(expNode("node-b", []string{nodeB}, "kubernetes.io/os", "linux", "role", "worker"))
		}},
		{"node-a moves to 198.18.1.4", func() error {
			return e.UpsertNode(expNode("node-a", []string{"198.18.1.4", nodeA6}, "kubernetes.io/os", "linux", "role", "worker"))
		}},
		{"node-w deleted", func() error { e.DeleteNode("node-w"); return nil }},
		{"node-w back as a worker", func() error {
			return e.UpsertNode(expNode("node-w", []string{nodeW}, "kubernetes.io/os", "windows", "role", "worker"))
		}},
		{"cedric's web moves to 8080", func() error {
			p := expPod(cedric, "198.18.0.3")
			p.Spec.Containers[0].Ports[0] = web(8080)
			return e.UpsertPod(p)
		}},
		{"cedric names no port", func() error { return e.UpsertPod(cnpPod(cedric, "198.18.0.3")) }},
		{"egress-tcp's named port renamed dns", func() error {
			c := cases[0].cnps[0].DeepCopy()
			c.Spec.Egress[5].Protocols = []v1beta1.ClusterNetworkPolicyProtocol{cnpNamed("dns")}
			return e.UpsertClusterNetworkPolicy(c)
		}},
		{"first IPv6 pods: ginny local, ernie remote", func() error {
			if err := e.UpsertPod(expPod("gryffindor/ginny", ginny, web(8080))); err != nil {
				return err
			}
			p := expPod("hufflepuff/ernie", ernie)
			p.Spec.NodeName = "node-b"
			return e.UpsertPod(p)
		}},
		{"ginny leaves", func() error { e.DeletePod("gryffindor", "ginny"); return nil }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := s.do(); err != nil {
				t.Fatal(err)
			}
			check(t)
		})
	}
	// The grid saw the IPv6 named sets used: ginny reaches ernie's web by
	// name (egress-tcp rule 5 before the rename: dns now).
	if err := e.UpsertPod(expPod("gryffindor/ginny", ginny)); err != nil {
		t.Fatal(err)
	}
	fl := Flow{Src: netip.MustParseAddr(ginny), Dst: netip.MustParseAddr(ernie), Protocol: corev1.ProtocolUDP, Port: 53}
	if d := e.Decide(fl); !d.Allowed || !strings.Contains(d.Reason, "egress-tcp rule 5") {
		t.Fatalf("ginny -> ernie udp/53: %v (%s), want allowed by rule 5", d.Allowed, d.Reason)
	}
	check(t)
}

// TestTierNamedSetsFollowLocalSubjects: a CNP's named-port set lives on a
// node while a class chain of a local subject names it, as a NetworkPolicy's
// does while it selects a local pod: none for a subject with no pod here, one
// when the subject moves to a local namespace, none again when the policy
// goes.
func TestTierNamedSetsFollowLocalSubjects(t *testing.T) {
	fake := nft.NewFake(nft.DefaultTable)
	e := newExpWorld(t, fake, true)
	named := func() bool {
		t.Helper()
		checkTiersGridOf(t, e, fake, expGridAddrs) // flushes
		ns := e.c.named.every["named ports sctp/web, tcp/web, udp/web of every pod (v4, v6)"]
		st, err := fake.Read(context.Background())
		if ns == nil || err != nil {
			return false
		}
		for _, c := range st.Chains {
			for _, r := range c.Rules {
				if slices.ContainsFunc(r.Exprs, func(x nft.Expr) bool {
					l, ok := x.(nft.Lookup)
					return ok && strings.HasPrefix(l.Set, "named-v4-") && bytes.Equal(l.Tag, nft.TagValue(ns.tag))
				}) {
					return true
				}
			}
		}
		return false
	}
	p := mkCNP("web", v1beta1.AdminTier, 1, nsSubject("durmstrang"), cnpOut("", accept, nsPeerOf("hufflepuff"), cnpNamed("web")),
		cnpOut("", deny, nsPeerOf("hufflepuff")))
	steps := []struct {
		name string
		do   func() error
		want bool
	}{
		{"no local subject", func() error { return e.UpsertClusterNetworkPolicy(p) }, false},
		{"subject gryffindor", func() error {
			q := p.DeepCopy()
			q.Spec.Subject = nsSubject("gryffindor")
			return e.UpsertClusterNetworkPolicy(q)
		}, true},
		{"policy deleted", func() error { e.DeleteClusterNetworkPolicy("web"); return nil }, false},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		if got := named(); got != s.want {
			t.Errorf("%s: named set present %v, want %v:\n%s", s.name, got, s.want, fake.Dump())
		}
	}
}

// expNodeAddrs are the addresses random Nodes take: some are also in the pod
// pool of tierAddrs (as a hostNetwork pod's would be), 198.19.0.1 and
// 2001:db8:ff::1 are the flows' addresses of no pod.
var expNodeAddrs = []string{"198.18.0.6", "198.18.0.5", "198.19.0.1", "2001:db8:1::4", "2001:db8:ff::1"}

// expStep is tierGen.step with the experimental channel's changes mixed in:
// Node upserts (relabels, address changes) and deletes, CNPs whose egress
// peers may be nodes peers and whose rules may name ports (with a nodes
// peer: failing closed), pods naming ports of several protocols.
func expStep(g tierGen, e *Engine, w *tierWorld) string {
	switch n := g.r.IntN(10); {
	case n < 2:
		name := g.pick([]string{"node-a", "node-b", "node-c"})
		if g.r.IntN(4) == 0 {
			delete(w.nodes, name)
			e.DeleteNode(name)
			return "delete node " + name
		}
		var addrs []string
		for _, a := range expNodeAddrs {
			if g.r.IntN(3) == 0 {
				addrs = append(addrs, a)
			}
		}
		nd := expNode(name, addrs, "role", g.pick([]string{"worker", "infra"}))
		w.nodes[name] = nd
		_ = e.UpsertNode(nd)
		return fmt.Sprintf("upsert node %s %v %v", name, nd.Labels, addrs)
	case n < 5:
		c := g.cnp()
		for i := range c.Spec.Egress {
			if g.r.IntN(3) == 0 {
				c.Spec.Egress[i].To = []v1beta1.ClusterNetworkPolicyEgressPeer{g.pick3(nodesPeer(), nodesPeer("role", "worker"), nodesPeer("role", "infra"))}
			}
			if g.r.IntN(3) == 0 {
				c.Spec.Egress[i].Protocols = g.namedPorts()
			}
		}
		for i := range c.Spec.Ingress {
			if g.r.IntN(3) == 0 {
				c.Spec.Ingress[i].Protocols = g.namedPorts()
			}
		}
		w.cnps[c.Name] = c
		_ = e.UpsertClusterNetworkPolicy(c)
		return "upsert experimental cnp " + c.Name
	case n < 7:
		p := g.pod()
		var ports []corev1.ContainerPort
		for _, cp := range []corev1.ContainerPort{{Name: "web", ContainerPort: 80}, {Name: "web", ContainerPort: 8081},
			{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {Name: "web", ContainerPort: 9003, Protocol: corev1.ProtocolSCTP}} {
			if g.r.IntN(2) == 0 {
				ports = append(ports, cp)
			}
		}
		p.Spec.Containers = []corev1.Container{{Name: "c", Ports: ports}}
		w.pods[p.Namespace+"/"+p.Name] = p
		_ = e.UpsertPod(p)
		return fmt.Sprintf("upsert pod %s/%s %v %v on %s, ports %v", p.Namespace, p.Name, p.Labels, p.Status.PodIPs, p.Spec.NodeName, ports)
	}
	return g.step(e, w)
}

func (g tierGen) pick3(a, b, c v1beta1.ClusterNetworkPolicyEgressPeer) v1beta1.ClusterNetworkPolicyEgressPeer {
	return []v1beta1.ClusterNetworkPolicyEgressPeer{a, b, c}[g.r.IntN(3)]
}

func (g tierGen) namedPorts() []v1beta1.ClusterNetworkPolicyProtocol {
	if g.r.IntN(2) == 0 {
		return []v1beta1.ClusterNetworkPolicyProtocol{cnpNamed("web")}
	}
	return []v1beta1.ClusterNetworkPolicyProtocol{cnpNamed("dns"), cnpTCP(80)}
}

// TestTiersExperimentalIncrementalMatchesFreshBuild is
// TestTiersIncrementalMatchesFreshBuild with the experimental channel on and
// its changes in the sequences (expStep): after every step both nodes'
// programs equal a fresh build of the world (Nodes loaded last) and random
// flows, to node addresses too, equal Decide.
func TestTiersExperimentalIncrementalMatchesFreshBuild(t *testing.T) {
	seeds := 8
	if testing.Short() {
		seeds = 2
	}
	newWorld := func() *tierWorld {
		w := newTierWorld()
		w.nodes, w.experimental = map[string]*corev1.Node{}, true
		return w
	}
	runTierSequences(t, seeds, 150, newWorld, expStep)
}
