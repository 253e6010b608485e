package enforcer_test

// IP plan: the base world of semantics_test.go (node-a and node-b), plus the
// nodes' own addresses 198.18.0.1 (node-a, where the "other/host" hostNetwork
// pod lives) and 198.18.0.2 (node-b), and an outside host 198.19.0.5.
//
// Every node's conntrack table is a fakeFlowTable holding the connections of
// revokeConns as the forward hook saw them.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// fakeFlowTable is a conntrack table in memory: DeleteFlows removes the
// flows match selects.
type fakeFlowTable struct {
	flows []nft.Flow
	// keep makes DeleteFlows count matches without removing them
	// (benchmarks reuse one table).
	keep bool
	err  error
}

func (t *fakeFlowTable) DeleteFlows(ctx context.Context, match func(nft.Flow) bool) (deleted, examined int, err error) {
	kept := make([]nft.Flow, 0, len(t.flows))
	for _, f := range t.flows {
		if err := ctx.Err(); err != nil {
			return deleted, examined, err
		}
		examined++
		if match(f) {
			deleted++
			if !t.keep {
				continue
			}
		}
		kept = append(kept, f)
	}
	t.flows = kept
	return deleted, examined, t.err
}

// revokeConn is an established connection: endpoints as cluster.endpoint
// reads them, local when one end is the node itself (node-a's kubelet).
type revokeConn struct {
	name     string
	src, dst string
	proto    corev1.Protocol
	port     uint16
	local    bool
}

var revokeConns = []revokeConn{
	{"cli>web", "prod/cli", "prod/web", TCP, 8080, false},
	{"cli>web#2", "prod/cli", "prod/web", TCP, 8080, false}, // a second connection, another source port
	{"devcli>web", "dev/cli", "prod/web", TCP, 8080, false},
	{"devcli>web udp6", "dev/cli@6", "prod/web@6", UDP, 53, false},
	{"web>db", "prod/web", "prod/db", TCP, 5432, false},
	{"web>devweb", "prod/web", "dev/web", TCP, 80, false},
	{"cli>devweb", "prod/cli", "dev/web", TCP, 80, false},
	{"x>db sctp", "other/x", "prod/db", SCTP, 5432, false},
	{"kubelet>web", "198.18.0.1", "prod/web", TCP, 8080, true},
	{"node-b>web", "198.18.0.2", "prod/web", TCP, 8080, false},
	{"outside>web", "198.19.0.5", "prod/web", TCP, 8080, false},
}

// flowTable returns a table holding revokeConns and the connection name of
// each flow.
func flowTable(c *cluster) (*fakeFlowTable, map[nft.Flow]string) {
	names := map[nft.Flow]string{}
	t := &fakeFlowTable{}
	for i, rc := range revokeConns {
		proto, _ := enforcer.ProtocolNumber(rc.proto)
		f := nft.Flow{Protocol: proto, Src: c.endpoint(rc.src), SrcPort: uint16(40000 + i),
			Dst: c.endpoint(rc.dst), DstPort: rc.port, Local: rc.local}
		t.flows = append(t.flows, f)
		names[f] = rc.name
	}
	return t, names
}

// removed names the connections present in before and absent from after.
func removed(before []nft.Flow, after *fakeFlowTable, names map[nft.Flow]string) []string {
	var out []string
	for _, f := range before {
		if !slices.Contains(after.flows, f) {
			out = append(out, names[f])
		}
	}
	slices.Sort(out)
	return out
}

func TestRevokeDenied(t *testing.T) {
	webFromCli := mkPolicy("prod", "web-from-cli", selecting(sel("app", "web")),
		ingress(peers(podPeer(sel("app", "cli"))), tcp(8080)))
	webEgress := mkPolicy("prod", "web-egress", selecting(sel("app", "web")), types(networkingv1.PolicyTypeEgress),
		egress(peers(podPeer(sel("app", "db")))), egress(peers(nsPeer(sel("env", "dev")))))
	cases := []struct {
		name    string
		initial []*networkingv1.NetworkPolicy
		change  func(e *enforcer.Engine) error
		// want: per node, the connections the change revokes. A node that
		// revokes something must have had Restricts from the flush; with
		// additionsOnly, no node may have it.
		want          map[string][]string
		additionsOnly bool
	}{
		{
			name:   "local pod isolated by a new policy",
			change: func(e *enforcer.Engine) error { return e.UpsertNetworkPolicy(webFromCli) },
			// prod/cli keeps tcp 8080; dev's cli, udp, the outside and
			// another node's address lose it; the kubelet keeps its probe.
			want: map[string][]string{"node-a": {"devcli>web", "devcli>web udp6", "node-b>web", "outside>web"}},
		},
		{
			name:    "peer label change",
			initial: []*networkingv1.NetworkPolicy{webFromCli},
			change: func(e *enforcer.Engine) error {
				return e.UpsertPod(mkPod("prod", "cli", podLabels("app", "old"), onNode("node-b"), podIPs("198.18.2.10", "2001:db8:2::10")))
			},
			want: map[string][]string{"node-a": {"cli>web", "cli>web#2"}},
		},
		{
			name:    "policy edit",
			initial: []*networkingv1.NetworkPolicy{webFromCli},
			change: func(e *enforcer.Engine) error {
				return e.UpsertNetworkPolicy(mkPolicy("prod", "web-from-cli", selecting(sel("app", "web")),
					ingress(peers(podPeer(sel("app", "cli"))), tcp(9090))))
			},
			want: map[string][]string{"node-a": {"cli>web", "cli>web#2"}},
		},
		{
			name:    "namespace leaving a peer selector (egress)",
			initial: []*networkingv1.NetworkPolicy{webEgress},
			change:  func(e *enforcer.Engine) error { return e.UpsertNamespace(mkNamespace("dev", "env", "old")) },
			want:    map[string][]string{"node-a": {"web>devweb"}},
		},
		{
			name:    "local pod joining a policy's selector",
			initial: []*networkingv1.NetworkPolicy{webFromCli},
			change: func(e *enforcer.Engine) error {
				return e.UpsertPod(mkPod("prod", "db", podLabels("app", "web"), podIPs("198.18.1.11", "2001:db8:1::11"),
					containerPort("pg", TCP, 5432)))
			},
			want: map[string][]string{"node-a": {"web>db", "x>db sctp"}},
		},
		{
			name: "remote pod isolated: only its node revokes",
			change: func(e *enforcer.Engine) error {
				return e.UpsertNetworkPolicy(mkPolicy("prod", "cli-no-egress", selecting(sel("app", "cli")),
					types(networkingv1.PolicyTypeEgress)))
			},
			want: map[string][]string{"node-b": {"cli>devweb", "cli>web", "cli>web#2"}},
		},
		{
			name:    "new peer pod: additions only, nothing to revoke",
			initial: []*networkingv1.NetworkPolicy{webFromCli},
			change: func(e *enforcer.Engine) error {
				return e.UpsertPod(mkPod("prod", "cli2", podLabels("app", "cli"), onNode("node-b"), podIPs("198.18.2.11")))
			},
			additionsOnly: true,
		},
	}
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, testNodes...)
			loadBase(t, c, tc.initial...)
			// The sweep after the start: the table then holds only what the
			// initial policies allow.
			tables := map[string]*fakeFlowTable{}
			var names map[nft.Flow]string
			for _, n := range c.nodes {
				tables[n], names = flowTable(c)
				if _, err := c.engines[n].RevokeDenied(ctx, tables[n]); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.each(tc.change); err != nil {
				t.Fatal(err)
			}
			for _, n := range c.nodes {
				res, err := c.engines[n].Flush(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if tc.additionsOnly && res.Restricts {
					t.Errorf("%s: a flush of additions only says Restricts", n)
				}
				before := slices.Clone(tables[n].flows)
				rr, err := c.engines[n].RevokeDenied(ctx, tables[n])
				if err != nil {
					t.Fatal(err)
				}
				got := removed(before, tables[n], names)
				if !slices.Equal(got, tc.want[n]) {
					t.Errorf("%s: revoked %q, want %q", n, got, tc.want[n])
				}
				if len(got) > 0 && !res.Restricts {
					t.Errorf("%s: the change denied %q, but its flush did not say Restricts", n, got)
				}
				if rr.Deleted != len(got) || rr.Examined != len(before) {
					t.Errorf("%s: result %+v, want %d deleted of %d", n, rr, len(got), len(before))
				}
				// What is left is allowed: a second sweep deletes nothing.
				if rr, err := c.engines[n].RevokeDenied(ctx, tables[n]); err != nil || rr.Deleted != 0 {
					t.Errorf("%s: second sweep deleted %d, error %v", n, rr.Deleted, err)
				}
			}
		})
	}
}

// A UDP flow that a sweep deleted may come back reversed (a reply in
// flight); the sweeps that follow delete exactly that reversal, and ask to
// be called again until the last check. TCP flows are not watched: the
// program drops their mid-stream pickups.
func TestRevokeDeniedDeletesRevivals(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t, "node-a")
	loadBase(t, c)
	e := c.engines["node-a"]
	table, names := flowTable(c)
	if res, err := e.RevokeDenied(ctx, table); err != nil || res.Deleted != 0 || !res.FollowUp.IsZero() {
		t.Fatalf("sweep with nothing denied: %+v, %v", res, err)
	}
	// web isolated for ingress, admitting prod/cli on tcp 8080 only.
	if err := e.UpsertNetworkPolicy(mkPolicy("prod", "web-from-cli", selecting(sel("app", "web")),
		ingress(peers(podPeer(sel("app", "cli"))), tcp(8080)))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before := slices.Clone(table.flows)
	start := time.Now()
	res, err := e.RevokeDenied(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	if got := removed(before, table, names); !slices.Contains(got, "devcli>web udp6") || !slices.Contains(got, "devcli>web") {
		t.Fatalf("revoked %q, want dev/cli's flows among them", got)
	}
	if res.Revived != 0 || res.FollowUp.Before(start.Add(100*time.Millisecond)) || res.FollowUp.After(time.Now().Add(100*time.Millisecond)) {
		t.Errorf("sweep that revoked a UDP flow: %+v, want a follow-up 100 ms after it", res)
	}

	var udp, tcp nft.Flow
	for f, name := range names {
		switch name {
		case "devcli>web udp6":
			udp = f
		case "devcli>web":
			tcp = f
		}
	}
	reverse := func(f nft.Flow) nft.Flow {
		return nft.Flow{Protocol: f.Protocol, Src: f.Dst, SrcPort: f.DstPort, Dst: f.Src, DstPort: f.SrcPort}
	}
	revival := reverse(udp)
	otherPort := revival
	otherPort.DstPort++
	table.flows = append(table.flows, revival, otherPort, reverse(tcp))
	kept := slices.Clone(table.flows[:len(table.flows)-3])
	res, err = e.RevokeDenied(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 1 || res.Revived != 1 || res.FollowUp.IsZero() {
		t.Errorf("sweep after a revival: %+v, want exactly the revival deleted and a follow-up", res)
	}
	if want := append(kept, otherPort, reverse(tcp)); !slices.Equal(table.flows, want) {
		t.Errorf("table after the sweep: %v, want %v", table.flows, want)
	}
}

// A failing table is reported with the counts it reached; an engine without
// a node name revokes nothing.
func TestRevokeDeniedErrorsAndNoNode(t *testing.T) {
	c := newCluster(t, "node-a")
	loadBase(t, c, mkPolicy("prod", "deny-all"))
	table, _ := flowTable(c)
	table.err = errors.New("netlink: no buffer space")
	res, err := c.engines["node-a"].RevokeDenied(context.Background(), table)
	if err == nil || !errors.Is(err, table.err) || res.Deleted == 0 || res.Examined != len(revokeConns) {
		t.Errorf("failing table: %+v, error %v; want the counts and the table's error", res, err)
	}

	e, err := enforcer.New(enforcer.Config{Dataplane: nft.NewFake(nft.DefaultTable), Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	nss, pods := baseWorld()
	for _, ns := range nss {
		_ = e.UpsertNamespace(ns)
	}
	for _, p := range pods {
		// Pods without spec.nodeName would look local to an empty node name.
		p.Spec.NodeName = ""
		_ = e.UpsertPod(p)
	}
	_ = e.UpsertNetworkPolicy(mkPolicy("prod", "deny-all"))
	table, _ = flowTable(c)
	if res, err := e.RevokeDenied(context.Background(), table); err != nil || res.Deleted != 0 {
		t.Errorf("engine without a node: %+v, %v; want nothing deleted", res, err)
	}
}

// restricts (through FlushResult) relies on every plain set being matched by
// rules that accept: an element added to one can only allow more. A set
// looked up with != or by a rule that drops would break that, and sweeps
// would miss what its additions deny. With the deny log, counters and a
// third of the policies in audit mode, the audit chains' rules return
// instead (whether to log), which decides nothing either, nor does a rule
// without verdict that logs (whatever it looks up).
func TestPlainSetsOnlyAllow(t *testing.T) {
	for _, audit := range []bool{false, true} {
		g := newGenCluster(2_000)
		if audit {
			g.cfg = enforcer.Config{LogDenied: true, Counters: true}
			for i, np := range g.policies {
				if i%3 == 0 {
					np.Annotations = map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}
				}
			}
		}
		e, _ := g.build(t, nil)
		checkPlainSetsOnlyAllow(t, e.Desired(), audit)
	}
}

func checkPlainSetsOnlyAllow(t *testing.T, st *nft.State, audit bool) {
	t.Helper()
	returns := 0
	for _, ch := range st.Chains {
		for i, r := range ch.Rules {
			var plain, neq []string
			var verdict *nft.Verdict
			logs := false
			for _, x := range r.Exprs {
				switch x := x.(type) {
				case nft.Lookup:
					if s := st.Sets[x.Set]; s != nil && !s.VerdictMap {
						if x.Neq {
							neq = append(neq, x.Set)
						}
						plain = append(plain, x.Set)
					}
				case nft.Verdict:
					verdict = &x
				case nft.Log:
					logs = true
				}
			}
			if verdict == nil && logs {
				continue // a log rule decides nothing
			}
			if len(neq) > 0 {
				t.Errorf("chain %s rule %d: plain sets %v matched with !=", ch.Name, i, neq)
			}
			if len(plain) > 0 && verdict != nil && verdict.Kind == nft.VerdictReturn && strings.HasPrefix(ch.Name, "aud-") {
				returns++
				continue
			}
			if len(plain) > 0 && (verdict == nil || verdict.Kind == nft.VerdictDrop) {
				t.Errorf("chain %s rule %d: looks up %v and ends in %v, want accept, jump or goto", ch.Name, i, plain, verdict)
			}
		}
	}
	if audit && returns == 0 {
		t.Error("no audit chain looks up a set: the audited world audits nothing")
	}
}

// BenchmarkRevokeDenied judges a conntrack table of n entries on node-000 of
// a generated 10,000-pod cluster (50 nodes): each entry is a connection from
// a random pod of the cluster to one of the node's 200 pods, four
// connections per client, server and port, so a quarter of the entries are
// distinct flows (the sweep judges each distinct flow once). With
// isolated=true the cluster has its 1,000 policies, and every pod is
// isolated for ingress by its namespace's default deny, so every distinct
// flow costs a Decide; with isolated=false it has none, and no entry does.
// Nothing is deleted from the table between runs. On a shared machine the
// wall clock includes waiting for a core: cpu-ns/entry is the process's CPU
// time (the garbage collector's included).
func BenchmarkRevokeDenied(b *testing.B) {
	for _, isolated := range []bool{true, false} {
		g := newGenCluster(10_000)
		if !isolated {
			g.policies = nil
		}
		e, _ := g.build(b, nil)
		var local []netip.Addr
		for k := range g.pods {
			if p := g.pod(k); p.Spec.NodeName == "node-000" {
				local = append(local, netip.MustParseAddr(p.Status.PodIP))
			}
		}
		for _, n := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("isolated=%v/entries=%d", isolated, n), func(b *testing.B) {
				table := &fakeFlowTable{keep: true}
				for i := range n {
					flow := i / 4
					table.flows = append(table.flows, nft.Flow{Protocol: nft.ProtoTCP,
						Src: netip.MustParseAddr(g.pod(flow * 7919 % g.pods).Status.PodIP), SrcPort: uint16(1024 + i%60000),
						Dst: local[flow%len(local)], DstPort: []uint16{80, 8080, 443}[flow%3]})
				}
				b.ResetTimer()
				cpu0 := cpuTime()
				var res enforcer.RevokeResult
				for range b.N {
					var err error
					if res, err = e.RevokeDenied(context.Background(), table); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*n), "cpu-ns/entry")
				b.ReportMetric(float64(res.Deleted), "denied")
			})
		}
	}
}
