package enforcer_test

// IP plan: the generated cluster of bench_test.go (198.18.0.0/15 from
// 198.18.0.1 up, 2001:db8:100::/64), networks peers of benchCNP in
// 198.19.0.0/17, and the two probing pods at nfttest's connection-rate
// addresses (pod a 198.19.250.10, pod b 198.19.250.11, gateway 198.19.255.1),
// outside all of those.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// The probing pods and their policies. Pod a (namespace connrate-a, team t0)
// connects to pod b (namespace connrate-b, env prod). b's ingress is isolated
// by ten NetworkPolicies; policy j allows TCP 8000+j-8100+j from the pods
// client=c<j> of team t0 namespaces, so only j = 0 allows a on
// tierRatePort, and every one of them matches the port tierRateWorstPort
// (and walks its peer chain before it fails on the address), as in nft's
// BenchmarkKernelConnRate. The allowing policy is named so that it sorts,
// and is jumped to, last. a's egress is isolated by no NetworkPolicy.
//
// With benchCNP's cluster-wide policies (every pod their subject):
//   - b's ingress: the Admin tier's class of a holds the ingress Deny rules
//     of the policies whose peer is team t0 (every fiftieth, all Admin: 2 of
//     100, 20 of 1,000), on ports 1000+i: walked without a match, so the
//     NetworkPolicies decide (allow);
//   - a's egress: b (app=a7 in a prod namespace) is in no Admin class, and
//     in the Baseline class of the egress Accept rules to app=a7 pods on
//     8000-8100 (every tenth policy, from the seventh: Baseline), whose
//     first rule accepts. Relabelled app=a0 (tierRateAdminApp), b is in the
//     Admin class of the Accept rules to app=a0 instead, which decides there.
const (
	tierRatePort      = 8000
	tierRateWorstPort = 8080
	tierRateNSA       = "connrate-a"
	tierRateNSB       = "connrate-b"
	tierRateBaseApp   = "a7"
	tierRateAdminApp  = "a0"
)

// tierRatePolicies is the number of NetworkPolicies of the generated
// cluster, as many as nft's BenchmarkKernelConnRate loads: 100 per
// namespace (pol-00 to pol-99, benchPolicy's ten kinds over again) in 100
// namespaces.
const tierRatePolicies = 10_000

// tierRateProbes returns the probing pods' namespaces and pods (b labelled
// app=bApp).
func tierRateProbes(bApp string) ([]*corev1.Namespace, []*corev1.Pod) {
	nss := []*corev1.Namespace{
		mkNamespace(tierRateNSA, "team", "t0", "env", "dev"),
		mkNamespace(tierRateNSB, "team", "t1", "env", "prod"),
	}
	pods := []*corev1.Pod{
		mkPod(tierRateNSA, "a", podLabels("client", "c0"), onNode("node-000"), podIPs(nfttest.ConnRateA.String())),
		tierRatePodB(bApp),
	}
	return nss, pods
}

func tierRatePodB(app string) *corev1.Pod {
	return mkPod(tierRateNSB, "b", podLabels("app", app, "role", "server"), onNode("node-000"), podIPs(nfttest.ConnRateB.String()))
}

// tierRateFeed builds an engine of the node configured as cfg: the
// generated cluster of 10,000 pods with tierRatePolicies NetworkPolicies,
// the probing pods and b's policies, flushed into a discarding dataplane.
func tierRateFeed(b *testing.B, cfg enforcer.Config) *enforcer.Engine {
	g := newGenCluster(tierBenchPods)
	g.cfg = cfg
	for i := range g.namespaces {
		for j := 10; j < tierRatePolicies/len(g.namespaces); j++ {
			g.policies = append(g.policies, benchPolicy(i, j, len(g.namespaces)))
		}
	}
	e, _ := g.build(b, nil)
	tierRateAddProbes(b, e)
	return e
}

// tierRateAddProbes adds the probing pods, their namespaces and b's ten
// policies to e, and flushes.
func tierRateAddProbes(b *testing.B, e *enforcer.Engine) {
	nss, pods := tierRateProbes(tierRateBaseApp)
	for _, ns := range nss {
		if err := e.UpsertNamespace(ns); err != nil {
			b.Fatal(err)
		}
	}
	for _, p := range pods {
		if err := e.UpsertPod(p); err != nil {
			b.Fatal(err)
		}
	}
	for j := range 10 {
		np := mkPolicy(tierRateNSB, fmt.Sprintf("allow-%d", 9-j), selecting(sel("role", "server")),
			ingress(peers(nsPodPeer(sel("team", "t0"), sel("client", fmt.Sprintf("c%d", j)))), portRange(TCP, int32(8000+j), int32(8100+j))))
		if err := e.UpsertNetworkPolicy(np); err != nil {
			b.Fatal(err)
		}
	}
	tierRateFlush(b, e)
}

func tierRateFlush(b *testing.B, e *enforcer.Engine) {
	if _, err := e.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// tierRateProgram is one measured node: the engine's desired state at some
// point of the build, what Decide and a trace through it say of the
// measured connection, and the port it goes to.
type tierRateProgram struct {
	name  string
	state *nft.State
	port  uint16
	udp   bool // the measured flows are UDP, not TCP
	// The tiers Decide must name for b's ingress and a's egress ("": none,
	// as without ClusterNetworkPolicies).
	ingress, egress string
	through         []string
}

// tierRateCheck fails unless the measured connection (or UDP flow) is what
// the setup claims: allowed by Decide with the ingress decided by NetworkPolicy and
// the egress by the expected tier, and, traced through the compiled
// program, accepted after passing the chains named in through (in order;
// the trace, logged with -v, lists the rules that matched).
func tierRateCheck(b *testing.B, e *enforcer.Engine, p tierRateProgram) {
	proto, l4 := TCP, uint8(nft.ProtoTCP)
	if p.udp {
		proto, l4 = UDP, nft.ProtoUDP
	}
	d := e.Decide(enforcer.Flow{Src: nfttest.ConnRateA, Dst: nfttest.ConnRateB, Protocol: proto, Port: p.port})
	if !d.Allowed || d.Ingress.Tier != p.ingress || d.Egress.Tier != p.egress {
		b.Fatalf("%s: Decide a -> b:%s/%d = %+v; want allowed, ingress tier %q, egress tier %q", p.name, proto, p.port, d, p.ingress, p.egress)
	}
	tr := nft.Trace(p.state, nft.Packet{Hook: nft.HookForward, Src: nfttest.ConnRateA, Dst: nfttest.ConnRateB, Proto: l4, Dport: p.port})
	path := strings.Join(tr.Path, "\n")
	rest := path
	for _, c := range p.through {
		i := strings.Index(rest, c)
		if i < 0 {
			b.Fatalf("%s: the trace does not pass %q (after the chains before it in %q):\n%s", p.name, c, p.through, tr)
		}
		rest = rest[i+len(c):]
	}
	if !tr.Accepted() {
		b.Fatalf("%s: the compiled program drops a -> b:%s/%d:\n%s", p.name, proto, p.port, tr)
	}
	st, policyChains := e.Stats(), 0
	for name := range p.state.Chains {
		if strings.HasPrefix(name, "pol-") {
			policyChains++
		}
	}
	b.Logf("%s: %d elements, %d chains (%d of NetworkPolicies), %d sets; %s", p.name, st.Elements, st.Chains, policyChains, st.Sets, d.Reason)
	if testing.Verbose() {
		b.Logf("%s: the measured connection's SYN %s", p.name, tr)
	}
}

// BenchmarkKernelTiersConnRate measures new TCP connections per second
// between two real pods of the engine's model, through the program the
// engine compiles for their node, with 0, 100 and 1,000 cluster-wide
// ClusterNetworkPolicies (benchCNP: Admin and Baseline, subject every
// namespace) on top of 10,000 NetworkPolicies (tierRateFeed), against no
// table, in interleaved batches (nfttest.RunConnRateRounds), each setup a
// fresh routed node namespace. Setups:
//
//   - no-table: no nftables in the node;
//   - cnps=0: the node with NetworkPolicies only;
//   - cnps=100, cnps=1000: the Admin class chain of a walked without a
//     match, then b's NetworkPolicies allow (ingress); the Baseline class of
//     b accepts (egress);
//   - cnps=1000-worst-port: the same to tierRateWorstPort, which all ten of
//     b's policies match before their peer lookups;
//   - cnps=1000-admin-decides: b relabelled app=a0, so that an Admin class
//     chain accepts a's egress.
//
// The engine is built once, incrementally (policies added one by one, as
// BenchmarkTiersProgram does), and each setup's kernel gets the engine's
// desired state at that point as one transaction: what the engine's first
// Flush into a Kernel sends (benchKernelApply). Reported: medians of the
// per-round ratios against no-table (wall and CPU), and of the wall ratios
// against cnps=0 (the tiers' own share). Needs CAP_NET_ADMIN.
func BenchmarkKernelTiersConnRate(b *testing.B) {
	nfttest.RequireNetAdmin(b)
	e := tierRateFeed(b, enforcer.Config{})
	var programs []tierRateProgram
	// snapshot takes the engine's desired state now and checks it.
	snapshot := func(p tierRateProgram) {
		p.state = e.Desired()
		tierRateCheck(b, e, p)
		programs = append(programs, p)
	}
	podB := "pol-in-" + tierRateNSB + "/allow-"
	snapshot(tierRateProgram{name: "cnps=0", port: tierRatePort, through: []string{podB + "0", podB + "9"}})
	done := 0
	for _, n := range []int{100, tierBenchCNPs} {
		for ; done < n; done++ {
			if err := e.UpsertClusterNetworkPolicy(benchCNP(done, int32(done%1000))); err != nil {
				b.Fatal(err)
			}
		}
		tierRateFlush(b, e)
		snapshot(tierRateProgram{name: fmt.Sprintf("cnps=%d", n), port: tierRatePort, ingress: "networkpolicy", egress: "baseline",
			through: []string{"bas-eg-", "adm-in-", "adm-in-c", podB + "0", podB + "9"}})
	}
	snapshot(tierRateProgram{name: fmt.Sprintf("cnps=%d-worst-port", tierBenchCNPs), port: tierRateWorstPort, ingress: "networkpolicy", egress: "baseline",
		through: []string{"bas-eg-", "adm-in-", "adm-in-c", podB + "0", podB + "9"}})
	if err := e.UpsertPod(tierRatePodB(tierRateAdminApp)); err != nil {
		b.Fatal(err)
	}
	tierRateFlush(b, e)
	snapshot(tierRateProgram{name: fmt.Sprintf("cnps=%d-admin-decides", tierBenchCNPs), port: tierRatePort, ingress: "networkpolicy", egress: "admin",
		through: []string{"adm-eg-c", "adm-in-", "adm-in-c", podB + "0", podB + "9"}})

	setups := []*nfttest.ConnRateSetup{nfttest.NewConnRateSetup(b, "no-table", nil, false, tierRatePort)}
	for _, p := range programs {
		setups = append(setups, programSetup(b, p.name, p.state, p.port, true))
	}
	nfttest.RunConnRateRounds(b, setups)
	nfttest.ReportConnRateMedians(b, setups)
	// The tiers' own share: against the same node without them.
	np := setups[1]
	for _, s := range setups[2:] {
		b.ReportMetric(nfttest.MedianRatio(s.BatchWall, np.BatchWall), s.Name+"/cnps=0-median")
	}
}

// programSetup is a connection-rate setup whose node holds state, loaded
// as one transaction (what an engine's first Flush into a Kernel sends),
// isolated as nfttest.NewConnRateSetup's.
func programSetup(b *testing.B, name string, state *nft.State, port uint16, isolated bool) *nfttest.ConnRateSetup {
	return nfttest.NewConnRateSetup(b, name, func(node *nfttest.NetNS) {
		k, err := nft.NewKernel(nft.WithNetNS(node.FD), nft.WithTable("nftw-bench"))
		if err != nil {
			b.Fatalf("%s: NewKernel: %v", name, err)
		}
		b.Cleanup(func() { _ = k.Close() })
		if err := k.Apply(context.Background(), nft.Diff(nil, state, nil)); err != nil {
			b.Fatalf("%s: Apply: %v", name, err)
		}
	}, isolated, port)
}
