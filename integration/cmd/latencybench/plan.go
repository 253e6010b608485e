package main

import (
	"fmt"

	"github.com/nftwarden/nftwarden/podwatch/podwatchtest"
)

// plan is the cluster the benchmark loads (podwatchtest's namespaces,
// policies and pods) and where its pods run.
//
// podwatchtest's pod i is in namespace i/perNS; its app label is app-(i%10),
// its zone label a (even i) or b; namespace j is prod, staging or dev (j%3).
// Each namespace's policy-2 admits, from every prod or staging namespace,
// the pods of zone a: one shared peer set on any node where a policy-2 is
// programmed. That set is what the pod-label, namespace-label, pod-ip and
// pod-delete writes change.
//
// The measured node hosts `local` pods, one in each of `local` namespaces
// spread evenly over all (every stride-th), with app labels that go round
// app-0..app-9, so that every kind of podwatchtest policy selects some local
// pod and is programmed in the node's table. The other pods run on `nodes`
// other node names (Node objects that do not exist, as in memload).
type plan struct {
	pods, perNS, namespaces, policiesPerNS int
	local, stride, nodes                   int
	node                                   string // the measured node's name
}

func newPlan(pods, perNS, policies, local, nodes int, node string) (*plan, error) {
	if pods < 1 || perNS < 20 || perNS%10 != 0 || local < 1 || nodes < 1 {
		return nil, fmt.Errorf("want pods >= 1, pods per namespace a multiple of 10 and at least 20, local >= 1, nodes >= 1")
	}
	p := &plan{pods: pods, perNS: perNS, namespaces: (pods + perNS - 1) / perNS, local: local, nodes: nodes, node: node}
	if p.namespaces < 3 {
		return nil, fmt.Errorf("%d pods make %d namespaces; at least 3 are needed (prod, staging, dev)", pods, p.namespaces)
	}
	if pods%perNS != 0 {
		return nil, fmt.Errorf("pods (%d) must be a multiple of the pods per namespace (%d)", pods, perNS)
	}
	p.policiesPerNS = policies / p.namespaces
	if p.policiesPerNS < 3 || p.policiesPerNS*p.namespaces != policies {
		return nil, fmt.Errorf("%d policies over %d namespaces: want a multiple of the namespaces, at least 3 per namespace (policy-2 must exist)", policies, p.namespaces)
	}
	p.stride = max(1, p.namespaces/local)
	if p.local > p.namespaces {
		return nil, fmt.Errorf("%d local pods: at most one per namespace (%d)", local, p.namespaces)
	}
	return p, nil
}

// localPod returns the position in namespace j of its local pod, if j hosts
// one.
func (p *plan) localPod(j int) (r int, ok bool) {
	if j%p.stride != 0 || j/p.stride >= p.local {
		return 0, false
	}
	return (j / p.stride) % 10, true
}

// nodeOf is the node of pod i.
func (p *plan) nodeOf(i int) string {
	j, r := i/p.perNS, i%p.perNS
	if lr, ok := p.localPod(j); ok && lr == r {
		return p.node
	}
	return fmt.Sprintf("bench-node-%03d", i%p.nodes)
}

// hosting lists the namespaces with a local pod.
func (p *plan) hosting() []int {
	var out []int
	for j := range p.namespaces {
		if _, ok := p.localPod(j); ok {
			out = append(out, j)
		}
	}
	return out
}

// env is the env label podwatchtest gives namespace j.
func env(j int) string { return podwatchtest.Namespace(j).Labels["env"] }

// ofEnv lists the namespaces whose env label is e.
func (p *plan) ofEnv(e string) []int {
	var out []int
	for j := range p.namespaces {
		if env(j) == e {
			out = append(out, j)
		}
	}
	return out
}

// remotePods lists the pods of the namespaces that run elsewhere, namespace
// by namespace.
func (p *plan) remotePods(namespaces []int) []int {
	var out []int
	for _, j := range namespaces {
		for r := range p.perNS {
			if i := j*p.perNS + r; p.nodeOf(i) != p.node {
				out = append(out, i)
			}
		}
	}
	return out
}

// zoneAPod is a remote pod of namespace j with zone a (even index), which
// podLabels never changes.
func (p *plan) zoneAPod(j int) int {
	for _, i := range p.remotePods([]int{j}) {
		if i%2 == 0 {
			return i
		}
	}
	panic("a namespace of at least 20 pods has a remote pod of even index")
}

// addr4 is the IPv4 address of pod i (podwatchtest.PodStatus), as an element
// key holds it.
func addr4(i int) []byte {
	a := podwatchtest.PodIP(i).As4()
	return a[:]
}

// maxPodIndex bounds the pod indexes that podwatchtest.PodIP maps into
// 198.18.64.0-198.19.255.255.
const maxPodIndex = (256 - 64 + 256) * 254
