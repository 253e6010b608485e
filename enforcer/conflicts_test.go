package enforcer_test

// IP plan: see helpers_test.go. The world of these tests:
//
//	namespace prod {env=prod}: web  node-a 198.18.1.10 app=web  port http/TCP 8080
//	                           cli  node-b 198.18.2.10 app=cli
//	namespace dev {env=dev}:   dcli node-a 198.18.1.20 app=cli
//	                           sink node-b 198.18.2.30 (no policy selects it)
//	namespace other:           (no labels)
//	policy prod/web: pods app=web accept from pods app=cli on TCP 80 and the
//	                 named port http, and from namespaces env=dev on TCP 81.
//
// Addresses that several pods claim: 198.18.2.5 (node-b's range) and
// 198.18.1.50 (node-a's), plus web's own 198.18.1.10; outside: 198.19.0.5.

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/enforcer"
)

func reuseWorld() []op {
	ops := []op{
		{kind: "ns", ns: mkNamespace("prod", "env", "prod")},
		{kind: "ns", ns: mkNamespace("dev", "env", "dev")},
		{kind: "ns", ns: mkNamespace("other")},
		{kind: "pol", pol: mkPolicy("prod", "web", selecting(sel("app", "web")),
			ingress(peers(podPeer(sel("app", "cli"))), tcp(80), namedPort(TCP, "http")),
			ingress(peers(nsPeer(sel("env", "dev"))), tcp(81)))},
	}
	for _, p := range []*corev1.Pod{
		mkPod("prod", "web", podLabels("app", "web"), podIPs("198.18.1.10"), containerPort("http", TCP, 8080)),
		mkPod("prod", "cli", podLabels("app", "cli"), onNode("node-b"), podIPs("198.18.2.10")),
		mkPod("dev", "dcli", podLabels("app", "cli"), podIPs("198.18.1.20")),
		mkPod("dev", "sink", onNode("node-b"), podIPs("198.18.2.30")),
	} {
		ops = append(ops, up(p))
	}
	return ops
}

func up(p *corev1.Pod) op                      { return op{kind: "pod", pod: p} }
func gone(name string) op                      { return op{kind: "-pod", name: [2]string{"", name}} }
func putPol(np *networkingv1.NetworkPolicy) op { return op{kind: "pol", pol: np} }

// reuseStep is one change and what must hold after it.
type reuseStep struct {
	ops   []op
	flows []flow
	// reason is a substring of Decide's reason for the first flow.
	reason string
	// drop: node-a's program holds the drop chain of addresses claimed by
	// pods with different policies.
	drop bool
}

// TestIPReuse: while two live pods claim one address, a peer set holds it
// only if both are members, a named port never matches it, and a direction
// is judged for both at once: by their policies if the same select both,
// denied otherwise. Each step is checked with Decide on every node, with the
// nft.Fake traces, and against a fresh build.
func TestIPReuse(t *testing.T) {
	const shared, sharedA = "198.18.2.5", "198.18.1.50"
	cliOld := mkPod("prod", "cli-old", podLabels("app", "cli"), onNode("node-b"), podIPs(shared))
	intruder := mkPod("prod", "intruder", podLabels("app", "other"), onNode("node-b"), podIPs(shared))
	web2 := func(tweaks ...podTweak) *corev1.Pod {
		return mkPod("prod", "web2", append([]podTweak{podLabels("app", "web"), podIPs("198.18.1.10"), containerPort("http", TCP, 8080)}, tweaks...)...)
	}
	// dweb is a pod naming port http at 198.18.2.40, which no policy isolates.
	dweb := func(name, ns, node string) *corev1.Pod {
		return mkPod(ns, name, podLabels("app", "web"), onNode(node), podIPs("198.18.2.40"), containerPort("http", TCP, 8080))
	}
	yEgress := func(apps ...string) op {
		return putPol(mkPolicy("prod", "y-egress", selecting(expr("app", metav1.LabelSelectorOpIn, apps...)),
			types(networkingv1.PolicyTypeEgress), egress(peers(ipBlock("198.19.0.0/16")))))
	}
	cases := []struct {
		name  string
		steps []reuseStep
	}{
		{name: "a pod the policy denies takes an allowed pod's address", steps: []reuseStep{
			{ops: []op{up(cliOld)}, flows: []flow{allow(shared, "prod/web", TCP, 80)}},
			{ops: []op{up(intruder)}, flows: []flow{deny(shared, "prod/web", TCP, 80), allow(shared, "dev/sink", TCP, 80)},
				reason: "ingress of prod/web is isolated by prod/web and no rule allows it (the other end is claimed by prod/cli-old, prod/intruder"},
			{ops: []op{gone("cli-old")}, flows: []flow{deny(shared, "prod/web", TCP, 80)}},
		}},
		// TestIntegrationChurn's replacement: the new pod exists first, pending
		// without an address; the allowed holder is deleted; then the new
		// pod's status gives it the address. Whether the engine gets the
		// deletion and the status in two flushes or in one (in either order:
		// a batch applies pods by name), the address is denied from then on.
		{name: "a pending pod the policy denies takes a deleted allowed pod's address", steps: []reuseStep{
			{ops: []op{up(cliOld), up(mkPod("prod", "intruder", podLabels("app", "other"), onNode("node-b")))},
				flows: []flow{allow(shared, "prod/web", TCP, 80)}},
			{ops: []op{gone("cli-old")}, flows: []flow{deny(shared, "prod/web", TCP, 80)}},
			{ops: []op{up(intruder)}, flows: []flow{deny(shared, "prod/web", TCP, 80)}},
		}},
		{name: "the deletion and the new pod's address in one flush, the new pod first", steps: []reuseStep{
			{ops: []op{up(cliOld), up(mkPod("prod", "intruder", podLabels("app", "other"), onNode("node-b")))},
				flows: []flow{allow(shared, "prod/web", TCP, 80)}},
			{ops: []op{up(intruder), gone("cli-old")}, flows: []flow{deny(shared, "prod/web", TCP, 80)}},
		}},
		{name: "the same labels keep the verdict, on another node too", steps: []reuseStep{
			{ops: []op{up(cliOld)}, flows: []flow{allow(shared, "prod/web", TCP, 80)}},
			{ops: []op{up(mkPod("prod", "cli-new", podLabels("app", "cli"), onNode("node-a"), podIPs(shared)))},
				flows:  []flow{allow(shared, "prod/web", TCP, 80), deny(shared, "prod/web", TCP, 22)},
				reason: "egress of the address claimed by prod/cli-new, prod/cli-old (selected by the same policies) is not isolated"},
			{ops: []op{gone("cli-old")}, flows: []flow{allow(shared, "prod/web", TCP, 80)}},
		}},
		{name: "the other claimant leaves or changes: back to normal", steps: []reuseStep{
			{ops: []op{up(cliOld), up(intruder)}, flows: []flow{deny(shared, "prod/web", TCP, 80)}},
			{ops: []op{gone("intruder")}, flows: []flow{allow(shared, "prod/web", TCP, 80)}},
			{ops: []op{up(intruder)}, flows: []flow{deny(shared, "prod/web", TCP, 80)}},
			{ops: []op{up(mkPod("prod", "intruder", podLabels("app", "cli"), onNode("node-b"), podIPs(shared)))},
				flows: []flow{allow(shared, "prod/web", TCP, 80)}},
			{ops: []op{up(mkPod("prod", "intruder", podLabels("app", "other"), onNode("node-b"), podIPs("198.18.2.6")))},
				flows: []flow{allow(shared, "prod/web", TCP, 80), deny("198.18.2.6", "prod/web", TCP, 80)}},
			{ops: []op{up(mkPod("prod", "intruder", podLabels("app", "other"), onNode("node-b"), podIPs(shared), phase(corev1.PodFailed)))},
				flows: []flow{allow(shared, "prod/web", TCP, 80)}},
		}},
		{name: "a policy on the remote claimant only drops the local one's connections", steps: []reuseStep{
			{ops: []op{
				up(mkPod("prod", "x", podLabels("app", "x"), podIPs(sharedA))),
				up(mkPod("prod", "y", podLabels("app", "y"), onNode("node-b"), podIPs(sharedA))),
			}, flows: []flow{allow(sharedA, "198.19.0.5", TCP, 443), allow(sharedA, "dev/sink", TCP, 80)}},
			{ops: []op{yEgress("y")}, flows: []flow{deny(sharedA, "198.19.0.5", TCP, 443), deny(sharedA, "dev/sink", TCP, 80)},
				reason: "egress of the address claimed by prod/x, prod/y is denied: they are selected by different policies (prod/y-egress)",
				drop:   true},
			{ops: []op{yEgress("x", "y")}, flows: []flow{allow(sharedA, "198.19.0.5", TCP, 443), deny(sharedA, "dev/sink", TCP, 80)}},
			{ops: []op{gone("y")}, flows: []flow{allow(sharedA, "198.19.0.5", TCP, 443), deny(sharedA, "dev/sink", TCP, 80)}},
			{ops: []op{up(mkPod("prod", "y", podLabels("app", "z"), onNode("node-a"), podIPs(sharedA)))},
				flows: []flow{deny(sharedA, "198.19.0.5", TCP, 443)}, drop: true},
			{ops: []op{{kind: "-pol", name: [2]string{"", "y-egress"}}}, flows: []flow{allow(sharedA, "dev/sink", TCP, 80)}},
		}},
		{name: "a destination two local pods claim", steps: []reuseStep{
			{ops: []op{up(web2())}, flows: []flow{
				allow("prod/cli", "198.18.1.10", TCP, 80),
				deny("prod/cli", "198.18.1.10", TCP, 8080), // a named port never matches a shared address
				deny("dev/dcli", "198.18.1.10", TCP, 80),
			}, reason: "ingress of the address claimed by prod/web, prod/web2 (selected by the same policies) is allowed by prod/web"},
			{ops: []op{up(web2(onNode("node-b")))}, flows: []flow{allow("prod/cli", "198.18.1.10", TCP, 80), deny("prod/cli", "198.18.1.10", TCP, 8080)}},
			{ops: []op{up(web2(podLabels("app", "other")))}, flows: []flow{deny("prod/cli", "198.18.1.10", TCP, 80)}, drop: true},
			{ops: []op{gone("web2")}, flows: []flow{allow("prod/cli", "198.18.1.10", TCP, 8080), deny("prod/cli", "198.18.1.10", TCP, 22)}},
		}},
		{name: "no claimant isolated", steps: []reuseStep{
			{ops: []op{up(mkPod("dev", "sink2", podIPs("198.18.2.30")))}, flows: []flow{allow("prod/web", "198.18.2.30", UDP, 53)}},
		}},
		{name: "an egress named port to an address two pods claim", steps: []reuseStep{
			{ops: []op{
				putPol(mkPolicy("dev", "eg", selecting(sel("app", "cli")), types(networkingv1.PolicyTypeEgress),
					egress(peers(ipBlock("198.18.0.0/15")), namedPort(TCP, "http")),
					egress(peers(podPeer(sel("app", "web"))), namedPort(TCP, "http")))),
				up(dweb("dweb", "dev", "node-b")),
			}, flows: []flow{allow("dev/dcli", "198.18.2.40", TCP, 8080), deny("dev/dcli", "198.18.2.30", TCP, 8080)}},
			{ops: []op{up(dweb("dweb2", "dev", "node-c"))}, flows: []flow{deny("dev/dcli", "198.18.2.40", TCP, 8080)}},
			{ops: []op{up(dweb("oweb", "other", "node-a"))}, flows: []flow{deny("dev/dcli", "198.18.2.40", TCP, 8080)}},
			{ops: []op{gone("dweb2"), gone("oweb")}, flows: []flow{allow("dev/dcli", "198.18.2.40", TCP, 8080)}},
		}},
		{name: "a namespace label change of a claimant's namespace", steps: []reuseStep{
			{ops: []op{
				up(mkPod("dev", "d1", onNode("node-b"), podIPs(shared))),
				up(mkPod("other", "o1", onNode("node-c"), podIPs(shared))),
			}, flows: []flow{deny(shared, "prod/web", TCP, 81)}},
			{ops: []op{{kind: "ns", ns: mkNamespace("other", "env", "dev")}}, flows: []flow{allow(shared, "prod/web", TCP, 81)}},
			{ops: []op{{kind: "ns", ns: mkNamespace("other")}}, flows: []flow{deny(shared, "prod/web", TCP, 81)}},
			{ops: []op{gone("o1")}, flows: []flow{allow(shared, "prod/web", TCP, 81)}},
		}},
		{name: "finished and hostNetwork pods claim no address", steps: []reuseStep{
			{ops: []op{
				up(cliOld),
				up(mkPod("prod", "done", podLabels("app", "other"), onNode("node-b"), podIPs(shared), phase(corev1.PodSucceeded))),
				up(mkPod("prod", "host", podLabels("app", "other"), onNode("node-b"), podIPs(shared), hostNet())),
			}, flows: []flow{allow(shared, "prod/web", TCP, 80)}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, genNodes...)
			w := newWorld()
			apply := func(ops []op) {
				for _, o := range ops {
					for _, call := range w.apply(o) {
						_ = c.each(func(e *enforcer.Engine) error { call(e); return nil })
					}
				}
				c.flush()
			}
			apply(reuseWorld())
			for i, st := range tc.steps {
				apply(st.ops)
				checkConverged(t, c, w, i)
				for _, f := range st.flows {
					c.checkFlow(f.src, f.dst, f.proto, f.port, f.want)
				}
				if st.reason != "" {
					f := st.flows[0]
					d := c.engines["node-a"].Decide(enforcer.Flow{Src: c.endpoint(f.src), Dst: c.endpoint(f.dst), Protocol: f.proto, Port: f.port})
					if !strings.Contains(d.Reason, st.reason) {
						t.Errorf("step %d: reason %q, want it to contain %q", i, d.Reason, st.reason)
					}
				}
				if has := c.engines["node-a"].Desired().Chains["claimed-drop"] != nil; has != st.drop {
					t.Errorf("step %d: node-a has the drop chain: %v, want %v", i, has, st.drop)
				}
			}
		})
	}
}
