package enforcer_test

// IP plan: see helpers_test.go (generated pods: 198.18.128.0/24,
// 2001:db8:100::/64) and semantics_test.go (the base world).
//
// Every entry point of the library is fuzzed here. The seed corpora are in
// testdata/fuzz/<FuzzName>/ (written by TestFuzzSeeds with -update) and run
// as ordinary tests; to fuzz one target:
//
//	go test ./enforcer -run '^$' -fuzz FuzzEngineObjects -fuzztime 2m
//
// FuzzEngineAgreesWithEvaluator costs tens of milliseconds per input: add
// -fuzzminimizetime 0, or the workers spend the run minimizing each new
// interesting input (the run then reports "execs: ... (0/sec)").

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// FuzzEngineAgreesWithEvaluator builds a random cluster (namespaces, pods on
// three nodes, pods reusing each other's addresses, NetworkPolicies with
// every kind of selector, peer and port, ClusterNetworkPolicies of both
// tiers: genMixedOp) from the fuzzer's bytes, programs one Fake per node
// incrementally, and holds the reference evaluator against the compiled
// rulesets on the flows of the grid (gridFlows), on random flows and on the
// pods' named ports. It also checks that the incremental result equals a
// fresh build and that an identical second Flush sends nothing.
func FuzzEngineAgreesWithEvaluator(f *testing.F) {
	f.Fuzz(agreesWithEvaluator)
}

// agreesWithEvaluator is FuzzEngineAgreesWithEvaluator's check of one input.
func agreesWithEvaluator(t *testing.T, data []byte) {
	worldAgreesWithEvaluator(t, data, enforcer.Config{}, genMixedOp, nil)
}

// worldAgreesWithEvaluator builds the world the input's changes (drawn by
// gen) make in a cluster of engines configured as cfg, and holds it against
// a fresh build and Decide; more, if not nil, checks every flow further.
func worldAgreesWithEvaluator(t *testing.T, data []byte, cfg enforcer.Config, gen func(choices, *world) op, more func(*cluster, enforcer.Flow)) {
	// Bound the scenario: more bytes add little but cost a lot per run.
	data = data[:min(len(data), 1024)]
	c := &byteChoices{b: data}
	cl := newClusterWith(t, cfg, genNodes...)
	w := newWorld()
	// Two thirds of the input build the cluster, the rest picks flows.
	opsEnd := len(data) * 2 / 3
	for step := 0; c.i < opsEnd; step++ {
		for _, call := range w.apply(gen(c, w)) {
			_ = cl.each(func(e *enforcer.Engine) error { call(e); return nil })
		}
		if c.intn(4) == 0 {
			cl.flush()
		}
	}
	cl.flush()
	checkConverged(t, cl, w, -1)
	checkIdle(t, cl)
	a := agreement{decidedBy: map[string]int{}}
	check := func(f enforcer.Flow) {
		a.check(t, cl, w, f)
		if more != nil {
			more(cl, f)
		}
	}
	for n := 0; c.i < len(data) && n < 64; n++ {
		src, dst, proto, port := genFlow(c)
		check(enforcer.Flow{Src: src, Dst: dst, Protocol: proto, Port: port})
	}
	for _, f := range append(gridFlows(fuzzGridServices, c.intn(len(gridServices))), namedPortFlows(w)...) {
		check(f)
	}
}

// fuzzGridServices is how many grid services each pair of addresses is
// checked on per fuzz input: the full grid costs as much as a hundred
// inputs, and the rotation (from a service the input picks) meets every
// service of every pair over a few inputs (the generated worlds of TestMixedWorldsAgreeWithEvaluator take the full grid).
const fuzzGridServices = 2

// maxFuzzJSON bounds each decoded object: larger inputs add nothing the
// structure does not, and slow every run (TestOddInput has the big lists).
const maxFuzzJSON = 64 << 10

// decodeJSON decodes an API object from fuzz input; nil for none, too much,
// or input that is not such an object.
func decodeJSON[T any](b []byte) *T {
	if len(b) == 0 || len(b) > maxFuzzJSON {
		return nil
	}
	v := new(T)
	if json.Unmarshal(b, v) != nil {
		return nil
	}
	return v
}

// Ops of FuzzEngineObjects' script, each followed by the bytes it reads.
const (
	opNamespace       = iota // rename
	opPod                    // rename namespace, rename pod, address/node, UpsertPod or NewPod+UpsertParsedPod
	opPodAgain               // (as opPod)
	opPolicy                 // rename namespace, rename policy
	opPolicyAgain            // (as opPolicy)
	opDeletePod              // which
	opDeletePolicy           // which
	opDeleteNamespace        // which
	opFlush                  // Flush or Reconcile
	opDecide                 // source, destination, protocol, port
	opCount
)

var fuzzNamespaces = []string{"prod", "dev", "other"}

// FuzzEngineObjects drives every entry point with objects decoded from the
// fuzzer's bytes: a namespace, a pod and a policy as JSON (whatever an API
// object decodes from, or nothing), and a script of operations over a
// two-node cluster running the base world and policies. The script upserts
// the objects (the pod through UpsertPod or NewPod+UpsertParsedPod), each
// perhaps moved into a namespace of the base world, renamed, given a base
// pod's address or another node; deletes objects that exist or not; flushes
// or reconciles into the Fakes; and asks Decide. Invariants: nothing panics;
// every Flush and Reconcile is accepted; Decide agrees with the traces of the
// Fakes; the result equals a fresh build of the same objects; an identical
// second Flush sends nothing.
func FuzzEngineObjects(f *testing.F) {
	f.Fuzz(func(t *testing.T, nsJSON, podJSON, polJSON, script []byte) {
		ns := decodeJSON[corev1.Namespace](nsJSON)
		pod := decodeJSON[corev1.Pod](podJSON)
		pol := decodeJSON[networkingv1.NetworkPolicy](polJSON)
		cl := newCluster(t, testNodes...)
		w := baseKeyedWorld()
		w.load(clusterAPI{cl})
		cl.flush()
		_, basePods := baseWorld()
		c := &byteChoices{b: script}
		renamed := func(name string, names ...string) string {
			if k := c.intn(len(names) + 1); k > 0 {
				return names[k-1]
			}
			return name
		}
		for step := 0; step < 32 && c.i < len(script); step++ {
			switch c.intn(opCount) {
			case opNamespace:
				var obj *corev1.Namespace
				if ns != nil {
					obj = ns.DeepCopy()
					obj.Name = renamed(obj.Name, fuzzNamespaces...)
				}
				_ = cl.each(func(e *enforcer.Engine) error { return e.UpsertNamespace(obj) })
				if obj != nil && obj.Name != "" {
					w.namespaces[obj.Name] = obj
				}
			case opPod, opPodAgain:
				var obj *corev1.Pod
				if pod != nil {
					obj = pod.DeepCopy()
					obj.Namespace = renamed(obj.Namespace, fuzzNamespaces...)
					obj.Name = renamed(obj.Name, "fz1", "fz2", "web")
					switch c.intn(3) {
					case 1: // IP reuse: a base pod's addresses
						bp := basePods[c.intn(len(basePods))]
						obj.Status.PodIP, obj.Status.PodIPs = bp.Status.PodIP, bp.Status.PodIPs
					case 2:
						obj.Spec.NodeName = renamed(obj.Spec.NodeName, testNodes...)
					}
				}
				parsed := c.intn(2) == 1
				_ = cl.each(func(e *enforcer.Engine) error {
					if parsed {
						return e.UpsertParsedPod(enforcer.NewPod(obj))
					}
					return e.UpsertPod(obj)
				})
				if obj != nil && obj.Name != "" && obj.Namespace != "" {
					w.pods[obj.Namespace+"/"+obj.Name] = obj
				}
			case opPolicy, opPolicyAgain:
				var obj *networkingv1.NetworkPolicy
				if pol != nil {
					obj = pol.DeepCopy()
					obj.Namespace = renamed(obj.Namespace, fuzzNamespaces...)
					obj.Name = renamed(obj.Name, "fzp", "web")
				}
				_ = cl.each(func(e *enforcer.Engine) error { return e.UpsertNetworkPolicy(obj) })
				if obj != nil && obj.Name != "" && obj.Namespace != "" {
					w.policies[obj.Namespace+"/"+obj.Name] = obj
				}
			case opDeletePod:
				ns, name := pickKey(c, w.pods, "prod/missing")
				_ = cl.each(func(e *enforcer.Engine) error { e.DeletePod(ns, name); return nil })
				delete(w.pods, ns+"/"+name)
			case opDeletePolicy:
				ns, name := pickKey(c, w.policies, "prod/missing")
				_ = cl.each(func(e *enforcer.Engine) error { e.DeleteNetworkPolicy(ns, name); return nil })
				delete(w.policies, ns+"/"+name)
			case opDeleteNamespace:
				_, name := pickKey(c, w.namespaces, "/missing")
				_ = cl.each(func(e *enforcer.Engine) error { e.DeleteNamespace(name); return nil })
				delete(w.namespaces, name)
			case opFlush:
				if c.intn(2) == 0 {
					cl.flush()
				} else {
					cl.reconcile()
				}
			case opDecide:
				cl.flush()
				addrs := worldAddrs(cl, w)
				src := addrs[c.intn(len(addrs))]
				addrs = slices.DeleteFunc(addrs, func(a netip.Addr) bool { return a.Is4() != src.Is4() }) // a packet has one family
				dst := addrs[c.intn(len(addrs))]
				checkAgreement(t, cl, enforcer.Flow{Src: src, Dst: dst, Protocol: pick(c, TCP, UDP, SCTP), Port: pick[uint16](c, 80, 8080, 53, 5432, 443, 9090)})
			}
		}
		cl.flush()
		checkConverged(t, cl, w, -1)
		checkIdle(t, cl)
		// Every pair of addresses of one family, each on one port and
		// protocol in turn.
		addrs := worldAddrs(cl, w)
		ports := []uint16{80, 8080, 53, 5432, 443, 9090, 7000}
		k := 0
		for _, src := range addrs {
			for _, dst := range addrs {
				if src.Is4() == dst.Is4() {
					k++
					checkAgreement(t, cl, enforcer.Flow{Src: src, Dst: dst, Protocol: []corev1.Protocol{TCP, UDP, SCTP}[k%3], Port: ports[k%len(ports)]})
				}
			}
		}
	})
}

// FuzzNewPod parses a pod decoded from the fuzzer's bytes: NewPod never
// panics and parses a pod the same way twice; UpsertPod and
// NewPod+UpsertParsedPod accept or refuse it alike and program the same;
// the addresses the engine keeps are valid, unmapped and without zone; and
// deleting the pod leaves what a fresh build without it has.
func FuzzNewPod(f *testing.F) {
	f.Fuzz(func(t *testing.T, podJSON []byte) {
		obj := decodeJSON[corev1.Pod](podJSON)
		p := enforcer.NewPod(obj)
		if obj == nil {
			if p.Err() == nil {
				t.Fatal("NewPod(nil): no error")
			}
			return
		}
		_, _, _ = p.Labels(), p.Namespace(), p.Name()
		if !p.Equal(enforcer.NewPod(obj.DeepCopy())) {
			t.Fatal("two parses of one pod are not Equal")
		}
		byAPI, parsed := newCluster(t, "node-a"), newCluster(t, "node-a")
		w := baseKeyedWorld()
		for _, cl := range []*cluster{byAPI, parsed} {
			w.load(clusterAPI{cl})
		}
		errAPI := byAPI.engines["node-a"].UpsertPod(obj)
		errParsed := parsed.engines["node-a"].UpsertParsedPod(p)
		if (errAPI == nil) != (errParsed == nil) {
			t.Fatalf("UpsertPod error %v, UpsertParsedPod error %v", errAPI, errParsed)
		}
		byAPI.flush()
		parsed.flush()
		if tx := nft.Diff(byAPI.engines["node-a"].Desired(), parsed.engines["node-a"].Desired(), nil); !tx.Empty() {
			t.Fatalf("UpsertPod and UpsertParsedPod program differently (%d operations)", tx.Size())
		}
		if ips, ok := byAPI.engines["node-a"].PodIPs(obj.Namespace, obj.Name); ok {
			for i, a := range ips {
				if !a.IsValid() || a.Is4In6() || a.Zone() != "" || (i > 0 && !ips[i-1].Less(a)) {
					t.Fatalf("pod addresses %v: want valid, unmapped, zoneless, sorted and unique", ips)
				}
			}
		}
		byAPI.engines["node-a"].DeletePod(obj.Namespace, obj.Name)
		byAPI.flush()
		delete(w.pods, obj.Namespace+"/"+obj.Name)
		checkConverged(t, byAPI, w, -1)
	})
}

// decided is the cluster FuzzDecide asks, built once per process (Decide and
// the traces only read it): the base world and policies, plus a pod claiming
// prod/cli's address with other labels. known are its addresses.
var decided struct {
	sync.Once
	cl    *cluster
	known []netip.Addr
}

func decideCluster(t testing.TB) (*cluster, []netip.Addr) {
	decided.Do(func() {
		cl := newCluster(t, testNodes...)
		w := baseKeyedWorld()
		w.pods["prod/twin"] = mkPod("prod", "twin", podLabels("app", "other"), onNode("node-b"), podIPs("198.18.2.10"))
		w.load(clusterAPI{cl})
		cl.flush()
		known := worldAddrs(cl, w)
		for _, a := range slices.Clone(known) {
			if a.Is4() {
				known = append(known, netip.AddrFrom16(a.As16())) // IPv4-mapped
			}
		}
		decided.cl, decided.known = cl, known
	})
	return decided.cl, decided.known
}

// FuzzDecide asks Decide about flows from the fuzzer's bytes (an address is
// 4 or 16 raw bytes, or one byte picking a known address; any protocol name)
// and holds it against the traces when the flow is a packet the Fakes can
// carry: both addresses valid and of one family, and a protocol they know.
func FuzzDecide(f *testing.F) {
	f.Fuzz(func(t *testing.T, src, dst []byte, proto string, port uint16) {
		cl, known := decideCluster(t)
		addr := func(b []byte) netip.Addr {
			if a, ok := netip.AddrFromSlice(b); ok {
				return a
			}
			if len(b) > 0 {
				return known[int(b[0])%len(known)]
			}
			return netip.Addr{}
		}
		fl := enforcer.Flow{Src: addr(src), Dst: addr(dst), Protocol: corev1.Protocol(proto), Port: port}
		d := cl.engines["node-a"].Decide(fl)
		if d.Reason == "" || (d.Allowed != (d.Egress.Allowed && d.Ingress.Allowed)) {
			t.Fatalf("Decide(%v) = %+v: want a reason and the verdict of both directions", fl, d)
		}
		fl.Src, fl.Dst = fl.Src.Unmap(), fl.Dst.Unmap()
		if fl.Src.IsValid() && fl.Dst.IsValid() && fl.Src.Is4() == fl.Dst.Is4() && slices.Contains([]corev1.Protocol{TCP, UDP, SCTP}, fl.Protocol) {
			checkAgreement(t, cl, fl)
		}
	})
}

// baseKeyedWorld is the base world and policies as a world keyed by
// "ns/name" (namespaces by name).
func baseKeyedWorld() *world {
	w := newWorld()
	nss, pods := baseWorld()
	for _, ns := range nss {
		w.namespaces[ns.Name] = ns
	}
	for _, p := range pods {
		w.pods[p.Namespace+"/"+p.Name] = p
	}
	for _, np := range basePolicies() {
		w.policies[np.Namespace+"/"+np.Name] = np
	}
	return w
}

// pickKey picks one key of m ("ns/name") or missing, and splits it.
func pickKey[V any](c choices, m map[string]V, missing string) (ns, name string) {
	keys := append(sortedNames(m), missing)
	k := keys[c.intn(len(keys))]
	for i := range k {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return "", k
}

// worldAddrs lists the addresses the engines keep for the world's pods and
// two outside hosts, sorted, for flows whose verdict the cluster's Fakes
// enforce: the addresses of pods on a node that is not in the cluster (no
// engine programs their policy, while Decide judges them by it) are left out.
func worldAddrs(cl *cluster, w *world) []netip.Addr {
	addrs := []netip.Addr{netip.MustParseAddr("198.19.0.5"), netip.MustParseAddr("2001:db8:ff::5")}
	var elsewhere []netip.Addr
	for _, p := range w.pods {
		ips, _ := cl.engines[cl.nodes[0]].PodIPs(p.Namespace, p.Name)
		if slices.Contains(cl.nodes, p.Spec.NodeName) {
			addrs = append(addrs, ips...)
		} else {
			elsewhere = append(elsewhere, ips...)
		}
	}
	addrs = slices.DeleteFunc(addrs, func(a netip.Addr) bool { return slices.Contains(elsewhere, a) })
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}

// clusterAPI applies each call to every engine of a cluster.
type clusterAPI struct{ c *cluster }

func (a clusterAPI) UpsertNamespace(ns *corev1.Namespace) error {
	return a.c.each(func(e *enforcer.Engine) error { return e.UpsertNamespace(ns) })
}
func (a clusterAPI) DeleteNamespace(name string) {
	_ = a.c.each(func(e *enforcer.Engine) error { e.DeleteNamespace(name); return nil })
}
func (a clusterAPI) UpsertPod(p *corev1.Pod) error {
	return a.c.each(func(e *enforcer.Engine) error { return e.UpsertPod(p) })
}
func (a clusterAPI) DeletePod(ns, name string) {
	_ = a.c.each(func(e *enforcer.Engine) error { e.DeletePod(ns, name); return nil })
}
func (a clusterAPI) UpsertNetworkPolicy(np *networkingv1.NetworkPolicy) error {
	return a.c.each(func(e *enforcer.Engine) error { return e.UpsertNetworkPolicy(np) })
}
func (a clusterAPI) DeleteNetworkPolicy(ns, name string) {
	_ = a.c.each(func(e *enforcer.Engine) error { e.DeleteNetworkPolicy(ns, name); return nil })
}
func (a clusterAPI) UpsertClusterNetworkPolicy(cnp *v1beta1.ClusterNetworkPolicy) error {
	return a.c.each(func(e *enforcer.Engine) error { return e.UpsertClusterNetworkPolicy(cnp) })
}
func (a clusterAPI) DeleteClusterNetworkPolicy(name string) {
	_ = a.c.each(func(e *enforcer.Engine) error { e.DeleteClusterNetworkPolicy(name); return nil })
}

// checkIdle asserts that a Flush and a Reconcile of every engine, right
// after a Flush, send nothing.
func checkIdle(t testing.TB, c *cluster) {
	t.Helper()
	for _, n := range c.nodes {
		e := c.engines[n]
		if res, err := e.Flush(context.Background()); err != nil || res.Operations != 0 {
			t.Fatalf("%s: second flush: %+v %v, want nothing sent", n, res, err)
		}
		if res, err := e.Reconcile(context.Background()); err != nil || res.Operations != 0 {
			t.Fatalf("%s: reconcile after a flush: %+v %v, want nothing sent", n, res, err)
		}
	}
}

// reconcile reconciles every engine of the cluster.
func (c *cluster) reconcile() {
	c.t.Helper()
	for _, n := range c.nodes {
		if _, err := c.engines[n].Reconcile(context.Background()); err != nil {
			c.t.Fatalf("reconcile %s: %v", n, err)
		}
	}
}
