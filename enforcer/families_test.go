package enforcer_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// v6Objects lists what a state holds for IPv6 policy matching: peer, ipBlock
// and named-port sets of the family and the policy-chain rules that match an
// IPv6 address. The dispatch maps, the base chain and the ingress chain (the
// skeleton) are dual-stack always.
func v6Objects(s *nft.State) []string {
	var out []string
	for name := range s.Sets {
		for _, prefix := range []string{"peers-v6", "cidr-v6-", "named-v6"} {
			if strings.HasPrefix(name, prefix) {
				out = append(out, "set "+name)
			}
		}
	}
	for name, ch := range s.Chains {
		if ch.Base != nil || name == "ingress" {
			continue
		}
		for i, r := range ch.Rules {
			if slices.ContainsFunc(r.Exprs, matchesIPv6) {
				out = append(out, fmt.Sprintf("rule %s#%d", name, i))
			}
		}
	}
	slices.Sort(out)
	return out
}

func matchesIPv6(e nft.Expr) bool {
	l, ok := e.(nft.Lookup)
	return ok && (slices.Contains(l.Fields, nft.FieldIP6Saddr) || slices.Contains(l.Fields, nft.FieldIP6Daddr))
}

// A node compiles policy rules and peer sets only for the address families its
// pods have: a single-stack node loads half of a dual-stack program. The first
// local pod of the other family brings that family's rules and sets, complete
// with the peers' addresses, in the same flush as its dispatch elements; its
// departure takes them away again.
func TestRulesFollowLocalPodFamilies(t *testing.T) {
	c := newCluster(t, "node-a", "node-b")
	for _, ns := range []string{"prod"} {
		if err := c.each(func(e *enforcer.Engine) error { return e.UpsertNamespace(mkNamespace(ns)) }); err != nil {
			t.Fatal(err)
		}
	}
	pods := []struct {
		name, node string
		ips        []string
		tweaks     []podTweak
	}{
		{"web", "node-a", []string{"198.18.1.10"}, []podTweak{podLabels("app", "web"), containerPort("http", TCP, 8080)}},
		{"cli", "node-b", []string{"198.18.2.10", "2001:db8:2::10"}, []podTweak{podLabels("app", "cli")}},
	}
	for _, p := range pods {
		pod := mkPod("prod", p.name, append(p.tweaks, onNode(p.node), podIPs(p.ips...))...)
		if err := c.each(func(e *enforcer.Engine) error { return e.UpsertPod(pod) }); err != nil {
			t.Fatal(err)
		}
	}
	pol := mkPolicy("prod", "web", selecting(sel("app", "web")),
		ingress(peers(podPeer(sel("app", "cli"))), namedPort(TCP, "http")),
		ingress(peers(podPeer(sel("app", "cli"))), tcp(9000)),
		ingress(peers(ipBlock("2001:db8:9::/48"), ipBlock("198.19.0.0/16")), tcp(80)),
		egress(nil, tcp(53)))
	if err := c.each(func(e *enforcer.Engine) error { return e.UpsertNetworkPolicy(pol) }); err != nil {
		t.Fatal(err)
	}
	c.flush()
	a := c.engines["node-a"]
	v4Only := a.Desired()
	if got := v6Objects(v4Only); len(got) != 0 {
		t.Fatalf("node-a has only IPv4 pods but its program matches IPv6: %v", got)
	}
	c.checkFlow("prod/cli", "prod/web", TCP, 8080, true)
	c.checkFlow("198.19.0.5", "prod/web", TCP, 80, true)
	c.checkFlow("prod/cli", "prod/web", TCP, 80, false)
	c.checkFlow("prod/cli", "prod/web", TCP, 9000, true)

	web6 := mkPod("prod", "web6", podLabels("app", "web"), containerPort("http", TCP, 8080), onNode("node-a"),
		podIPs("198.18.1.11", "2001:db8:1::11"))
	if err := c.each(func(e *enforcer.Engine) error { return e.UpsertPod(web6) }); err != nil {
		t.Fatal(err)
	}
	c.flush()
	// The ingress rules from cli (named port) and from the IPv6 ipBlock,
	// with their peer, named-port and ipBlock sets, and the rule of cli's
	// peer chain; the rule to cli's port 9000 (it jumps to that chain) and
	// the egress rule without peers match either family already.
	got := v6Objects(a.Desired())
	kinds := map[string]int{}
	for _, o := range got {
		kinds[o[:strings.IndexAny(o, "-#")]]++
	}
	if want := map[string]int{"set peers": 1, "set cidr": 1, "set named": 1, "rule pol": 2, "rule from": 1}; !maps.Equal(kinds, want) {
		t.Fatalf("with a dual-stack local pod: IPv6 objects %v, want %v of each kind", got, want)
	}
	for _, o := range got {
		name := strings.TrimPrefix(o, "set ")
		if s := a.Desired().Sets[name]; s != nil && !strings.HasPrefix(name, "cidr-") && s.Elements.Len() != 1 {
			t.Errorf("set %s holds %d elements, want 1 (cli's address; web6's named port)", name, s.Elements.Len())
		}
	}
	c.checkFlow("prod/cli@6", "prod/web6@6", TCP, 8080, true)
	c.checkFlow("prod/cli@6", "prod/web6@6", TCP, 80, false)
	c.checkFlow("prod/cli@6", "prod/web6@6", TCP, 9000, true)
	c.checkFlow("2001:db8:9::5", "prod/web6@6", TCP, 80, true)
	c.checkFlow("2001:db8:8::5", "prod/web6@6", TCP, 80, false)
	c.checkFlow("prod/cli", "prod/web6", TCP, 8080, true)

	_ = c.each(func(e *enforcer.Engine) error { e.DeletePod("prod", "web6"); return nil })
	c.flush()
	if tx := nft.Diff(v4Only, a.Desired(), nil); !tx.Empty() {
		t.Errorf("after the dual-stack pod left, node-a's program differs from the IPv4-only one by %d operations:\n%s",
			tx.Size(), nft.Render("t", a.Desired()))
	}
}
