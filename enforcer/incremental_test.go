package enforcer_test

// IP plan: see helpers_test.go (generated pods: 198.18.128.0/24, 2001:db8:100::/64).

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// freshDesired builds a new engine from the world and returns its desired state.
func freshDesired(t testing.TB, w *world, cfg enforcer.Config) *nft.State {
	t.Helper()
	e, err := enforcer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.load(e)
	return e.Desired()
}

// checkConverged asserts that what each Fake holds equals the desired state of
// an engine built from scratch from the same world.
func checkConverged(t testing.TB, c *cluster, w *world, step int) {
	t.Helper()
	for _, n := range c.nodes {
		got, err := c.fakes[n].Read(context.Background())
		if err != nil {
			t.Fatalf("step %d: read %s: %v", step, n, err)
		}
		want := freshDesired(t, w, c.config(n))
		got = enforcer.AsNamedIn(got, want)
		if tx := nft.Diff(got, want, nil); !tx.Empty() {
			t.Fatalf("step %d, node %s: programmed state differs from a fresh build (%d operations to fix):\n--- programmed\n%s\n--- fresh\n%s",
				step, n, tx.Size(), nft.Render("t", got), nft.Render("t", want))
		}
		if tx := nft.Diff(enforcer.AsNamedIn(c.engines[n].Desired(), want), want, nil); !tx.Empty() {
			t.Fatalf("step %d, node %s: desired state differs from a fresh build", step, n)
		}
	}
}

func TestIncrementalMatchesFreshBuild(t *testing.T) {
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	for seed := range seeds {
		r := rngChoices{rand.New(rand.NewPCG(uint64(seed), 7))}
		// The first node's pod CIDRs change now and then (first-packet
		// isolation on, changed, off), from choices of their own: the
		// worlds stay those of r.
		cidrs := rngChoices{rand.New(rand.NewPCG(uint64(seed), 15))}
		c := newCluster(t, genNodes...)
		w := newWorld()
		for step := range 120 {
			for _, call := range w.apply(genOp(r, w)) {
				_ = c.each(func(e *enforcer.Engine) error { call(e); return nil })
			}
			if cidrs.intn(10) == 0 {
				c.setPodCIDRs(pick(cidrs, genPodCIDRChoices...))
			}
			if r.intn(3) == 0 || step == 119 {
				c.flush()
				checkConverged(t, c, w, step)
			}
		}
		// And the reference evaluator agrees with the incremental rulesets, on
		// random flows and on every pod's named ports.
		for range 200 {
			src, dst, proto, port := genFlow(r)
			checkAgreement(t, c, enforcer.Flow{Src: src, Dst: dst, Protocol: proto, Port: port})
		}
		for _, f := range namedPortFlows(w) {
			checkAgreement(t, c, f)
		}
	}
}

// checkAgreement holds Decide against the traces of all nodes.
func checkAgreement(t testing.TB, c *cluster, f enforcer.Flow) {
	t.Helper()
	d := c.engines[c.nodes[0]].Decide(f)
	traced := true
	var paths []string
	for _, n := range c.nodes {
		ok, path := trace(c.fakes[n], f)
		traced = traced && ok
		paths = append(paths, n+": "+path)
	}
	if traced != d.Allowed {
		t.Fatalf("flow %v: Decide says %v (%s) but the rulesets say %v:\n%s", f, d.Allowed, d.Reason, traced, strings.Join(paths, "\n"))
	}
}

func loadBase(t *testing.T, c *cluster, pols ...*networkingv1.NetworkPolicy) {
	t.Helper()
	nss, pods := baseWorld()
	for _, ns := range nss {
		_ = c.each(func(e *enforcer.Engine) error { return e.UpsertNamespace(ns) })
	}
	for _, p := range pods {
		_ = c.each(func(e *enforcer.Engine) error { return e.UpsertPod(p) })
	}
	for _, np := range pols {
		if err := c.each(func(e *enforcer.Engine) error { return e.UpsertNetworkPolicy(np) }); err != nil {
			t.Fatal(err)
		}
	}
	c.flush()
}

func basePolicies() []*networkingv1.NetworkPolicy {
	return []*networkingv1.NetworkPolicy{
		mkPolicy("prod", "web", selecting(sel("app", "web")),
			ingress(peers(podPeer(sel("app", "cli")), nsPeer(sel("env", "dev")), ipBlock("198.19.0.0/16", "198.19.1.0/24")), tcp(80), namedPort(TCP, "http")),
			egress(peers(nsPodPeer(sel(), sel("app", "db")), ipBlock("198.18.2.0/24")), namedPort(TCP, "pg"))),
		mkPolicy("dev", "deny"),
		mkPolicy("prod", "db", selecting(sel("app", "db")), ingress(peers(podPeer(sel("app", "web"))), portRange(TCP, 5000, 6000))),
	}
}

func TestIdenticalUpsertSendsNothing(t *testing.T) {
	c := newCluster(t, "node-a")
	loadBase(t, c, basePolicies()...)
	e, f := c.engines["node-a"], c.fakes["node-a"]
	before := f.Operations()
	// Fresh copies of the same objects.
	loadBaseWorld(e)
	for _, np := range basePolicies() {
		_ = e.UpsertNetworkPolicy(np)
	}
	res, err := e.Flush(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Operations != 0 || res.Full || f.Operations() != before {
		t.Fatalf("identical upserts sent %d operations (full %v)", res.Operations, res.Full)
	}
	// A policy deleted and re-added within one flush also sends nothing.
	e.DeleteNetworkPolicy("prod", "web")
	_ = e.UpsertNetworkPolicy(basePolicies()[0])
	if res, _ := e.Flush(context.Background()); res.Operations != 0 {
		t.Fatalf("delete + re-add of a policy sent %d operations", res.Operations)
	}
}

func TestPodLabelChangeTouchesOnlyElementsAndItsChains(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"remote peer leaves a selector", mkPod("prod", "cli", podLabels("app", "other"), onNode("node-b"), podIPs("198.18.2.10", "2001:db8:2::10"))},
		{"local pod becomes a target", mkPod("prod", "cli2", podLabels("app", "web"), podIPs("198.18.1.50", "2001:db8:1::50"))},
		{"local target stops being one", mkPod("prod", "web", podLabels("app", "none"), podIPs("198.18.1.10", "2001:db8:1::10"), containerPort("http", TCP, 8080))},
		{"local target changes named port", mkPod("prod", "web", podLabels("app", "web"), podIPs("198.18.1.10", "2001:db8:1::10"), containerPort("http", TCP, 8081))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, "node-a")
			loadBase(t, c, basePolicies()...)
			e, f := c.engines["node-a"], c.fakes["node-a"]
			_ = e.UpsertPod(mkPod("prod", "cli2", podLabels("app", "cli"), podIPs("198.18.1.50", "2001:db8:1::50")))
			c.flush()
			before := e.Desired()
			n := len(f.Transactions())
			if err := e.UpsertPod(tc.pod); err != nil {
				t.Fatal(err)
			}
			res, err := e.Flush(context.Background())
			if err != nil || res.Full || res.Operations == 0 {
				t.Fatalf("flush: %+v %v", res, err)
			}
			after := e.Desired()
			own := func(name string) bool {
				for _, s := range []*nft.State{before, after} {
					if ch := s.Chains[name]; ch != nil && strings.HasPrefix(ch.Comment, tc.pod.Namespace+"/"+tc.pod.Name+" ") {
						return true
					}
				}
				return false
			}
			for _, tx := range f.Transactions()[n:] {
				for _, o := range tx.Ops {
					switch o.Kind {
					case nft.OpAddElements, nft.OpDeleteElements:
					case nft.OpAddChain, nft.OpReplaceRules, nft.OpDeleteChain, nft.OpInsertRule, nft.OpDeleteRule:
						if !own(o.Name) {
							t.Errorf("label change touched chain %s (%s)", o.Name, o.Kind)
						}
					default:
						t.Errorf("label change sent %s %s", o.Kind, o.Name)
					}
				}
			}
		})
	}
}

func TestModelOnlyEngine(t *testing.T) {
	e, err := enforcer.New(enforcer.Config{NodeName: "node-a", Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Flush(context.Background()); !errors.Is(err, enforcer.ErrNoDataplane) {
		t.Fatalf("flush without dataplane: %v", err)
	}
	loadBaseWorld(e)
	_, pods := baseWorld()
	st := e.Stats()
	if st.Pods != len(pods) || st.Namespaces != 3 || st.LocalPods != 4 {
		t.Fatalf("stats %+v", st)
	}
	if err := e.UpsertPod(mkPod("prod", "bad", podIPs("198.18.1.300", "2001:db8:1::70"))); err == nil || !strings.Contains(err.Error(), "malformed IP") {
		t.Fatalf("malformed IP: err %v", err)
	}
	if ips, ok := e.PodIPs("prod", "bad"); !ok || len(ips) != 1 || ips[0].String() != "2001:db8:1::70" {
		t.Fatalf("PodIPs of a pod with a malformed IP: %v %v", ips, ok)
	}
}

// TestConcurrentUse drives one engine from several goroutines (run with -race):
// upserts, deletes, Decide and Flush interleave, and the end state still equals
// a fresh build.
func TestConcurrentUse(t *testing.T) {
	c := newCluster(t, "node-a")
	e := c.engines["node-a"]
	w := newWorld()
	r := rngChoices{rand.New(rand.NewPCG(42, 42))}
	// One goroutine per kind of object replays that kind's calls in order, so
	// the final model equals the world whatever the interleaving.
	var calls [4][]func(engineAPI)
	for range 200 {
		o := genOp(r, w)
		g := 0
		switch {
		case o.ns != nil || o.kind == "-ns":
			g = 0
		case o.pod != nil || o.kind == "-pod":
			g = 1
		default:
			g = 2
		}
		calls[g] = append(calls[g], w.apply(o)...)
	}
	done := make(chan struct{})
	for g := range 3 {
		go func() {
			defer func() { done <- struct{}{} }()
			for _, call := range calls[g] {
				call(e)
			}
		}()
	}
	go func() {
		defer func() { done <- struct{}{} }()
		for range 50 {
			_, _ = e.Flush(context.Background())
			src, dst, proto, port := genFlow(r)
			_ = e.Decide(enforcer.Flow{Src: src, Dst: dst, Protocol: proto, Port: port})
			_ = e.Stats()
		}
	}()
	for range 4 {
		<-done
	}
	c.flush()
	checkConverged(t, c, w, -1)
}

// TestEgressNamedPortIPBlockDeltas: the named-port set that an egress ipBlock
// peer matches against holds every pod's named ports. Each change of a remote
// pod must send exactly the elements that change in that set, and nothing
// else; the flows agree with Decide after every step.
func TestEgressNamedPortIPBlockDeltas(t *testing.T) {
	c := newCluster(t, "node-a")
	loadBase(t, c, mkPolicy("dev", "cli", selecting(sel("app", "cli")), types(networkingv1.PolicyTypeEgress),
		egress(peers(ipBlock("198.18.0.0/15"), ipBlock("2001:db8::/32")), namedPort(TCP, "http"))))
	e, f := c.engines["node-a"], c.fakes["node-a"]
	const key = "named ports tcp/http of every pod (v4, v6)"
	if got := e.EveryPodNamedSets(key); len(got) != 2 {
		t.Fatalf("want a v4 and a v6 share of every pod's named ports, got %v", got)
	}
	tag, _ := e.EveryPodNamedTag(key)
	isNamedSet := func(name string) bool {
		return strings.HasPrefix(name, "named-v4-") || strings.HasPrefix(name, "named-v6-")
	}
	n1 := func(tweaks ...podTweak) *corev1.Pod {
		return mkPod("prod", "n1", append([]podTweak{podLabels("app", "n1"), onNode("node-b")}, tweaks...)...)
	}
	steps := []struct {
		name       string
		upsert     *corev1.Pod
		del        string // pod name in prod
		add, rm    []string
		flowsTo    string // destination of the probe flows
		open, shut uint16 // a port the flows expect allowed and one denied
	}{
		{name: "pod with a named port added", upsert: n1(podIPs("198.18.2.50", "2001:db8:2::50"), containerPort("http", TCP, 8081)),
			add: []string{"198.18.2.50 . tcp . 8081", "2001:db8:2::50 . tcp . 8081"}, flowsTo: "198.18.2.50", open: 8081, shut: 80},
		{name: "label change", upsert: n1(podLabels("app", "other"), podIPs("198.18.2.50", "2001:db8:2::50"), containerPort("http", TCP, 8081)),
			flowsTo: "2001:db8:2::50", open: 8081, shut: 8082},
		{name: "port number change", upsert: n1(podIPs("198.18.2.50", "2001:db8:2::50"), containerPort("http", TCP, 8082)),
			add: []string{"198.18.2.50 . tcp . 8082", "2001:db8:2::50 . tcp . 8082"},
			rm:  []string{"198.18.2.50 . tcp . 8081", "2001:db8:2::50 . tcp . 8081"}, flowsTo: "198.18.2.50", open: 8082, shut: 8081},
		{name: "address change", upsert: n1(podIPs("198.18.2.51"), containerPort("http", TCP, 8082)),
			add: []string{"198.18.2.51 . tcp . 8082"},
			rm:  []string{"198.18.2.50 . tcp . 8082", "2001:db8:2::50 . tcp . 8082"}, flowsTo: "198.18.2.51", open: 8082, shut: 8081},
		{name: "port renamed", upsert: n1(podIPs("198.18.2.51"), containerPort("web", TCP, 8082)),
			rm: []string{"198.18.2.51 . tcp . 8082"}, flowsTo: "198.18.2.51", shut: 8082},
		{name: "port named again", upsert: n1(podIPs("198.18.2.51"), containerPort("http", TCP, 8082)),
			add: []string{"198.18.2.51 . tcp . 8082"}, flowsTo: "198.18.2.51", open: 8082, shut: 8081},
		{name: "pod finished", upsert: n1(podIPs("198.18.2.51"), containerPort("http", TCP, 8082), phase(corev1.PodSucceeded)),
			rm: []string{"198.18.2.51 . tcp . 8082"}, flowsTo: "198.18.2.51", shut: 8082},
		{name: "finished pod deleted", del: "n1", flowsTo: "198.18.2.51", shut: 8082},
		{name: "pod without ports added", upsert: mkPod("prod", "n2", onNode("node-b"), podIPs("198.18.2.52")), flowsTo: "198.18.2.52", shut: 8080},
		{name: "existing pod deleted", del: "web",
			rm: []string{"198.18.1.10 . tcp . 8080", "2001:db8:1::10 . tcp . 8080"}, flowsTo: "198.18.1.10", shut: 8080},
	}
	for _, st := range steps {
		n := len(f.Transactions())
		if st.upsert != nil {
			if err := e.UpsertPod(st.upsert); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		} else {
			e.DeletePod("prod", st.del)
		}
		c.flush()
		var add, rm []string
		for _, tx := range f.Transactions()[n:] {
			for _, o := range tx.Ops {
				if (o.Kind != nft.OpAddElements && o.Kind != nft.OpDeleteElements) || !isNamedSet(o.Name) {
					t.Errorf("%s: sent %s %s, want only elements of the named-port sets", st.name, o.Kind, o.Name)
					continue
				}
				set := e.Desired().Sets[o.Name]
				for _, el := range o.Elements {
					n := len(el.Key) - 1
					if !bytes.Equal(el.Key[n], tag) {
						t.Errorf("%s: sent %s %s with tag %x, want only the tag %x of %s", st.name, o.Kind, nft.ElementID(set, el), el.Key[n], tag, key)
					}
					s := nft.ElementID(set, nft.Element{Key: el.Key[:n]})
					if o.Kind == nft.OpAddElements {
						add = append(add, s)
					} else {
						rm = append(rm, s)
					}
				}
			}
		}
		slices.Sort(add)
		slices.Sort(rm)
		slices.Sort(st.add)
		slices.Sort(st.rm)
		if !slices.Equal(add, st.add) || !slices.Equal(rm, st.rm) {
			t.Errorf("%s: added %q removed %q, want added %q removed %q", st.name, add, rm, st.add, st.rm)
		}
		src := "dev/cli"
		if netip.MustParseAddr(st.flowsTo).Is6() {
			src = "dev/cli@6"
		}
		if st.open != 0 {
			c.checkFlow(src, st.flowsTo, TCP, st.open, true)
		}
		c.checkFlow(src, st.flowsTo, TCP, st.shut, false)
	}
}

// TestEveryPodNamedSetShared: egress rules that match a named port on every
// pod (rules without peers, ipBlock peers) share one set per named-port list
// and family, because each such set mirrors the named ports of every pod in
// the cluster; the set lives while one of its rules is active.
func TestEveryPodNamedSetShared(t *testing.T) {
	c := newCluster(t, "node-a")
	toHTTP := func(name string, to []networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
		return mkPolicy("dev", name, selecting(sel("app", "cli")), types(networkingv1.PolicyTypeEgress),
			egress(to, namedPort(TCP, "http")))
	}
	e := c.engines["node-a"]
	everyPodSets := func() []string { return e.EveryPodNamedSets("named ports tcp/http of every pod") }
	loadBase(t, c, toHTTP("any", nil), toHTTP("blocks", peers(ipBlock("198.18.0.0/15"), ipBlock("2001:db8::/32"))))
	shared := everyPodSets()
	if len(shared) != 2 {
		t.Fatalf("two rules with the same named port: want one v4 and one v6 set, got %v", shared)
	}
	// A v4-only ipBlock needs only the v4 family: a set of its own.
	if err := e.UpsertNetworkPolicy(toHTTP("v4", peers(ipBlock("198.18.0.0/15")))); err != nil {
		t.Fatal(err)
	}
	c.flush()
	if got := everyPodSets(); len(got) != 3 {
		t.Fatalf("with a v4-only rule: want 3 sets, got %v", got)
	}
	c.checkFlow("dev/cli", "198.18.1.10", TCP, 8080, true)
	for _, step := range []struct {
		del  string
		want []string
	}{
		{"v4", shared},
		{"any", shared}, // still used by "blocks"
		{"blocks", nil},
	} {
		e.DeleteNetworkPolicy("dev", step.del)
		c.flush()
		if got := everyPodSets(); !slices.Equal(got, step.want) {
			t.Errorf("after deleting %s: sets %v, want %v", step.del, got, step.want)
		}
	}
}
