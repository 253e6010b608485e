package conformance

// NamedPortIPBlockCases are nftwarden's own cases for issue #6: a named port
// in an egress rule whose peer is an ipBlock. The API says a named port
// "refers to the named port on a pod"; for egress that is the destination pod,
// whatever the kind of peer, which is how Cyclonus and Calico read it. So such
// a rule allows a destination inside the block (not in an except) when the pod
// holding that address declares a port of that name and protocol with the
// probed number, and nothing else. In a rule that mixes selector and ipBlock
// peers each peer keeps its own meaning. They run at model level
// (TestNamedPortEgressIPBlock) and with packets (TestConformancePackets).
func NamedPortIPBlockCases() []Case {
	return []Case{
		{Name: "egress named port to an ipBlock holding the server's pod IP", Pods: []string{"x/a", "y/a", "y/b"},
			Steps: func(e *Env) []Step {
				server := HostPrefix(e.PodIP(e.Pod("y", "b")))
				policy := NewPolicy("named-port-to-cidr", Labels(PodLabelKey, "a"), Egress(Out(Peers(CIDRPeer(server)), PortNamed(nil, "serve-80-tcp"))))
				r80 := e.Reach()
				r80.ExpectAllEgress(e.Pod("x", "a"), false)
				r80.Expect(e.Pod("x", "a"), e.Pod("y", "b"), true)
				// The server serves 81 too, under another name.
				r81 := e.Reach()
				r81.ExpectAllEgress(e.Pod("x", "a"), false)
				return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r80), probe(81, tcp, r81))})
			}},
		{Name: "egress named port to a large ipBlock without the server, and a pod peer", Pods: []string{"x/a", "x/b", "y/a", "y/b"},
			Steps: func(e *Env) []Step {
				server := e.PodIP(e.Pod("y", "b"))
				policy := NewPolicy("named-port-mixed", Labels(PodLabelKey, "a"), Egress(Out(
					Peers(CIDRPeer(LargePrefix(server), HostPrefix(server)), PodPeer(Sel(PodLabelKey, "b"))),
					PortNamed(nil, "serve-81-tcp"))))
				r81 := e.Reach()
				r81.ExpectAllEgress(e.Pod("x", "a"), false)
				r81.Expect(e.Pod("x", "a"), e.Pod("x", "b"), true) // both peers
				r81.Expect(e.Pod("x", "a"), e.Pod("y", "a"), true) // the ipBlock peer
				// y/b is carved out of the block, and the pod peer is x's pods only.
				denied := e.Reach()
				denied.ExpectAllEgress(e.Pod("x", "a"), false)
				return steps(Step{Actions: do(Create(e.X, policy)),
					Probes: probes(probe(81, tcp, r81), probe(80, tcp, denied), probe(81, udp, denied))})
			}},
	}
}
