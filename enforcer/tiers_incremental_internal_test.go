package enforcer

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftwarden/nftwarden/nft"
)

// IP plan: the pods of tierWorld take addresses from tierAddrs (a small pool,
// so that addresses are reused and claimed by two live pods), IPv4 in
// 198.18.0.0/29 and IPv6 in 2001:db8:1::/125; 198.19.0.1 and 2001:db8:ff::1
// are no pod's.

var tierAddrs = []string{"198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5", "198.18.0.6",
	"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::4"}

var tierNamespaces = []string{"gryffindor", "slytherin", "hufflepuff", "ravenclaw"}

// tierWorld is the world a random sequence builds: every object as last
// upserted, by key.
type tierWorld struct {
	nss  map[string]*corev1.Namespace
	pods map[string]*corev1.Pod
	nps  map[string]*networkingv1.NetworkPolicy
	cnps map[string]*v1beta1.ClusterNetworkPolicy
	// nodes and experimental: the experimental channel's world
	// (cnpexp_internal_test.go); nil and false for the standard one.
	nodes        map[string]*corev1.Node
	experimental bool
	// cfg is the rest of the engines' configuration (the log, audit and
	// counters; node, dataplane and logger are set per engine).
	cfg Config
}

// config is the world's configuration for an engine of node over dp.
func (w *tierWorld) config(node string, dp nft.Dataplane) Config {
	cfg := w.cfg
	cfg.NodeName, cfg.Dataplane, cfg.Logger, cfg.ClusterNetworkPolicyExperimental = node, dp, slog.New(slog.DiscardHandler), w.experimental
	return cfg
}

// load feeds the world to a fresh engine in the order a restart would:
// namespaces, pods, NetworkPolicies, ClusterNetworkPolicies.
func (w *tierWorld) load(e *Engine) {
	for _, k := range slices.Sorted(maps.Keys(w.nss)) {
		_ = e.UpsertNamespace(w.nss[k])
	}
	for _, k := range slices.Sorted(maps.Keys(w.pods)) {
		_ = e.UpsertPod(w.pods[k])
	}
	for _, k := range slices.Sorted(maps.Keys(w.nps)) {
		_ = e.UpsertNetworkPolicy(w.nps[k])
	}
	for _, k := range slices.Sorted(maps.Keys(w.cnps)) {
		_ = e.UpsertClusterNetworkPolicy(w.cnps[k])
	}
	for _, k := range slices.Sorted(maps.Keys(w.nodes)) {
		_ = e.UpsertNode(w.nodes[k])
	}
}

// tierGen draws random objects of the tier world.
type tierGen struct{ r *rand.Rand }

func (g tierGen) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

func (g tierGen) labels() map[string]string {
	l := map[string]string{}
	if g.r.IntN(2) == 0 {
		l["app"] = g.pick([]string{"seeker", "keeper"})
	}
	if g.r.IntN(3) == 0 {
		l["tier"] = "x"
	}
	return l
}

func (g tierGen) namespace() *corev1.Namespace {
	name := g.pick(tierNamespaces)
	l := map[string]string{"conformance-house": name}
	if g.r.IntN(3) == 0 {
		l["conformance-house"] = g.pick(tierNamespaces) // relabelled as another house
	}
	if g.r.IntN(2) == 0 {
		l["env"] = g.pick([]string{"prod", "dev"})
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func (g tierGen) pod() *corev1.Pod {
	ns := g.pick(tierNamespaces)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", g.r.IntN(3)), Labels: g.labels()},
		Spec:       corev1.PodSpec{NodeName: g.pick([]string{"node-a", "node-a", "node-b"}), HostNetwork: g.r.IntN(12) == 0},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if g.r.IntN(10) == 0 {
		p.Status.Phase = corev1.PodSucceeded
	}
	v4, v6 := tierAddrs[g.r.IntN(6)], tierAddrs[6+g.r.IntN(4)]
	switch g.r.IntN(3) {
	case 0:
		p.Status.PodIPs = []corev1.PodIP{{IP: v4}}
	case 1:
		p.Status.PodIPs = []corev1.PodIP{{IP: v6}}
	default:
		p.Status.PodIPs = []corev1.PodIP{{IP: v4}, {IP: v6}}
	}
	return p
}

func (g tierGen) selector() metav1.LabelSelector {
	switch g.r.IntN(4) {
	case 0:
		return metav1.LabelSelector{}
	case 1:
		return metav1.LabelSelector{MatchLabels: map[string]string{"app": g.pick([]string{"seeker", "keeper"})}}
	case 2:
		return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	}
	return house(g.pick(tierNamespaces))
}

func (g tierGen) nsSelector() metav1.LabelSelector {
	if g.r.IntN(4) == 0 {
		return metav1.LabelSelector{MatchLabels: map[string]string{"env": g.pick([]string{"prod", "dev"})}}
	}
	if g.r.IntN(5) == 0 {
		return metav1.LabelSelector{}
	}
	return house(g.pick(tierNamespaces))
}

func (g tierGen) peer(egress bool) v1beta1.ClusterNetworkPolicyEgressPeer {
	switch n := g.r.IntN(10); {
	case n < 4:
		s := g.nsSelector()
		return v1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: &s}
	case n < 8 || !egress:
		return v1beta1.ClusterNetworkPolicyEgressPeer{Pods: &v1beta1.NamespacedPod{NamespaceSelector: g.nsSelector(), PodSelector: g.selector()}}
	case n == 8:
		return networksPeer(v1beta1.CIDR(g.pick([]string{"198.18.0.0/30", "198.18.0.2/31", "198.18.0.0/15", "2001:db8:1::/126", "2001:db8::/32"})))
	}
	return v1beta1.ClusterNetworkPolicyEgressPeer{} // invalid: fails closed
}

func (g tierGen) protocols() []v1beta1.ClusterNetworkPolicyProtocol {
	switch g.r.IntN(5) {
	case 0, 1:
		return nil
	case 2:
		return []v1beta1.ClusterNetworkPolicyProtocol{cnpTCP(80)}
	case 3:
		return []v1beta1.ClusterNetworkPolicyProtocol{cnpTCPRange(80, 8080), cnpUDP(53)}
	}
	return []v1beta1.ClusterNetworkPolicyProtocol{cnpSCTPRange(9003, 9005), cnpTCP(8081)}
}

func (g tierGen) cnp() *v1beta1.ClusterNetworkPolicy {
	tier := v1beta1.AdminTier
	if g.r.IntN(2) == 0 {
		tier = v1beta1.BaselineTier
	}
	var subj v1beta1.ClusterNetworkPolicySubject
	if g.r.IntN(2) == 0 {
		s := g.nsSelector()
		subj.Namespaces = &s
	} else {
		subj.Pods = &v1beta1.NamespacedPod{NamespaceSelector: g.nsSelector(), PodSelector: g.selector()}
	}
	c := mkCNP(fmt.Sprintf("c%d", g.r.IntN(6)), tier, int32(g.r.IntN(4)), subj)
	actions := []v1beta1.ClusterNetworkPolicyRuleAction{accept, deny, pass}
	for range g.r.IntN(3) {
		cnpIn("", actions[g.r.IntN(3)], g.peer(false), g.protocols()...)(c)
	}
	for range g.r.IntN(3) {
		cnpOut("", actions[g.r.IntN(3)], g.peer(true), g.protocols()...)(c)
	}
	return c
}

func (g tierGen) np() *networkingv1.NetworkPolicy {
	ns := g.pick(tierNamespaces)
	from := ""
	if g.r.IntN(2) == 0 {
		from = g.pick(tierNamespaces)
	}
	np := npAllowingFrom(ns, from)
	np.Name = fmt.Sprintf("np%d", g.r.IntN(2))
	if g.r.IntN(2) == 0 {
		np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "seeker"}}
	}
	return np
}

// step applies one random change to the engine and the world and says what
// it was.
func (g tierGen) step(e *Engine, w *tierWorld) string {
	switch n := g.r.IntN(20); {
	case n < 5:
		c := g.cnp()
		w.cnps[c.Name] = c
		_ = e.UpsertClusterNetworkPolicy(c)
		return "upsert cnp " + c.Name
	case n < 7:
		name := fmt.Sprintf("c%d", g.r.IntN(6))
		delete(w.cnps, name)
		e.DeleteClusterNetworkPolicy(name)
		return "delete cnp " + name
	case n < 9:
		for _, name := range slices.Sorted(maps.Keys(w.cnps)) {
			c := w.cnps[name].DeepCopy()
			c.Spec.Priority = int32(g.r.IntN(4))
			w.cnps[name] = c
			_ = e.UpsertClusterNetworkPolicy(c)
			return fmt.Sprintf("priority of %s to %d", name, c.Spec.Priority)
		}
		return "no cnp to reprioritize"
	case n < 14:
		p := g.pod()
		w.pods[p.Namespace+"/"+p.Name] = p
		_ = e.UpsertPod(p)
		return fmt.Sprintf("upsert pod %s/%s %v %v on %s", p.Namespace, p.Name, p.Labels, p.Status.PodIPs, p.Spec.NodeName)
	case n < 16:
		ns, name := g.pick(tierNamespaces), fmt.Sprintf("p%d", g.r.IntN(3))
		delete(w.pods, ns+"/"+name)
		e.DeletePod(ns, name)
		return "delete pod " + ns + "/" + name
	case n < 18:
		ns := g.namespace()
		w.nss[ns.Name] = ns
		_ = e.UpsertNamespace(ns)
		return fmt.Sprintf("namespace %s labels %v", ns.Name, ns.Labels)
	case n == 18:
		np := g.np()
		w.nps[np.Namespace+"/"+np.Name] = np
		_ = e.UpsertNetworkPolicy(np)
		return "upsert np " + np.Namespace + "/" + np.Name
	}
	ns, name := g.pick(tierNamespaces), fmt.Sprintf("np%d", g.r.IntN(2))
	delete(w.nps, ns+"/"+name)
	e.DeleteNetworkPolicy(ns, name)
	return "delete np " + ns + "/" + name
}

// TestTiersIncrementalMatchesFreshBuild drives random sequences of CNP
// upserts, deletes and priority changes, pod upserts (relabels, moves
// between nodes, address reuse by two live pods), pod deletes, namespace
// relabels and NetworkPolicy changes through one engine, and after every
// step holds (a) its desired state and what the Fake holds against an
// engine built from scratch from the same world (same names, elements and
// rules: incremental changes leave nothing behind and miss nothing), and
// (b) the traced verdict of random flows against Decide. Odd seeds check
// after bursts of one to several steps instead: the class maps of the
// changed groups wait for the Flush (tiers.settle), with pod and namespace
// changes in between.
func TestTiersIncrementalMatchesFreshBuild(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 3
	}
	runTierSequences(t, seeds, 150, newTierWorld, tierGen.step)
}

// TestTiersIncrementalWithLogAuditAndCounters is
// TestTiersIncrementalMatchesFreshBuild with the deny log and counters on,
// and policies (ClusterNetworkPolicies and NetworkPolicies) put in audit
// mode and back (auditStep): the incremental program, its counter and
// limit objects included, equals a fresh build after every step.
func TestTiersIncrementalWithLogAuditAndCounters(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	runTierSequences(t, seeds, 150, func() *tierWorld {
		w := newTierWorld()
		w.cfg = Config{LogDenied: true, LogAllowed: true, Counters: true, LogGroup: 3}
		return w
	}, auditStep)
}

// auditStep is tierGen.step, or one time in five the audit annotation of a
// policy of the world set or cleared (as drawn: the same draw on every node
// gives the same world).
func auditStep(g tierGen, e *Engine, w *tierWorld) string {
	if g.r.IntN(5) > 0 {
		return g.step(e, w)
	}
	audit := g.r.IntN(2) == 0
	var ann map[string]string
	if audit {
		ann = auditAnnotation
	}
	if g.r.IntN(2) == 0 && len(w.cnps) > 0 {
		name := g.pick(slices.Sorted(maps.Keys(w.cnps)))
		c := w.cnps[name].DeepCopy()
		c.Annotations = ann
		w.cnps[name] = c
		_ = e.UpsertClusterNetworkPolicy(c)
		return fmt.Sprintf("cnp %s audit %v", name, audit)
	}
	if len(w.nps) == 0 {
		return g.step(e, w)
	}
	name := g.pick(slices.Sorted(maps.Keys(w.nps)))
	np := w.nps[name].DeepCopy()
	np.Annotations = ann
	w.nps[name] = np
	_ = e.UpsertNetworkPolicy(np)
	return fmt.Sprintf("np %s audit %v", name, audit)
}

// newTierWorld is an empty world of the standard channel.
func newTierWorld() *tierWorld {
	return &tierWorld{nss: map[string]*corev1.Namespace{}, pods: map[string]*corev1.Pod{},
		nps: map[string]*networkingv1.NetworkPolicy{}, cnps: map[string]*v1beta1.ClusterNetworkPolicy{}}
}

// runTierSequences drives seeds random sequences of steps changes (step)
// through the engines of two nodes, from the world newWorld gives, with the
// checks of TestTiersIncrementalMatchesFreshBuild after every step.
func runTierSequences(t *testing.T, seeds, steps int, newWorld func() *tierWorld, step func(tierGen, *Engine, *tierWorld) string) {
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			pcg := rand.NewPCG(uint64(seed), 13)
			r := rand.New(pcg)
			g := tierGen{r}
			w := newWorld()
			nodes := []string{"node-a", "node-b"}
			engines, fakes := map[string]*Engine{}, map[string]*nft.Fake{}
			for _, n := range nodes {
				fakes[n] = nft.NewFake(nft.DefaultTable)
				e, err := New(w.config(n, fakes[n]))
				if err != nil {
					t.Fatal(err)
				}
				w.load(e)
				engines[n] = e
			}
			var log []string
			history := func() string { return strings.Join(log, "\n") }
			burst := rand.New(rand.NewPCG(uint64(seed), 14)) // apart: the same changes as without bursts
			for i := range steps {
				// The same change on both nodes: replay the draw.
				state := *pcg
				for k, n := range nodes {
					if k > 0 {
						*pcg = state
					}
					done := step(g, engines[n], w)
					if k == 0 {
						log = append(log, done)
					}
				}
				if seed%2 == 1 && i < steps-1 && burst.IntN(3) > 0 {
					continue
				}
				for _, n := range nodes {
					checkFreshBuild(t, engines[n], fakes[n], w, n, fmt.Sprintf("step %d", i), history)
				}
				checkRandomFlows(t, engines, fakes, r, 40, history)
			}
		})
	}
}

// checkFreshBuild flushes e and holds its desired state and what the Fake
// holds against an engine of the same node built from scratch from w.
func checkFreshBuild(t *testing.T, e *Engine, fake *nft.Fake, w *tierWorld, node, step string, history func() string) {
	t.Helper()
	if _, err := e.Flush(context.Background()); err != nil {
		t.Fatalf("%s: flush %s: %v", step, node, err)
	}
	fresh, err := New(w.config(node, nil))
	if err != nil {
		t.Fatal(err)
	}
	w.load(fresh)
	got, err := fake.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := fresh.Desired()
	for what, st := range map[string]*nft.State{"programmed": got, "desired": e.Desired()} {
		st = AsNamedIn(st, want)
		if tx := nft.Diff(st, want, nil); !tx.Empty() {
			t.Fatalf("%s, %s: %s state differs from a fresh build (%d operations) after:\n%s\n(-%s +fresh):\n%s",
				step, node, what, tx.Size(), history(), what, cmp.Diff(nft.Render("t", st), nft.Render("t", want)))
		}
	}
}

// checkRandomFlows traces n random flows between the world's addresses
// through every node (each enforces its own pods) and holds them against
// Decide; a flow whose subject address several pods claim
// may be denied where Decide allows (claimants with different subject
// groups are dropped: fail closed, TIERS.md), never the reverse.
func checkRandomFlows(t *testing.T, engines map[string]*Engine, fakes map[string]*nft.Fake, r *rand.Rand, n int, history func() string) {
	t.Helper()
	addrs := append(slices.Clone(tierAddrs), "198.19.0.1", "2001:db8:ff::1")
	protos := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	for range n {
		src := netip.MustParseAddr(addrs[r.IntN(len(addrs))])
		var dst netip.Addr
		for dst = src; dst == src || dst.Is4() != src.Is4(); {
			dst = netip.MustParseAddr(addrs[r.IntN(len(addrs))])
		}
		fl := Flow{Src: src, Dst: dst, Protocol: protos[r.IntN(3)], Port: tierGridPorts[r.IntN(len(tierGridPorts))]}
		d := engines["node-a"].Decide(fl)
		got, path := true, ""
		for _, node := range slices.Sorted(maps.Keys(fakes)) {
			ok, p := TraceFlow(fakes[node], fl)
			got, path = got && ok, path+node+": "+p+"\n"
		}
		if !got && d.Allowed && (len(d.Egress.Claimants) > 1 || len(d.Ingress.Claimants) > 1) {
			continue
		}
		if got != d.Allowed {
			t.Fatalf("%v: traced %v, Decide %v (%s)\npath: %s\nafter:\n%s", fl, got, d.Allowed, d.Reason, path, history())
		}
	}
}
