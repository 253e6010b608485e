package conformance

import (
	"context"
	"os"
	"testing"
)

// TestNamedPortEgressIPBlock documents where nftwarden and Cyclonus read the
// API differently: an egress rule with a named port and an ipBlock peer that
// holds a pod's IP. Cyclonus's matcher resolves the name on the destination
// pod whatever the peer kind (allowed); nftwarden matches nothing (denied), on
// the ground that an ipBlock peer has no named ports. Kubernetes leaves
// ipBlocks over pod IPs implementation-defined, so this runs only with
// NFTW_CONFORMANCE_STRICT=1.
func TestNamedPortEgressIPBlock(t *testing.T) {
	if os.Getenv("NFTW_CONFORMANCE_STRICT") == "" {
		t.Skip("implementation-defined corner; set NFTW_CONFORMANCE_STRICT=1 to run")
	}
	c := Case{
		Name: "egress named port to an ipBlock holding the server's pod IP",
		Pods: []string{"x/a", "y/a", "y/b"},
		Steps: func(e *Env) []Step {
			server := HostPrefix(e.PodIP(e.Pod("y", "b")))
			policy := NewPolicy("named-port-to-cidr", Labels("pod", "a"), Egress(Out(Peers(CIDRPeer(server)), PortNamed(nil, "serve-80-tcp"))))
			r := e.Reach()
			r.ExpectAllEgress(e.Pod("x", "a"), false)
			r.Expect(e.Pod("x", "a"), e.Pod("y", "b"), true)
			return steps(Step{Actions: do(Create(e.X, policy)), Probes: probes(probe(80, tcp, r))})
		},
	}
	m, err := NewModel("", c.Pods)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := NewModelCluster(context.Background(), m, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if res := RunCase(context.Background(), cl, m, c, nil, RunOptions{}); !res.Passed() {
		t.Error(res.Report())
	}
}
