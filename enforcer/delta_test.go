package enforcer_test

// Exact deltas: for each kind of change, the one transaction a Flush sends,
// as nft text, against a golden file in testdata/delta. When object names or
// comments change on purpose, review the new text and regenerate every
// golden with one command:
//
//	go test ./enforcer -run TestDeltaGolden -update
//
// IP plan (the node is n1; see helpers_test.go for the ranges):
//
//	shop  (env=prod)   web    app=web  n1  198.18.1.10  2001:db8:1::10  port http tcp 8080
//	                   db     app=db   n1  198.18.1.11  2001:db8:1::11
//	                   web-2  app=web  n2  198.18.2.10  2001:db8:2::10
//	tools (env=dev)    probe  app=probe n2 198.18.2.20  2001:db8:2::20
//	                   debug  app=debug n1 198.18.1.20
//
// Policies: shop/db-from-web (db accepts web on tcp 5432), shop/web-from-dev
// (web accepts pods of namespaces env=dev on its port http), tools/probe-out
// (probe may reach 198.19.0.0/16 except 198.19.1.0/24 only).
//
// With first-packet isolation, n1's pod CIDRs are 198.18.1.0/24 and
// 2001:db8:1::/64 (nodeAPodCIDRs).

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// deltaWorld returns an engine for node n1 over a Fake, with the world of the
// IP plan flushed to it (first-packet isolation on with podCIDRs).
func deltaWorld(t *testing.T, podCIDRs []netip.Prefix) (*enforcer.Engine, *nft.Fake) {
	t.Helper()
	f := nft.NewFake(nft.DefaultTable)
	e, err := enforcer.New(enforcer.Config{NodeName: "n1", Dataplane: f, Logger: quietLogger, PodCIDRs: podCIDRs})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range deltaNamespaces("dev") {
		if err := e.UpsertNamespace(ns); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range deltaPods() {
		if err := e.UpsertPod(p); err != nil {
			t.Fatal(err)
		}
	}
	for _, np := range deltaPolicies() {
		if err := e.UpsertNetworkPolicy(np); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, f
}

// deltaNamespaces are shop and tools, tools labelled env=toolsEnv.
func deltaNamespaces(toolsEnv string) []*corev1.Namespace {
	return []*corev1.Namespace{mkNamespace("shop", "env", "prod"), mkNamespace("tools", "env", toolsEnv)}
}

func deltaPods() []*corev1.Pod {
	return []*corev1.Pod{
		mkPod("shop", "web", podLabels("app", "web"), onNode("n1"), podIPs("198.18.1.10", "2001:db8:1::10"), containerPort("http", TCP, 8080)),
		mkPod("shop", "db", podLabels("app", "db"), onNode("n1"), podIPs("198.18.1.11", "2001:db8:1::11")),
		mkPod("shop", "web-2", podLabels("app", "web"), onNode("n2"), podIPs("198.18.2.10", "2001:db8:2::10")),
		mkPod("tools", "probe", podLabels("app", "probe"), onNode("n2"), podIPs("198.18.2.20", "2001:db8:2::20")),
		mkPod("tools", "debug", podLabels("app", "debug"), onNode("n1"), podIPs("198.18.1.20")),
	}
}

func deltaPolicies() []*networkingv1.NetworkPolicy {
	return []*networkingv1.NetworkPolicy{
		mkPolicy("shop", "db-from-web", selecting(sel("app", "db")), ingress(peers(podPeer(sel("app", "web"))), tcp(5432))),
		mkPolicy("shop", "web-from-dev", selecting(sel("app", "web")), ingress(peers(nsPeer(sel("env", "dev"))), namedPort(TCP, "http"))),
		mkPolicy("tools", "probe-out", selecting(sel("app", "probe")), types(networkingv1.PolicyTypeEgress), egress(peers(ipBlock("198.19.0.0/16", "198.19.1.0/24")))),
	}
}

// extraDBPolicy is a policy selecting db (web may reach its port 6000+i).
func extraDBPolicy(i int) *networkingv1.NetworkPolicy {
	return mkPolicy("shop", fmt.Sprintf("db-extra-%d", i), selecting(sel("app", "db")), ingress(peers(podPeer(sel("app", "web"))), tcp(int32(6000+i))))
}

// selectDB makes n more policies select db.
func selectDB(e *enforcer.Engine, n int) error {
	for i := range n {
		if err := e.UpsertNetworkPolicy(extraDBPolicy(i)); err != nil {
			return err
		}
	}
	return nil
}

// TestDeltaBusyPodPolicyConstant: a policy selecting a pod that many
// policies select, created or deleted, costs the same few operations
// whatever their number (one jump of the pod's chain, plus the policy's own
// chain), and the record stays exact.
func TestDeltaBusyPodPolicyConstant(t *testing.T) {
	sizes := map[string][]int{}
	for _, n := range []int{10, 100, 400} {
		e, f := deltaWorld(t, nil)
		if err := selectDB(e, n); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, step := range []struct {
			name   string
			change func()
		}{
			{"add", func() { _ = e.UpsertNetworkPolicy(extraDBPolicy(n / 2 * 10)) }},
			{"delete", func() { e.DeleteNetworkPolicy("shop", fmt.Sprintf("db-extra-%d", n/2)) }},
		} {
			f.ResetHistory()
			step.change()
			if res, err := e.Flush(context.Background()); err != nil || res.Full {
				t.Fatalf("%d policies, %s: flush %+v %v, want a delta", n, step.name, res, err)
			}
			sent := f.Transactions()
			if len(sent) != 1 {
				t.Fatalf("%d policies, %s: %d transactions, want one", n, step.name, len(sent))
			}
			for _, op := range sent[0].Ops {
				if op.Kind == nft.OpReplaceRules && op.Name == "pod-in-shop/db" {
					t.Fatalf("%d policies, %s: db's chain rewritten whole:\n%s", n, step.name, sent[0])
				}
			}
			sizes[step.name] = append(sizes[step.name], sent[0].Size())
			checkProgrammed(t, f, e)
		}
	}
	for name, s := range sizes {
		if s[0] > 6 || slices.Max(s) != slices.Min(s) {
			t.Errorf("policy %s: operations at 10, 100, 400 policies on the pod: %v, want the same few", name, s)
		}
	}
}

// TestDeltaGolden makes one change to the flushed world, flushes, and compares
// the one transaction sent with testdata/delta/<golden or name>.golden. The
// cases with podCIDRs run with first-packet isolation: a pod change sends
// the elements of the known local addresses whose presence changes (a label
// change none: the same golden as without), and SetPodCIDRs the elements
// that differ, inserting or deleting the base chains' rules of a family
// whose isolation turns on or off. The busy-pod cases first select db by
// eight more policies: a policy that selects it too, created or deleted,
// inserts or deletes one jump of db's chain, not the chain.
func TestDeltaGolden(t *testing.T) {
	webToDB := func(e *enforcer.Engine) error {
		// web (local) becomes a db: isolated by db-from-web instead of
		// web-from-dev, and a peer of db-from-web no more.
		return e.UpsertPod(mkPod("shop", "web", podLabels("app", "db"), onNode("n1"), podIPs("198.18.1.10", "2001:db8:1::10"), containerPort("http", TCP, 8080)))
	}
	addWeb3 := func(e *enforcer.Engine) error {
		return e.UpsertPod(mkPod("shop", "web-3", podLabels("app", "web"), onNode("n1"), podIPs("198.18.1.12", "2001:db8:1::12"), containerPort("http", TCP, 8081)))
	}
	setPodCIDRs := func(cidrs ...string) func(e *enforcer.Engine) error {
		return func(e *enforcer.Engine) error {
			var ps []netip.Prefix
			for _, c := range cidrs {
				ps = append(ps, netip.MustParsePrefix(c))
			}
			return e.SetPodCIDRs(ps)
		}
	}
	dbPolicy := extraDBPolicy
	busyDB := func(e *enforcer.Engine) error { return selectDB(e, 8) }
	for _, tc := range []struct {
		name     string
		before   func(e *enforcer.Engine) error // flushed before the change
		change   func(e *enforcer.Engine) error
		podCIDRs []netip.Prefix
		golden   string // "": name
	}{
		{name: "busy-pod-policy-add", before: busyDB, change: func(e *enforcer.Engine) error { return e.UpsertNetworkPolicy(dbPolicy(35)) }},
		{name: "busy-pod-policy-delete", before: busyDB, change: func(e *enforcer.Engine) error {
			e.DeleteNetworkPolicy("shop", "db-extra-3")
			return nil
		}},
		{name: "pod-label-change", change: webToDB},
		{name: "pod-add", change: addWeb3},
		{name: "policy-add", change: func(e *enforcer.Engine) error {
			return e.UpsertNetworkPolicy(mkPolicy("shop", "web-to-db", selecting(sel("app", "web")), types(networkingv1.PolicyTypeEgress),
				egress(peers(podPeer(sel("app", "db"))), tcp(5432))))
		}},
		{name: "namespace-label-change", change: func(e *enforcer.Engine) error {
			// tools is no longer env=dev: its pods lose web's port http.
			return e.UpsertNamespace(deltaNamespaces("staging")[1])
		}},
		{name: "first-packet-pod-label-change", change: webToDB, podCIDRs: nodeAPodCIDRs, golden: "pod-label-change"},
		{name: "first-packet-pod-add", change: addWeb3, podCIDRs: nodeAPodCIDRs},
		{name: "first-packet-pod-delete", change: func(e *enforcer.Engine) error { e.DeletePod("tools", "debug"); return nil }, podCIDRs: nodeAPodCIDRs},
		{name: "first-packet-on", change: setPodCIDRs("198.18.1.0/24", "2001:db8:1::/64")},
		{name: "first-packet-cidrs-change", change: setPodCIDRs("198.18.1.0/25", "198.18.3.0/24", "2001:db8:1::/64"), podCIDRs: nodeAPodCIDRs},
		{name: "first-packet-v6-off", change: setPodCIDRs("198.18.1.0/24"), podCIDRs: nodeAPodCIDRs},
		{name: "first-packet-off", change: setPodCIDRs(), podCIDRs: nodeAPodCIDRs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := deltaWorld(t, tc.podCIDRs)
			if tc.before != nil {
				if err := tc.before(e); err != nil {
					t.Fatal(err)
				}
				if _, err := e.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			f.ResetHistory()
			if err := tc.change(e); err != nil {
				t.Fatal(err)
			}
			res, err := e.Flush(context.Background())
			if err != nil || res.Full {
				t.Fatalf("flush: %+v %v, want a delta", res, err)
			}
			sent := f.Transactions()
			if len(sent) != 1 {
				t.Fatalf("the flush sent %d transactions, want one", len(sent))
			}
			checkGolden(t, filepath.Join("testdata", "delta", cmp.Or(tc.golden, tc.name)+".golden"), sent[0].String())
			checkProgrammed(t, f, e)
		})
	}
}
