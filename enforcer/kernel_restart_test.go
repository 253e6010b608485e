package enforcer_test

// IP plan (one routed node namespace, every pod on node-a):
//
//	web  198.18.2.10  app=web, serves tcp 8080 (container port http), 9090
//	cli  198.18.2.20  app=cli
//	x    198.18.2.30  app=x

import (
	"context"
	"encoding/hex"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// twoBaseChains is the program of releases before the single base chain
// for the same cluster: a base chain per direction, egress at priority
// filter and ingress at filter + 1, each with its own conntrack-state
// rules, and every verdict that now goes on to the ingress chain an accept
// (which ended the egress base chain, and the ingress base chain ran next).
func twoBaseChains(t testing.TB, s *nft.State) *nft.State {
	t.Helper()
	old := s.Clone()
	fwd, in := old.Chains["forward"], old.Chains["ingress"]
	if fwd == nil || in == nil || fwd.Base == nil || in.Base != nil || len(fwd.Rules) < 3 {
		t.Fatalf("no forward base chain and ingress chain in %v", slices.Sorted(maps.Keys(old.Chains)))
	}
	toIngress := nft.Verdict{Kind: nft.VerdictGoto, Chain: "ingress"}
	for _, c := range old.Chains {
		rules := make([]nft.Rule, len(c.Rules))
		for i, r := range c.Rules {
			rules[i] = nft.Rule{Comment: r.Comment, Exprs: slices.Clone(r.Exprs)}
			if n := len(r.Exprs); n > 0 && r.Exprs[n-1] == toIngress {
				rules[i].Exprs[n-1] = nft.Verdict{Kind: nft.VerdictAccept}
			}
		}
		c.Rules = rules
	}
	delete(old.Chains, "forward")
	ctRules := fwd.Rules[:2]
	old.Chains["egress"] = &nft.Chain{Name: "egress", Comment: "egress policy of local pods", Base: fwd.Base,
		Rules: fwd.Rules[:len(fwd.Rules)-1]} // without the goto ingress
	old.Chains["ingress"] = &nft.Chain{Name: "ingress", Comment: in.Comment,
		Base:  &nft.BaseChain{Hook: nft.HookForward, Priority: nft.PriorityFilter + 1, Policy: nft.VerdictAccept},
		Rules: append(slices.Clone(ctRules), in.Rules[:len(in.Rules)-1]...)} // without the final accept
	return old
}

// newRestartNode is the node the restart tests start from: pods web, cli
// and x wired to a routed node namespace (see the IP plan), their objects
// and policies in an engine on a real kernel, not flushed yet, and the
// verdicts the policies give: cli's egress allows web:8080 and web's ingress
// admits it (by its named port http); web's ingress admits cli on 9090 too
// but cli's egress does not; x's egress allows web:8080 but web's ingress
// does not admit x (an egress allow leaves the destination's ingress to
// judge).
func newRestartNode(t *testing.T) (*nfttest.NetNS, *nft.Kernel, *enforcer.Engine, []*nfttest.Pod, []packetCase) {
	t.Helper()
	node, k, e := newKernelEngine(t)
	web := &nfttest.Pod{Name: "web", V4: netip.MustParseAddr("198.18.2.10")}
	cli := &nfttest.Pod{Name: "cli", V4: netip.MustParseAddr("198.18.2.20")}
	x := &nfttest.Pod{Name: "x", V4: netip.MustParseAddr("198.18.2.30")}
	nfttest.WirePods(t, node, false, web, cli, x)
	nfttest.Serve(t, web, []int{8080, 9090}, 0)
	if err := e.UpsertNamespace(mkNamespace("prod")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*nfttest.Pod{web, cli, x} {
		if err := e.UpsertPod(mkPod("prod", p.Name, podLabels("app", p.Name), podIPs(p.V4.String()), containerPort("http", TCP, 8080))); err != nil {
			t.Fatal(err)
		}
	}
	for _, np := range []struct{ name, app string }{{"cli", "cli"}, {"x", "x"}} {
		if err := e.UpsertNetworkPolicy(mkPolicy("prod", np.name, selecting(sel("app", np.app)),
			egress(peers(podPeer(sel("app", "web"))), tcp(8080)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.UpsertNetworkPolicy(mkPolicy("prod", "web", selecting(sel("app", "web")),
		ingress(peers(podPeer(sel("app", "cli"))), namedPort(TCP, "http"), tcp(9090)))); err != nil {
		t.Fatal(err)
	}
	cases := []packetCase{
		{cli, web.V4, 8080, true},
		{cli, web.V4, 9090, false},
		{x, web.V4, 8080, false},
	}
	return node, k, e, []*nfttest.Pod{web, cli, x}, cases
}

// TestPrivilegedRestartFromTwoBaseChains: a node still holding the program
// of two base chains (an older release) is converged by the restarted
// engine's reconcile in one transaction, which adds the new base chain
// before it deletes the old ones: no moment without a base chain, and an
// established connection keeps flowing. Before and after, real connections
// get the same verdicts (newRestartNode).
func TestPrivilegedRestartFromTwoBaseChains(t *testing.T) {
	restartFrom(t, "two base chains", func(desired *nft.State) *nft.State { return twoBaseChains(t, desired) },
		func(tx *nft.Transaction, _, _ *nft.State, listing string) {
			added, deleted := -1, -1
			for i, op := range tx.Ops {
				switch {
				case op.Kind == nft.OpAddChain && op.Name == "forward":
					added = i
				case op.Kind == nft.OpDeleteChain && op.Name == "egress":
					deleted = i
				}
			}
			if added < 0 || deleted < 0 || added > deleted {
				t.Errorf("the reconcile adds the forward chain at op %d and deletes the egress chain at op %d of one transaction; want both, the add first", added, deleted)
			}
			if strings.Contains(listing, "chain egress") || !strings.Contains(listing, "chain forward") ||
				strings.Count(listing, "hook forward") != 1 {
				t.Errorf("after the reconcile, want one base chain, forward:\n%s", listing)
			}
		})
}

// restartFrom programs the node of newRestartNode as an older release left
// it (old of the desired state), checks the verdicts and establishes a
// connection, then does what the restarted engine's first flush does (a
// full reconcile, one transaction) and hands its transaction, the desired
// and the old state and the table nft lists after it to check; then the
// table must be converged (a second reconcile and the engine's flush do
// nothing), the connection still flow and the verdicts be the same.
func restartFrom(t *testing.T, shape string, old func(*nft.State) *nft.State, check func(tx *nft.Transaction, desired, old *nft.State, listing string)) {
	t.Helper()
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	node, k, e, pods, cases := newRestartNode(t)
	ctx := context.Background()
	web, cli := pods[0], pods[1]

	desired := e.Desired()
	before := old(desired)
	if err := k.Apply(ctx, nft.Diff(nil, before, nil)); err != nil {
		t.Fatalf("program the %s: %v", shape, err)
	}
	probeAll(t, shape, cases)
	established := nfttest.MustDial(t, cli, "tcp", netip.AddrPortFrom(web.V4, 8080))
	if err := nfttest.EchoWithin(established, "before", time.Second); err != nil {
		t.Fatalf("connection through the %s: %v", shape, err)
	}

	tx, err := k.Reconcile(ctx, desired)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	check(tx, desired, before, nfttest.ListTable(t, node, "nftw-enforcer"))
	if tx, err := k.Reconcile(ctx, desired); err != nil || !tx.Empty() {
		t.Errorf("second reconcile: %v, %d operations; want none", err, tx.Size())
	}
	if err := nfttest.EchoWithin(established, "after", time.Second); err != nil {
		t.Errorf("the connection established through the %s: %v", shape, err)
	}
	probeAll(t, "after the reconcile", cases)
	if res, err := e.Flush(ctx); err != nil || res.Operations != 0 {
		t.Errorf("the engine's first flush after the reconcile: %+v, %v; want nothing to do", res, err)
	}
}

// perGroupSets is the program of releases before the shared tagged sets,
// for the same cluster: every tag of a set whose key ends in a tag
// (peers-v4, named-v4, ...) is a set of its own, named after the shared set
// and the tag, that holds the tag's elements without it, and every tagged
// lookup looks that set up instead.
func perGroupSets(t testing.TB, s *nft.State) *nft.State {
	t.Helper()
	old := s.Clone()
	own := func(l nft.Lookup) *nft.Set {
		shared := s.Sets[l.Set]
		name := l.Set + "-" + hex.EncodeToString(l.Tag)
		if old.Sets[name] == nil {
			n := len(shared.Key) - 1
			old.Sets[name] = &nft.Set{Name: name, Key: slices.Clone(shared.Key[:n]), Comment: shared.Comment}
		}
		return old.Sets[name]
	}
	for name, set := range s.Sets {
		n := len(set.Key) - 1
		if n < 0 || set.Key[n] != nft.TypeTag {
			continue
		}
		delete(old.Sets, name)
		for e := range set.Elements.Values() {
			g := own(nft.Lookup{Set: name, Tag: e.Key[n]})
			ge := nft.Element{Key: slices.Clone(e.Key[:n])}
			g.PutElements(ge)
		}
	}
	tagged := 0
	for _, c := range old.Chains {
		for i, r := range c.Rules {
			exprs := slices.Clone(r.Exprs)
			for j, x := range exprs {
				if l, ok := x.(nft.Lookup); ok && l.Tag != nil {
					l.Set, l.Tag = own(l).Name, nil
					exprs[j] = l
					tagged++
				}
			}
			c.Rules[i] = nft.Rule{Comment: r.Comment, Exprs: exprs}
		}
	}
	if tagged == 0 {
		t.Fatalf("no tagged lookup in the program; sets %v", slices.Sorted(maps.Keys(s.Sets)))
	}
	return old
}

// TestPrivilegedRestartFromPerGroupSets: a node still holding the program
// of a set per peer group and per named-port set (an older release) is
// converged by the restarted engine's reconcile in one transaction, which
// puts the shared tagged sets in and takes every per-group set out; real
// connections get the same verdicts before and after (newRestartNode), and
// an established one keeps flowing.
func TestPrivilegedRestartFromPerGroupSets(t *testing.T) {
	restartFrom(t, "per-group sets", func(desired *nft.State) *nft.State { return perGroupSets(t, desired) },
		func(tx *nft.Transaction, desired, old *nft.State, listing string) {
			gone, added := map[string]bool{}, map[string]bool{}
			for _, op := range tx.Ops {
				switch op.Kind {
				case nft.OpDeleteSet:
					gone[op.Name] = true
				case nft.OpAddSet:
					added[op.Name] = true
				}
			}
			for name := range old.Sets {
				if desired.Sets[name] == nil && (!gone[name] || strings.Contains(listing, "set "+name+" ")) {
					t.Errorf("the reconcile leaves the per-group set %s:\n%s", name, listing)
				}
			}
			for name, s := range desired.Sets {
				if n := len(s.Key); s.Key[n-1] == nft.TypeTag && !added[name] {
					t.Errorf("the reconcile does not add the shared set %s (ops %v)", name, tx.Ops)
				}
			}
			if len(added) == 0 {
				t.Errorf("the reconcile adds no shared set (ops %v)", tx.Ops)
			}
		})
}
