package conformance

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The connectivity cases of k8s.io/kubernetes v1.37.2
// test/e2e/network/netpol/network_policy.go, rewritten as data. Each case
// keeps upstream's pod topology, policy names, step order and expectation
// calls; the comment above it quotes the ginkgo It(...) text and its context.
// Upstream probes each pod through its Service IP; without kube-proxy we probe
// the pod's primary IP, which is what the policy sees after DNAT anyway.

const (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP
)

var (
	all     = metav1.LabelSelector{} // podSelector: {} (GenNetworkPolicyWithNameAndPodSelector)
	in      = metav1.LabelSelectorOpIn
	notIn   = metav1.LabelSelectorOpNotIn
	pTCP    = Proto(tcp)
	pUDP    = Proto(udp)
	pSCTP   = Proto(sctp)
	nsLabel = NamespaceLabelKey
)

func probe(port int, proto corev1.Protocol, r *Reachability) Probe {
	return Probe{Port: port, Protocol: proto, Reach: r}
}

func steps(s ...Step) []Step { return s }

func do(a ...Action) []Action { return a }

func probes(p ...Probe) []Probe { return p }

// UpstreamCases returns the ported cases, main suite first, then the UDP and
// SCTP suites.
func UpstreamCases() []Case {
	cs := append(mainCases(), protocolSuite("UDP", udp)...)
	return append(cs, protocolSuite("SCTP", sctp)...)
}

// mainCases: Describe "Netpol", Context "NetworkPolicy between server and client".
func mainCases() []Case {
	return []Case{
		// It("should support a 'default-deny-ingress' policy")
		{Name: "should support a 'default-deny-ingress' policy", Pods: []string{"x/a", "x/b", "y/a", "y/b"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("deny-ingress", all, Ingress())
				r := e.Reach()
				r.ExpectPeer(Peer{}, Peer{Namespace: e.X}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should support a 'default-deny-all' policy")
		{Name: "should support a 'default-deny-all' policy", Pods: []string{"x/a", "x/b", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("deny-all", all, Ingress(), Egress())
				r := e.Reach()
				r.ExpectPeer(Peer{}, Peer{Namespace: e.X}, false)
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy to allow traffic from pods within server namespace based on PodSelector")
		{Name: "should enforce policy to allow traffic from pods within server namespace based on PodSelector", Pods: []string{"x/a", "x/b", "x/c", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("x-a-allows-x-b", Labels("pod", "a"), Ingress(In(Peers(PodPeer(Sel("pod", "b"))))))
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), false)
				r.Expect(e.Pod("x", "b"), e.Pod("x", "a"), true)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy to allow ingress traffic for a target")
		{Name: "should enforce policy to allow ingress traffic for a target", Pods: []string{"x/a", "x/b", "y/a"},
			Steps: func(e *Env) []Step {
				deny := NewPolicy("deny-all", all, Ingress())
				allow := NewPolicy("allow-all-to-a", Labels("pod", "a"), Ingress(In(Peers(NsPodPeer(&metav1.LabelSelector{}, &metav1.LabelSelector{})))))
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), true)
				r.ExpectAllIngress(e.Pod("x", "b"), false)
				return steps(Step{Name: "having a deny all ingress policy", Actions: do(Create(e.X, deny), Create(e.X, allow)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy to allow ingress traffic from pods in all namespaces")
		{Name: "should enforce policy to allow ingress traffic from pods in all namespaces", Pods: []string{"x/a", "x/b", "y/a", "z/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-from-another-ns", Labels("pod", "a"), Ingress(In(Peers(NsPeer(Sel())))))
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, e.Reach()))})
			}},

		// It("should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector")
		{Name: "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector", Pods: []string{"x/a", "x/b", "y/a", "z/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-client-a-via-ns-selector", Labels("pod", "a"), Ingress(In(Peers(NsPeer(Sel(nsLabel, e.Y))))))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{Namespace: e.X, Pod: "a"}, false)
				r.ExpectPeer(Peer{Namespace: e.Z}, Peer{Namespace: e.X, Pod: "a"}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy based on PodSelector with MatchExpressions")
		{Name: "should enforce policy based on PodSelector with MatchExpressions", Pods: []string{"x/a", "x/b", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("x-a-allows-x-b", Labels("pod", "a"), Ingress(In(Peers(PodPeer(Expr("pod", in, "b"))))))
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), false)
				r.Expect(e.Pod("x", "b"), e.Pod("x", "a"), true)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy based on NamespaceSelector with MatchExpressions")
		{Name: "should enforce policy based on NamespaceSelector with MatchExpressions", Pods: []string{"x/a", "x/b", "y/a", "z/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ns-y-match-selector", Labels("pod", "a"), Ingress(In(Peers(NsPeer(Expr(nsLabel, in, e.Y))))))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{Namespace: e.X, Pod: "a"}, false)
				r.ExpectPeer(Peer{Namespace: e.Z}, Peer{Namespace: e.X, Pod: "a"}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy based on PodSelector or NamespaceSelector")
		{Name: "should enforce policy based on PodSelector or NamespaceSelector", Pods: []string{"x/a", "x/b", "x/c", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ns-y-match-selector", Labels("pod", "a"),
					Ingress(In(Peers(NsPeer(Expr(nsLabel, notIn, e.X)), PodPeer(Sel("pod", "b"))))))
				r := e.Reach()
				r.Expect(e.Pod("x", "a"), e.Pod("x", "a"), false)
				r.Expect(e.Pod("x", "c"), e.Pod("x", "a"), false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy based on PodSelector and NamespaceSelector")
		{Name: "should enforce policy based on PodSelector and NamespaceSelector", Pods: []string{"x/a", "x/b", "y/a", "y/b", "z/b"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ns-y-podselector-and-nsselector", Labels("pod", "a"),
					Ingress(In(Peers(NsPodPeer(Expr(nsLabel, notIn, e.X), Sel("pod", "b"))))))
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), false)
				r.Expect(e.Pod("y", "b"), e.Pod("x", "a"), true)
				r.Expect(e.Pod("z", "b"), e.Pod("x", "a"), true)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy based on Multiple PodSelectors and NamespaceSelectors")
		{Name: "should enforce policy based on Multiple PodSelectors and NamespaceSelectors", Pods: []string{"x/a", "x/b", "y/a", "y/b", "y/c"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ns-y-z-pod-b-c", Labels("pod", "a"),
					Ingress(In(Peers(NsPodPeer(Expr(nsLabel, notIn, e.X), Expr("pod", in, "b", "c"))))))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{Namespace: e.X, Pod: "a"}, false)
				r.Expect(e.Pod("y", "a"), e.Pod("x", "a"), false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy based on any PodSelectors")
		{Name: "should enforce policy based on any PodSelectors", Pods: []string{"x/a", "x/b", "x/c"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ns-x-pod-b-c", Labels("pod", "a"),
					Ingress(In(Peers(PodPeer(Sel("pod", "b")), PodPeer(Sel("pod", "c"))))))
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), false)
				r.Expect(e.Pod("x", "b"), e.Pod("x", "a"), true)
				r.Expect(e.Pod("x", "c"), e.Pod("x", "a"), true)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector")
		{Name: "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector", Pods: []string{"x/a", "x/b", "y/a", "y/b", "z/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ns-y-pod-a-via-namespace-pod-selector", Labels("pod", "a"),
					Ingress(In(Peers(NsPodPeer(Sel(nsLabel, e.Y), Sel("pod", "a"))))))
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), false)
				r.Expect(e.Pod("y", "a"), e.Pod("x", "a"), true)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy based on Ports")
		{Name: "should enforce policy based on Ports", Pods: []string{"x/a", "x/b", "y/a", "y/b", "z/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-client-a-via-ns-selector", Labels("pod", "a"),
					Ingress(In(Peers(NsPeer(Sel(nsLabel, e.Y))), PortNum(pTCP, 81))))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{Namespace: e.X, Pod: "a"}, false)
				r.ExpectPeer(Peer{Namespace: e.Y}, Peer{Namespace: e.X, Pod: "a"}, true)
				r.ExpectPeer(Peer{Namespace: e.Z}, Peer{Namespace: e.X, Pod: "a"}, false)
				return steps(Step{
					Name:    "Creating a network allowPort81Policy which only allows allow listed namespaces (y) to connect on exactly one port (81)",
					Actions: do(Create(e.X, policy)), Probes: probes(probe(81, tcp, r)),
				})
			}},

		// It("should enforce multiple, stacked policies with overlapping podSelectors")
		{Name: "should enforce multiple, stacked policies with overlapping podSelectors", Pods: []string{"x/a", "x/b", "y/a", "y/b", "z/a"},
			Steps: func(e *Env) []Step {
				allow81 := NewPolicy("allow-client-a-via-ns-selector", Labels("pod", "a"),
					Ingress(In(Peers(NsPeer(Sel(nsLabel, e.Y))), PortNum(pTCP, 81))))
				allow := e.Reach()
				allow.ExpectPeer(Peer{Namespace: e.X}, Peer{Namespace: e.X, Pod: "a"}, false)
				allow.ExpectPeer(Peer{Namespace: e.Y}, Peer{Namespace: e.X, Pod: "a"}, true)
				allow.ExpectPeer(Peer{Namespace: e.Z}, Peer{Namespace: e.X, Pod: "a"}, false)
				deny := e.Reach()
				deny.ExpectAllIngress(e.Pod("x", "a"), false)
				allow80 := NewPolicy("allow-client-a-via-ns-selector-80", Labels("pod", "a"),
					Ingress(In(Peers(NsPeer(Sel(nsLabel, e.Y))), PortNum(pTCP, 80))))
				return steps(
					Step{
						Name:    "Creating a network allowPort81Policy which only allows allow listed namespaces (y) to connect on exactly one port (81)",
						Actions: do(Create(e.X, allow81)), Probes: probes(probe(81, tcp, allow), probe(80, tcp, deny)),
					},
					Step{Name: "Verifying that we can add a policy to unblock port 80", Actions: do(Create(e.X, allow80)), Probes: probes(probe(80, tcp, allow))},
				)
			}},

		// It("should support allow-all policy")
		{Name: "should support allow-all policy", Pods: []string{"x/a", "x/b", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-all", Labels(), Ingress(In(nil)))
				r := e.Reach()
				return steps(Step{
					Name:    "Testing pods can connect to both ports when an 'allow-all' policy is present.",
					Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r), probe(81, tcp, r)),
				})
			}},

		// It("should allow ingress access on one named port")
		{Name: "should allow ingress access on one named port", Pods: []string{"x/a", "x/b", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-all", Labels(), Ingress(In(nil, PortNamed(nil, "serve-81-tcp"))))
				r81 := e.Reach()
				r80 := e.Reach()
				r80.ExpectPeer(Peer{}, Peer{Namespace: e.X}, false)
				return steps(Step{
					Name:    "Blocking all ports other then 81 in the entire namespace",
					Actions: do(Create(e.X, policy)), Probes: probes(probe(81, tcp, r81), probe(80, tcp, r80)),
				})
			}},

		// It("should allow ingress access from namespace on one named port")
		{Name: "should allow ingress access from namespace on one named port", Pods: []string{"x/a", "x/b", "y/a", "z/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-client-a-via-ns-selector-80", Labels("pod", "a"),
					Ingress(In(Peers(NsPeer(Sel(nsLabel, e.Y))), PortNamed(pTCP, "serve-80-tcp"))))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{Namespace: e.X, Pod: "a"}, false)
				r.ExpectPeer(Peer{Namespace: e.Z}, Peer{Namespace: e.X, Pod: "a"}, false)
				fail := e.Reach()
				fail.ExpectAllIngress(e.Pod("x", "a"), false)
				return steps(Step{
					Name:    "Verify that port 80 is allowed for namespace y, and port 81 is blocked for all namespaces including y",
					Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r), probe(81, tcp, fail)),
				})
			}},

		// It("should allow egress access on one named port")
		{Name: "should allow egress access on one named port", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-egress", Labels(), Egress(Out(nil, PortNamed(nil, "serve-80-tcp"))))
				r80 := e.Reach()
				r81 := e.Reach()
				r81.ExpectPeer(Peer{Namespace: e.X}, Peer{}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r80), probe(81, tcp, r81))})
			}},

		// It("should not allow all ports if it cannot limit to the requested port")
		{Name: "should not allow all ports if it cannot limit to the requested port", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ingress-on-nonexistent-port", Labels("pod", "a"), Ingress(In(nil, PortNamed(pTCP, "no-such-port"))))
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), false)
				return steps(Step{
					Name:    "Trying to connect to TCP port 80, which should be blocked by implicit isolation.",
					Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r)),
				})
			}},

		// It("should enforce updated policy")
		{Name: "should enforce updated policy", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-all-mutate-to-deny-all", Labels(), Ingress(In(nil)))
				denyAll := policy.DeepCopy()
				denyAll.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
				deny := e.Reach()
				deny.ExpectPeer(Peer{}, Peer{Namespace: e.X}, false)
				return steps(
					Step{Name: "Using the simplest possible mutation: start with allow all, then switch to deny all", Actions: do(Create(e.X, policy)), Probes: probes(probe(81, tcp, e.Reach()))},
					Step{Name: "update the policy to deny all", Actions: do(Update(e.X, denyAll)), Probes: probes(probe(81, tcp, deny))},
				)
			}},

		// It("should allow ingress access from updated namespace")
		{Name: "should allow ingress access from updated namespace", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-client-a-via-ns-selector", Labels("pod", "a"), Ingress(In(Peers(NsPeer(Sel("ns2", "updated"))))))
				before := e.Reach()
				before.ExpectAllIngress(e.Pod("x", "a"), false)
				after := e.Reach()
				after.ExpectAllIngress(e.Pod("x", "a"), false)
				after.ExpectPeer(Peer{Namespace: e.Y}, Peer{}, true)
				return steps(
					Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, before))},
					Step{Name: "add a new label: anything from namespace 'y' should be able to get to x/a", Actions: do(e.AddNamespaceLabel(e.Y, "ns2", "updated")), Probes: probes(probe(80, tcp, after))},
				)
			}},

		// It("should allow ingress access from updated pod")
		{Name: "should allow ingress access from updated pod", Pods: []string{"x/a", "x/b"},
			Steps: func(e *Env) []Step {
				matchLabels := map[string]string{"pod": "b", "pod2": "updated"}
				policy := NewPolicy("allow-client-a-via-pod-selector", Labels("pod", "a"),
					Ingress(In(Peers(PodPeer(&metav1.LabelSelector{MatchLabels: matchLabels})))))
				before := e.Reach()
				before.ExpectAllIngress(e.Pod("x", "a"), false)
				after := e.Reach()
				after.ExpectAllIngress(e.Pod("x", "a"), false)
				after.Expect(e.Pod("x", "b"), e.Pod("x", "a"), true)
				return steps(
					Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, before))},
					Step{Name: "x/b is able to reach x/a when label is updated", Actions: do(AddPodLabels(e.Pod("x", "b"), matchLabels)), Probes: probes(probe(80, tcp, after))},
				)
			}},

		// It("should deny ingress from pods on other namespaces")
		{Name: "should deny ingress from pods on other namespaces", Pods: []string{"x/a", "x/b", "y/a", "z/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("deny-empty-policy", all, Ingress(In(Peers(PodPeer(Sel())))))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.Y}, Peer{Namespace: e.X}, false)
				r.ExpectPeer(Peer{Namespace: e.Z}, Peer{Namespace: e.X}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should deny ingress access to updated pod")
		{Name: "should deny ingress access to updated pod", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("deny-ingress-via-label-selector", Labels("target", "isolated"), Ingress())
				isolated := e.Reach()
				isolated.ExpectAllIngress(e.Pod("x", "a"), false)
				return steps(
					Step{Name: "Verify that everything can reach x/a", Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, e.Reach()))},
					Step{Name: "label x/a target=isolated", Actions: do(AddPodLabels(e.Pod("x", "a"), map[string]string{"target": "isolated"})), Probes: probes(probe(80, tcp, isolated))},
				)
			}},

		// It("should deny egress from pods based on PodSelector")
		{Name: "should deny egress from pods based on PodSelector", Pods: []string{"x/a", "x/b", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("deny-egress-pod-a", Labels("pod", "a"), Egress())
				r := e.Reach()
				r.ExpectAllEgress(e.Pod("x", "a"), false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should deny egress from all pods in a namespace")
		{Name: "should deny egress from all pods in a namespace", Pods: []string{"x/a", "x/b", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("deny-egress-ns-x", all, Egress())
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should work with Ingress, Egress specified together")
		{Name: "should work with Ingress, Egress specified together", Pods: []string{"x/a", "x/b", "x/c", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-client-a-via-pod-selector", Labels("pod", "a"), Ingress(In(Peers(PodPeer(Sel("pod", "b"))))))
				// add an egress rule on to it, without named ports
				policy.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{Out(nil, PortNum(nil, 80))}
				policy.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress}
				r80 := e.Reach()
				r80.ExpectAllIngress(e.Pod("x", "a"), false)
				r80.Expect(e.Pod("x", "b"), e.Pod("x", "a"), true)
				r81 := e.Reach()
				r81.ExpectAllIngress(e.Pod("x", "a"), false)
				r81.ExpectAllEgress(e.Pod("x", "a"), false)
				r81.Expect(e.Pod("x", "b"), e.Pod("x", "a"), true)
				return steps(Step{
					Name:    "validating that port 81 doesn't work",
					Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r80), probe(81, tcp, r81)),
				})
			}},

		// It("should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)")
		{Name: "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)", Pods: []string{"x/a", "y/a", "y/b"},
			Steps: func(e *Env) []Step {
				egress := NewPolicy("allow-to-ns-y-pod-a", Labels("pod", "a"), Egress(Out(Peers(NsPodPeer(Sel(nsLabel, e.Y), Sel("pod", "a"))))))
				rule := In(Peers(NsPodPeer(Sel(nsLabel, e.X), Sel("pod", "a"))))
				ingressA := NewPolicy("allow-from-xa-on-ya-match-selector", Labels("pod", "a"), Ingress(rule))
				ingressB := NewPolicy("allow-from-xa-on-yb-match-selector", Labels("pod", "b"), Ingress(rule))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X, Pod: "a"}, Peer{}, false)
				r.ExpectPeer(Peer{}, Peer{Namespace: e.Y, Pod: "a"}, false)
				r.ExpectPeer(Peer{Namespace: e.X, Pod: "a"}, Peer{Namespace: e.Y, Pod: "a"}, true)
				r.ExpectPeer(Peer{}, Peer{Namespace: e.Y, Pod: "b"}, false)
				return steps(Step{Actions: do(Create(e.X, egress), Create(e.Y, ingressA), Create(e.Y, ingressB)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector")
		{Name: "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector", Pods: []string{"x/a", "y/a", "y/b"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-to-ns-y-pod-a", Labels("pod", "a"), Egress(Out(Peers(NsPodPeer(Sel(nsLabel, e.Y), Sel("pod", "a"))))))
				r := e.Reach()
				r.ExpectAllEgress(e.Pod("x", "a"), false)
				r.Expect(e.Pod("x", "a"), e.Pod("y", "a"), true)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce ingress policy allowing any port traffic to a server on a specific protocol")
		{Name: "should enforce ingress policy allowing any port traffic to a server on a specific protocol", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ingress-by-proto", Labels("pod", "a"), Ingress(In(nil, AnyPort(tcp))))
				rUDP := e.Reach()
				rUDP.ExpectPeer(Peer{}, Peer{Namespace: e.X, Pod: "a"}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, e.Reach()), probe(80, udp, rUDP))})
			}},

		// It("should enforce multiple ingress policies with ingress allow-all policy taking precedence")
		{Name: "should enforce multiple ingress policies with ingress allow-all policy taking precedence", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				only80 := NewPolicy("allow-ingress-port-80", Labels(), Ingress(In(nil, PortNum(nil, 80))))
				allowAll := NewPolicy("allow-ingress", Labels(), Ingress(In(nil)))
				r := e.Reach()
				r.ExpectPeer(Peer{}, Peer{Namespace: e.X}, false)
				return steps(
					Step{Name: "The policy targets port 80 -- so let's make sure traffic on port 81 is blocked", Actions: do(Create(e.X, only80)), Probes: probes(probe(81, tcp, r))},
					Step{Name: "Allowing all ports", Actions: do(Create(e.X, allowAll)), Probes: probes(probe(81, tcp, e.Reach()))},
				)
			}},

		// It("should enforce multiple egress policies with egress allow-all policy taking precedence")
		{Name: "should enforce multiple egress policies with egress allow-all policy taking precedence", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				only80 := NewPolicy("allow-egress-port-80", Labels(), Egress(Out(nil, PortNum(nil, 80))))
				allowAll := NewPolicy("allow-egress", Labels(), Egress(Out(nil)))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{}, false)
				return steps(
					Step{Name: "Making sure ingress doesn't work other than port 80", Actions: do(Create(e.X, only80)), Probes: probes(probe(81, tcp, r))},
					Step{Name: "Allowing all ports", Actions: do(Create(e.X, allowAll)), Probes: probes(probe(81, tcp, e.Reach()))},
				)
			}},

		// It("should stop enforcing policies after they are deleted")
		{Name: "should stop enforcing policies after they are deleted", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("deny-all", all, Ingress(), Egress())
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{}, false)
				r.ExpectPeer(Peer{}, Peer{Namespace: e.X}, false)
				return steps(
					Step{Name: "Creating a network policy for the server which denies all traffic.", Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))},
					Step{Name: "Now the policy is deleted, we expect all connectivity to work again.", Actions: do(DeleteAll()), Probes: probes(probe(80, tcp, e.Reach()))},
				)
			}},

		// It("should allow egress access to server in CIDR block")
		{Name: "should allow egress access to server in CIDR block", Pods: []string{"x/a", "y/a", "y/b"},
			Steps: func(e *Env) []Step {
				server := HostPrefix(e.PodIP(e.Pod("y", "b")))
				policy := NewPolicy("allow-client-a-via-cidr-egress-rule", Labels("pod", "a"), Egress(Out(Peers(CIDRPeer(server)))))
				r := e.Reach()
				r.ExpectAllEgress(e.Pod("x", "a"), false)
				r.Expect(e.Pod("x", "a"), e.Pod("y", "b"), true)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce except clause while egress access to server in CIDR block")
		{Name: "should enforce except clause while egress access to server in CIDR block", Pods: []string{"x/a", "x/b", "x/c"},
			Steps: func(e *Env) []Step {
				ipB := e.PodIP(e.Pod("x", "b"))
				policy := NewPolicy("allow-client-a-via-cidr-egress-rule", Labels("pod", "a"),
					Egress(Out(Peers(CIDRPeer(LargePrefix(ipB), HostPrefix(ipB))))))
				r := e.Reach()
				r.Expect(e.Pod("x", "a"), e.Pod("x", "b"), false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed")
		{Name: "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed", Pods: []string{"x/a", "x/b", "x/c"},
			Steps: func(e *Env) []Step {
				ipB := e.PodIP(e.Pod("x", "b"))
				policy := NewPolicy("allow-client-a-via-cidr-egress-rule", Labels("pod", "a"),
					Egress(Out(Peers(CIDRPeer(LargePrefix(ipB), HostPrefix(ipB))))))
				r := e.Reach()
				r.Expect(e.Pod("x", "a"), e.Pod("x", "b"), false)
				// upstream replaces the policy (same name) by one that allows only podB
				allowPolicy := NewPolicy("allow-client-a-via-cidr-egress-rule", Labels("pod", "a"), Egress(Out(Peers(CIDRPeer(HostPrefix(ipB))))))
				allow := e.Reach()
				allow.ExpectAllEgress(e.Pod("x", "a"), false)
				allow.Expect(e.Pod("x", "a"), e.Pod("x", "b"), true)
				return steps(
					Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))},
					Step{Name: "update to a policy which allows access to podB", Actions: do(Update(e.X, allowPolicy)), Probes: probes(probe(80, tcp, allow))},
				)
			}},

		// It("should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector")
		{Name: "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector", Pods: []string{"x/a", "x/b", "y/a"},
			Steps: func(e *Env) []Step {
				target := Labels("pod", "a")
				allowEgress := NewPolicy("allow-egress-for-target", target, Egress(Out(nil)))
				denyIngress := NewPolicy("deny-ingress-via-label-selector", target, Ingress())
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), false)
				return steps(
					Step{Name: "Creating a network policy for pod-a which allows Egress traffic to pod-b.", Actions: do(Create(e.X, allowEgress)), Probes: probes(probe(80, tcp, e.Reach()))},
					Step{Name: "Creating a network policy for pod-a that denies traffic from pod-b.", Actions: do(Create(e.X, denyIngress)), Probes: probes(probe(80, tcp, r))},
				)
			}},

		// It("should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP")
		{Name: "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				deny := NewPolicy("deny-ingress", all, Ingress())
				allowSCTP := NewPolicy("allow-only-sctp-ingress-on-port-81", Labels("pod", "a"), Ingress(In(nil, PortNum(pSCTP, 81))))
				r := e.Reach()
				r.ExpectPeer(Peer{}, Peer{Namespace: e.X}, false)
				return steps(Step{
					Name:    "Trying to connect to TCP port 81, which should be blocked by the deny-ingress policy.",
					Actions: do(Create(e.X, deny), Create(e.X, allowSCTP)), Probes: probes(probe(81, tcp, r)),
				})
			}},

		// It("should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP")
		{Name: "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-only-sctp-ingress-on-port-80", Labels("pod", "a"), Ingress(In(nil, PortNum(pSCTP, 80))))
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), false)
				return steps(Step{
					Name:    "Trying to connect to TCP port 81, which should be blocked by implicit isolation.",
					Actions: do(Create(e.X, policy)), Probes: probes(probe(81, tcp, r)),
				})
			}},

		// It("should not allow access by TCP when a policy specifies only UDP")
		{Name: "should not allow access by TCP when a policy specifies only UDP", Pods: []string{"x/a", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-only-udp-ingress-on-port-81", Labels("pod", "a"), Ingress(In(nil, PortNum(pUDP, 81))))
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(81, tcp, r))})
			}},

		// It("should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label")
		{Name: "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label", Pods: []string{"x/a", "x/b", "y/a", "z/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-client-a-via-ns-selector-for-immutable-ns-label", Labels("pod", "a"),
					Ingress(In(Peers(NsPeer(Sel(corev1.LabelMetadataName, e.Y))))))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{Namespace: e.X, Pod: "a"}, false)
				r.ExpectPeer(Peer{Namespace: e.Z}, Peer{Namespace: e.X, Pod: "a"}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},

		// It("should enforce policy based on NamespaceSelector with MatchExpressions using default ns label")
		{Name: "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label", Pods: []string{"x/a", "x/b", "y/a", "z/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ns-y-match-selector-for-immutable-ns-label", Labels("pod", "a"),
					Egress(Out(Peers(NsPeer(Expr(corev1.LabelMetadataName, notIn, e.Y))))))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X, Pod: "a"}, Peer{Namespace: e.Y}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
			}},
	}
}

// protocolSuite: the UDP suite (Describe "Netpol [LinuxOnly]", Context
// "NetworkPolicy between server and client using UDP") and the SCTP suite
// (Describe "Netpol" [Feature:SCTPConnectivity], Context "NetworkPolicy between
// server and client using SCTP") run the same three tests with their protocol.
func protocolSuite(suite string, proto corev1.Protocol) []Case {
	return []Case{
		// It("should support a 'default-deny-ingress' policy")
		{Name: suite + ": should support a 'default-deny-ingress' policy", Pods: []string{"x/a", "x/b", "y/a", "y/b"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("deny-all", all, Ingress())
				r := e.Reach()
				r.ExpectPeer(Peer{}, Peer{Namespace: e.X}, false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, proto, r))})
			}},

		// It("should enforce policy based on Ports")
		{Name: suite + ": should enforce policy based on Ports", Pods: []string{"x/a", "x/b", "y/a", "z/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ingress-on-port-81-ns-x", Labels("pod", "a"),
					Ingress(In(Peers(NsPeer(Sel(nsLabel, e.Y))), PortNum(Proto(proto), 81))))
				r := e.Reach()
				r.ExpectPeer(Peer{Namespace: e.X}, Peer{Namespace: e.X, Pod: "a"}, false)
				r.ExpectPeer(Peer{Namespace: e.Z}, Peer{Namespace: e.X, Pod: "a"}, false)
				return steps(Step{
					Name:    "Creating a network policy allowPort81Policy which only allows allow listed namespaces (y) to connect on exactly one port (81)",
					Actions: do(Create(e.X, policy)), Probes: probes(probe(81, proto, r)),
				})
			}},

		// It("should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector")
		{Name: suite + ": should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector", Pods: []string{"x/a", "x/b", "y/a"},
			Steps: func(e *Env) []Step {
				policy := NewPolicy("allow-ns-y-pod-a-via-namespace-pod-selector", Labels("pod", "a"),
					Ingress(In(Peers(NsPodPeer(Sel(nsLabel, e.Y), Sel("pod", "a"))))))
				r := e.Reach()
				r.ExpectAllIngress(e.Pod("x", "a"), false)
				r.Expect(e.Pod("y", "a"), e.Pod("x", "a"), true)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, proto, r))})
			}},
	}
}
