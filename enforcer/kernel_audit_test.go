package enforcer_test

// Real packets through the deny log, counters and audit mode. Topology (one
// routed node namespace, every pod on node-a):
//
//	web  198.18.1.10  app=web, serves tcp 8080
//	cli  198.18.1.20  app=cli
//	x    198.18.1.30  app=x

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// TestPrivilegedPacketsDenyLogAndAudit shows with real TCP connections, in
// a kernel programmed with the deny log and counters, that a denied probe
// goes through the deny chain and moves the pod's default-deny counter and
// the policy's counters as CounterInfo says (entered, not allowed), while
// an allowed one moves only "entered"; and that once the policy is
// annotated for audit the same probe passes, with no default deny left,
// and the annotation's removal enforces it again at once.
func TestPrivilegedPacketsDenyLogAndAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("packet test skipped in -short mode")
	}
	ns, k, e := newKernelEngineWith(t, enforcer.Config{LogDenied: true, LogAllowed: true, LogGroup: 100, Counters: true})
	web := &nfttest.Pod{Name: "web", V4: netip.MustParseAddr("198.18.1.10")}
	cli := &nfttest.Pod{Name: "cli", V4: netip.MustParseAddr("198.18.1.20")}
	x := &nfttest.Pod{Name: "x", V4: netip.MustParseAddr("198.18.1.30")}
	nfttest.WirePods(t, ns, false, web, cli, x)
	nfttest.Serve(t, web, []int{8080}, 0)
	if err := e.UpsertNamespace(mkNamespace("prod")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*nfttest.Pod{web, cli, x} {
		if err := e.UpsertPod(mkPod("prod", p.Name, podLabels("app", p.Name), podIPs(p.V4.String()))); err != nil {
			t.Fatal(err)
		}
	}
	policy := mkPolicy("prod", "web", selecting(sel("app", "web")), ingress(peers(podPeer(sel("app", "cli"))), tcp(8080)))
	if err := e.UpsertNetworkPolicy(policy); err != nil {
		t.Fatal(err)
	}
	enforcer.FlushToKernel(t, "enforced", e, k)
	roles := map[enforcer.CounterRole]string{}
	for _, ci := range e.CounterInfo() {
		roles[ci.Role] = ci.Name
	}
	if len(roles) != 3 {
		t.Fatalf("CounterInfo: %+v, want a policy's entered and not-allowed counters and a default deny", e.CounterInfo())
	}
	ctx := context.Background()
	counts := func() map[enforcer.CounterRole]uint64 {
		t.Helper()
		got, err := k.Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[enforcer.CounterRole]uint64{}
		for role, name := range roles {
			out[role] = got[name].Packets
		}
		return out
	}
	before := counts()
	probeAll(t, "enforced", []packetCase{{cli, web.V4, 8080, true}})
	mid := counts()
	probeAll(t, "enforced", []packetCase{{x, web.V4, 8080, false}})
	after := counts()
	// Only a connection's first packet reaches the policy chains; a denied
	// probe may retransmit its SYN (each retransmission is new again).
	if mid[enforcer.CounterEntered] != before[enforcer.CounterEntered]+1 || mid[enforcer.CounterNotAllowed] != before[enforcer.CounterNotAllowed] ||
		mid[enforcer.CounterDefaultDeny] != before[enforcer.CounterDefaultDeny] {
		t.Errorf("allowed connection: counters %v -> %v, want entered +1 only", before, mid)
	}
	denied := after[enforcer.CounterDefaultDeny] - mid[enforcer.CounterDefaultDeny]
	if denied == 0 || after[enforcer.CounterNotAllowed]-mid[enforcer.CounterNotAllowed] != denied ||
		after[enforcer.CounterEntered]-mid[enforcer.CounterEntered] != denied {
		t.Errorf("denied connection: counters %v -> %v, want default deny, entered and not allowed moving together", mid, after)
	}
	if ch := e.Desired().Chains["pod-in-prod/web"]; ch == nil || len(ch.Rules) == 0 ||
		!slices.Contains(ch.Rules[len(ch.Rules)-1].Exprs, nft.Expr(nft.Verdict{Kind: nft.VerdictGoto, Chain: "deny-in-np"})) {
		t.Errorf("pod chain does not end at the deny chain: %+v", ch)
	}

	policy.Annotations = map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}
	if err := e.UpsertNetworkPolicy(policy); err != nil {
		t.Fatal(err)
	}
	enforcer.FlushToKernel(t, "audited", e, k)
	probeAll(t, "audited", []packetCase{{x, web.V4, 8080, true}, {cli, web.V4, 8080, true}})

	policy.Annotations = nil
	if err := e.UpsertNetworkPolicy(policy); err != nil {
		t.Fatal(err)
	}
	enforcer.FlushToKernel(t, "enforced again", e, k)
	probeAll(t, "enforced again", []packetCase{{x, web.V4, 8080, false}, {cli, web.V4, 8080, true}})
}

// TestPrivilegedKernelAcceptsShapes loads the program of every shape of
// TestGoldenProgramShapes into a kernel by netlink (it reads back as
// desired) and as an nft script (nft -f takes it and lists it as the
// program: the names of the counters and the log statements are nft's).
func TestPrivilegedKernelAcceptsShapes(t *testing.T) {
	for _, tc := range shapeCases() {
		t.Run(tc.name, func(t *testing.T) {
			ns, k, e := newKernelEngineWith(t, tc.cfg)
			loadBaseWorld(e)
			for _, np := range tc.pols {
				_ = e.UpsertNetworkPolicy(np)
			}
			enforcer.FlushToKernel(t, tc.name, e, k)
			checkProgramAsScript(t, ns, e)
		})
	}
}
