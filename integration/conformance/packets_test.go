package conformance

// IP plan of the packet runs (package cluster): node i has 198.18.0.(i+1) and
// 2001:db8::(i+1) on the underlay; its pods get 198.18.(16+i).n and
// 2001:db8:1:i::n. Eleven dual-stack pods x/a ... z/c, w/a and w/b alternate
// between two nodes (Model.Node) and serve ports 80 and 81 and HousePorts on
// TCP, UDP and SCTP. One environment serves all cases of a variant; between
// cases every policy and every ClusterNetworkPolicy is deleted and every label
// restored. The ClusterNetworkPolicy CRD (standard channel) is installed for
// the whole test and removed at its end; after the standard variants the
// experimental CRD replaces it for the experimental-<variant> runs (routed
// ones only), on fresh environments with experimental daemons and a server
// on NodeServerPorts in each node's own network namespace (NodeAddrs are
// the underlay addresses above).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

func TestMain(m *testing.M) {
	stop := cluster.HandleSignals()
	code := m.Run()
	cluster.CleanupAll()
	stop()
	os.Exit(code)
}

// packetCluster implements Cluster over package cluster: API writes for
// actions, real connections for probes.
type packetCluster struct {
	env    *cluster.Env
	npa    npaclient.Interface // ClusterNetworkPolicy, typed
	m      *Model
	family int // family of the primary address: 4 or 6
	pods   map[PodRef]*cluster.Pod

	policies  map[string][2]string // live policies, "ns/name" -> {ns, name}
	podLabels map[PodRef]map[string]string
	nsLabels  map[string]map[string]string
}

var _ Cluster = (*packetCluster)(nil)

// packetPods are the pods of a packet environment: the nine of x, y, z and the
// ones of w the ported ClusterNetworkPolicy cases use.
var packetPods = func() []string {
	var pods []string
	for _, ns := range ModelNamespaces {
		for _, p := range ModelPods {
			pods = append(pods, ns+"/"+p)
		}
	}
	return append(pods, HouseNamespace+"/a", HouseNamespace+"/b")
}()

// newPacketCluster creates the namespaces and packetPods on env.
func newPacketCluster(ctx context.Context, env *cluster.Env, npa npaclient.Interface, family int) (*packetCluster, error) {
	m, err := NewModel(strings.TrimPrefix(env.Name(""), "-"), packetPods)
	if err != nil {
		return nil, err
	}
	c := &packetCluster{env: env, npa: npa, m: m, family: family, pods: map[PodRef]*cluster.Pod{},
		policies: map[string][2]string{}, podLabels: map[PodRef]map[string]string{}, nsLabels: map[string]map[string]string{}}
	for _, ns := range m.Namespaces() {
		c.nsLabels[ns] = m.DefaultNamespaceLabels(ns)
		if err := env.CreateNamespace(ctx, ns, c.nsLabels[ns]); err != nil {
			return nil, err
		}
	}
	var ports []cluster.Port
	for _, cp := range ContainerPorts() {
		ports = append(ports, cluster.Port{Name: cp.Name, Port: uint16(cp.ContainerPort), Protocol: cp.Protocol})
	}
	for _, ref := range m.Pods {
		c.podLabels[ref] = DefaultPodLabels(ref.Name)
		p, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ref.Namespace, Name: ref.Name, Node: env.Nodes[m.Node(ref)],
			Labels: c.podLabels[ref], Ports: ports})
		if err != nil {
			return nil, err
		}
		c.pods[ref] = p
	}
	return c, nil
}

func (c *packetCluster) PodIPs(p PodRef) ([]netip.Addr, error) {
	pod, ok := c.pods[p]
	if !ok {
		return nil, fmt.Errorf("pod %s is not part of the environment", p)
	}
	if c.family == 6 {
		return []netip.Addr{pod.IPv6, pod.IPv4}, nil
	}
	return []netip.Addr{pod.IPv4, pod.IPv6}, nil
}

// Apply writes the actions to the API server. The daemons converge
// asynchronously; RunCase's retries wait for them.
func (c *packetCluster) Apply(ctx context.Context, actions []Action) error {
	for _, a := range actions {
		var err error
		switch a.Kind {
		case CreatePolicy, UpdatePolicy:
			key := a.Policy.Namespace + "/" + a.Policy.Name
			if err = c.env.ApplyPolicy(ctx, a.Policy.DeepCopy()); err == nil {
				c.policies[key] = [2]string{a.Policy.Namespace, a.Policy.Name}
			}
		case DeletePolicy:
			if err = c.env.DeletePolicy(ctx, a.Namespace, a.Name); err == nil {
				delete(c.policies, a.Namespace+"/"+a.Name)
			}
		case CreateClusterPolicy:
			_, err = c.npa.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, a.ClusterPolicy.DeepCopy(), metav1.CreateOptions{})
		case UpdateClusterPolicy:
			err = c.updateClusterPolicy(ctx, a)
		case DeleteClusterPolicy:
			err = c.npa.PolicyV1beta1().ClusterNetworkPolicies().Delete(ctx, a.Name, metav1.DeleteOptions{})
		case DeleteAllPolicies:
			err = c.deleteAllPolicies(ctx)
		case SetPodLabels:
			ref := PodRef{Namespace: a.Namespace, Name: a.Name}
			pod, ok := c.pods[ref]
			if !ok {
				return fmt.Errorf("%s: no such pod", a)
			}
			if err = c.env.SetPodLabels(ctx, pod, a.Labels); err == nil {
				c.podLabels[ref] = maps.Clone(a.Labels)
			}
		case SetNamespaceLabels:
			l := KubeNamespace(a.Namespace, a.Labels).Labels
			if err = c.env.SetNamespaceLabels(ctx, a.Namespace, l); err == nil {
				c.nsLabels[a.Namespace] = l
			}
		default:
			err = fmt.Errorf("unknown action kind %q", a.Kind)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
	}
	return nil
}

// updateClusterPolicy replaces the spec of a ClusterNetworkPolicy, as
// upstream's PatchClusterNetworkPolicy does.
func (c *packetCluster) updateClusterPolicy(ctx context.Context, a Action) error {
	cnps := c.npa.PolicyV1beta1().ClusterNetworkPolicies()
	cur, err := cnps.Get(ctx, a.ClusterPolicy.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cur.Spec = *a.ClusterPolicy.Spec.DeepCopy()
	_, err = cnps.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// deleteAllPolicies deletes the environment's policies and every
// ClusterNetworkPolicy of the API server (they are cluster-scoped: one left by
// an earlier case or variant would select this one's pods).
func (c *packetCluster) deleteAllPolicies(ctx context.Context) error {
	for _, key := range slices.Sorted(maps.Keys(c.policies)) {
		p := c.policies[key]
		if err := c.env.DeletePolicy(ctx, p[0], p[1]); err != nil {
			return err
		}
		delete(c.policies, key)
	}
	err := c.npa.PolicyV1beta1().ClusterNetworkPolicies().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("delete cluster network policies: %w", err)
	}
	return nil
}

// reset brings the environment back to the start state of a case.
func (c *packetCluster) reset(ctx context.Context) error {
	if err := c.deleteAllPolicies(ctx); err != nil {
		return err
	}
	var errs []error
	for _, ref := range c.m.Pods {
		if def := DefaultPodLabels(ref.Name); !maps.Equal(c.podLabels[ref], def) {
			errs = append(errs, c.Apply(ctx, []Action{PodLabels(ref, def)}))
		}
	}
	for _, ns := range c.m.Namespaces() {
		if def := c.m.DefaultNamespaceLabels(ns); !maps.Equal(c.nsLabels[ns], def) {
			errs = append(errs, c.Apply(ctx, []Action{NamespaceLabels(ns, def)}))
		}
	}
	return errors.Join(errs...)
}

func (c *packetCluster) Probe(ctx context.Context, from, to PodRef, port int, proto corev1.Protocol) (bool, error) {
	a, b := c.pods[from], c.pods[to]
	if a == nil || b == nil {
		return false, fmt.Errorf("probe %s -> %s: unknown pod", from, to)
	}
	return c.env.Probe(ctx, a, b, cluster.Flow{Port: uint16(port), Protocol: proto, Family: c.family})
}

// ProbeNode implements Cluster: a probe of the node's address of the primary
// family, which only the node's own server may answer.
func (c *packetCluster) ProbeNode(ctx context.Context, from PodRef, node, port int, proto corev1.Protocol) (bool, error) {
	a := c.pods[from]
	if a == nil || node < 0 || node >= len(c.env.Nodes) {
		return false, fmt.Errorf("probe %s -> node %d: unknown pod or node", from, node)
	}
	n := c.env.Nodes[node]
	addr := n.IPv4
	if c.family == 6 {
		addr = n.IPv6
	}
	r, err := c.env.ProbeAddr(ctx, a, addr, uint16(port), proto)
	if err != nil {
		return false, err
	}
	if r.Reachable && r.Peer != "host/"+n.Name {
		return false, fmt.Errorf("probe %s -> %s (%s/%d) answered by %q", from, addr, proto, port, r.Peer)
	}
	return r.Reachable, nil
}

// startNodeServers runs a server on NodeServerPorts in each node's own
// network namespace (stopped when the test ends), and waits until a pod of
// the other node reaches every one of them: a denied node poke must mean a
// policy, not a server that is not up.
func (c *packetCluster) startNodeServers(ctx context.Context, t *testing.T) error {
	var ports []cluster.Port
	for _, proto := range ModelProtocols {
		for _, p := range NodeServerPorts[proto] {
			ports = append(ports, cluster.Port{Port: uint16(p), Protocol: proto})
		}
	}
	for i, n := range c.env.Nodes {
		stop, err := n.StartHostServer(ports...)
		if err != nil {
			return err
		}
		t.Cleanup(stop)
		from := c.m.Pods[slices.IndexFunc(c.m.Pods, func(p PodRef) bool { return c.m.Node(p) != i })]
		for _, p := range ports {
			np := NodePoke{From: from, Node: i, Port: int(p.Port), Protocol: p.Protocol, Allowed: true}
			if err := pokeNode(ctx, c, np, RunOptions{Attempts: 20, RetryDelay: 250 * time.Millisecond}); err != nil {
				return fmt.Errorf("node server of %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

type packetVariant struct {
	name    string
	family  int
	bridged bool
}

// packetVariants reads NFTW_CONFORMANCE: "ipv4" (or "1") the routed IPv4 run,
// "all" also IPv6 and the bridged variant, or a comma-separated list of
// ipv4, ipv6, bridged.
func packetVariants(sel string) []packetVariant {
	all := []packetVariant{{"ipv4", 4, false}, {"ipv6", 6, false}, {"bridged", 4, true}}
	switch sel {
	case "all":
		return all
	case "1", "true":
		return all[:1]
	}
	var out []packetVariant
	for _, name := range strings.Split(sel, ",") {
		for _, v := range all {
			if v.name == strings.TrimSpace(name) {
				out = append(out, v)
			}
		}
	}
	return out
}

// TestConformancePackets runs the ported upstream cases (NetworkPolicy e2e,
// nftwarden's named-port-to-ipBlock cases, and the network-policy-api
// ClusterNetworkPolicy cases) with real packets between network namespaces,
// nftwarden daemons on two nodes and a real API server. It needs root,
// scripts/build-control-plane.sh, and NFTW_CONFORMANCE=ipv4|all|<list> (it
// takes minutes). Generated cases run too when NFTW_CONFORMANCE_GENERATED=<n>
// is set.
func TestConformancePackets(t *testing.T) {
	sel := os.Getenv("NFTW_CONFORMANCE")
	if sel == "" {
		t.Skip("packet conformance is opt-in: set NFTW_CONFORMANCE=ipv4 (or all)")
	}
	if os.Geteuid() != 0 {
		t.Skip("packet conformance needs root (network namespaces, nftables)")
	}
	variants := packetVariants(sel)
	if len(variants) == 0 {
		t.Fatalf("NFTW_CONFORMANCE=%q selects no variant (ipv4, ipv6, bridged, all)", sel)
	}
	cases := append(UpstreamCases(), NamedPortIPBlockCases()...)
	cases = append(cases, UpstreamCNPCases()...)
	if n := os.Getenv("NFTW_CONFORMANCE_GENERATED"); n != "" {
		var count int
		if _, err := fmt.Sscan(n, &count); err != nil {
			t.Fatalf("NFTW_CONFORMANCE_GENERATED=%q: %v", n, err)
		}
		cases = append(cases, Generate(*flagSeed, count)...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	cp, err := cluster.StartControlPlane(ctx, cluster.ControlPlaneOptions{})
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	t.Cleanup(cp.Stop)
	if err := cp.InstallClusterNetworkPolicyCRD(ctx, cluster.StandardChannel); err != nil {
		t.Fatalf("ClusterNetworkPolicy CRD: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.RemoveClusterNetworkPolicyCRD(context.Background()); err != nil {
			t.Errorf("remove ClusterNetworkPolicy CRD: %v", err)
		}
	})
	// CRDs speak JSON only: the admin config's protobuf default is replaced.
	npaConfig := rest.CopyConfig(cp.Config)
	npaConfig.ContentType = "application/json"
	npa, err := npaclient.NewForConfig(npaConfig)
	if err != nil {
		t.Fatalf("ClusterNetworkPolicy client: %v", err)
	}

	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) { runPacketVariant(ctx, t, cp, npa, v, cases, false) })
	}

	// The experimental channel (upstream_cnp_experimental.go): its CRD replaces
	// the standard one, the daemons' role gains rbac-node-peers.yaml, and each
	// routed variant runs again with experimental daemons and servers in the
	// nodes' own network namespaces.
	var routed []packetVariant
	for _, v := range variants {
		if !v.bridged {
			routed = append(routed, v)
		}
	}
	if len(routed) == 0 {
		return
	}
	if err := cp.InstallClusterNetworkPolicyCRD(ctx, cluster.ExperimentalChannel); err != nil {
		t.Fatalf("ClusterNetworkPolicy CRD (experimental): %v", err)
	}
	if _, err := cp.ApplyDaemonNodePeersRBAC(ctx); err != nil {
		t.Fatalf("node-peers RBAC: %v", err)
	}
	for _, v := range routed {
		t.Run("experimental-"+v.name, func(t *testing.T) {
			runPacketVariant(ctx, t, cp, npa, v, UpstreamCNPExperimentalCases(), true)
		})
	}
}

// runPacketVariant runs cases on a fresh two-node environment of variant v.
// Experimental runs start the daemons with --cluster-network-policy=experimental
// and a server on NodeServerPorts in each node's own network namespace, for
// the node pokes.
func runPacketVariant(ctx context.Context, t *testing.T, cp *cluster.ControlPlane, npa npaclient.Interface, v packetVariant, cases []Case, experimental bool) {
	opts := cluster.Options{Nodes: 2, Bridged: v.bridged, ProbeTimeout: 750 * time.Millisecond}
	if experimental {
		opts.DaemonArgs = []string{"--cluster-network-policy", "experimental"}
	}
	env := cluster.StartForTest(t, cp, opts)
	pc, err := newPacketCluster(ctx, env, npa, v.family)
	if err != nil {
		t.Fatalf("pods: %v", err)
	}
	if experimental {
		if err := pc.startNodeServers(ctx, t); err != nil {
			t.Fatalf("node servers: %v", err)
		}
	}
	run := t.Name()
	if err := env.StartDaemons(); err != nil {
		t.Fatalf("daemons: %v", err)
	}
	var sum Summary
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if err := pc.reset(ctx); err != nil {
				t.Fatalf("reset: %v", err)
			}
			// Wait until the reset is enforced, so a stale ruleset cannot
			// pass (or fail) the next case's first probe.
			settled := Case{Name: "reset", Steps: func(e *Env) []Step {
				return steps(Step{Probes: probes(probe(80, tcp, e.Reach()), probe(81, udp, e.Reach()))})
			}}
			if res := RunCase(ctx, pc, pc.m, settled, nil, RunOptions{Workers: 24, Attempts: 50, RetryDelay: 300 * time.Millisecond}); !res.Passed() {
				t.Fatalf("cluster did not return to all-allowed after reset:\n%s", res.Report())
			}
			// The case sees its own pods; the others exist but are not probed.
			m, err := NewModel(strings.TrimPrefix(env.Name(""), "-"), c.Pods)
			if err != nil {
				t.Fatal(err)
			}
			// Generated cases take their expectations from a model-only
			// engine that follows the same actions.
			ips := map[PodRef][]netip.Addr{}
			for _, p := range pc.m.Pods {
				ips[p], _ = pc.PodIPs(p)
			}
			oracle, err := NewOracle(pc.m, ips, func(p PodRef) string { return pc.pods[p].Node.Name })
			if err != nil {
				t.Fatal(err)
			}
			record(t, &sum, RunCase(ctx, pc, m, c, oracle, RunOptions{
				Workers: 24, Attempts: 30, RetryDelay: 300 * time.Millisecond,
				Repro: fmt.Sprintf("NFTW_CONFORMANCE=%s go test ./conformance -run '%s/%s' -v", v.name, run, testNamePattern(c.Name)),
			}))
		})
	}
	printSummary(t, &sum, t.Name())
}
