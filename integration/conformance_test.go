package integration

// The upstream NetworkPolicy e2e cases of package conformance, run with real packets:
// one two-node environment holds the nine model pods (x, y, z times a, b, c, spread over
// the nodes by conformance.Model.Node) and is reset between cases (policies deleted,
// labels restored), as upstream reuses its namespaces. Probes go to the primary address
// (IPv4).

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/integration/cluster"
	"github.com/nftwarden/nftwarden/integration/conformance"
)

// packetCluster implements conformance.Cluster over an Env with running daemons.
type packetCluster struct {
	env  *cluster.Env
	m    *conformance.Model
	pods map[conformance.PodRef]*cluster.Pod
}

var _ conformance.Cluster = (*packetCluster)(nil)

func (c *packetCluster) PodIPs(p conformance.PodRef) ([]netip.Addr, error) {
	pod, ok := c.pods[p]
	if !ok {
		return nil, fmt.Errorf("no pod %s", p)
	}
	return []netip.Addr{pod.IPv4, pod.IPv6}, nil
}

// Apply makes the changes in the API server and returns; the daemons converge
// asynchronously, which the runner's retries (Attempts, RetryDelay) wait for.
func (c *packetCluster) Apply(ctx context.Context, actions []conformance.Action) error {
	for _, a := range actions {
		var err error
		switch a.Kind {
		case conformance.CreatePolicy, conformance.UpdatePolicy:
			np := a.Policy.DeepCopy()
			if np.Namespace == "" {
				np.Namespace = a.Namespace
			}
			err = c.env.ApplyPolicy(ctx, np)
		case conformance.DeletePolicy:
			err = c.env.DeletePolicy(ctx, a.Namespace, a.Name)
		case conformance.DeleteAllPolicies:
			err = c.deleteAllPolicies(ctx)
		case conformance.SetPodLabels:
			pod, ok := c.pods[conformance.PodRef{Namespace: a.Namespace, Name: a.Name}]
			if !ok {
				return fmt.Errorf("%v: no such pod", a)
			}
			err = c.env.SetPodLabels(ctx, pod, a.Labels)
		case conformance.SetNamespaceLabels:
			l := maps.Clone(a.Labels)
			if l == nil {
				l = map[string]string{}
			}
			l[corev1.LabelMetadataName] = a.Namespace
			err = c.env.SetNamespaceLabels(ctx, a.Namespace, l)
		default:
			return fmt.Errorf("unknown action %v", a)
		}
		if err != nil {
			return fmt.Errorf("%v: %w", a, err)
		}
	}
	return nil
}

func (c *packetCluster) Probe(ctx context.Context, from, to conformance.PodRef, port int, proto corev1.Protocol) (bool, error) {
	a, b := c.pods[from], c.pods[to]
	if a == nil || b == nil {
		return false, fmt.Errorf("probe %s -> %s: unknown pod", from, to)
	}
	return c.env.Probe(ctx, a, b, cluster.Flow{Port: uint16(port), Protocol: proto, Family: 4})
}

func (c *packetCluster) deleteAllPolicies(ctx context.Context) error {
	for _, ns := range c.m.Namespaces() {
		list, err := c.env.CP.Client.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list policies of %s: %w", ns, err)
		}
		for _, np := range list.Items {
			if err := c.env.DeletePolicy(ctx, ns, np.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// reset brings the cluster back to the start state of every case: no policy, default
// labels on pods and namespaces.
func (c *packetCluster) reset(ctx context.Context) error {
	if err := c.deleteAllPolicies(ctx); err != nil {
		return err
	}
	for _, ns := range c.m.Namespaces() {
		if err := c.env.SetNamespaceLabels(ctx, ns, c.m.DefaultNamespaceLabels(ns)); err != nil {
			return err
		}
	}
	for ref, pod := range c.pods {
		if err := c.env.SetPodLabels(ctx, pod, conformance.DefaultPodLabels(ref.Name)); err != nil {
			return err
		}
	}
	return nil
}

func TestIntegrationConformance(t *testing.T) {
	cases := conformance.UpstreamCases()
	if filter := os.Getenv("CONFORMANCE_RUN"); filter != "" {
		var keep []conformance.Case
		for _, c := range cases {
			if strings.Contains(c.Name, filter) {
				keep = append(keep, c)
			}
		}
		cases = keep
	}
	env := newEnv(t, cluster.Options{Nodes: 2})
	ctx := testCtx(t)
	full, err := conformance.NewModel(suffix(env), nil)
	must(t, err)
	pc := &packetCluster{env: env, m: full, pods: map[conformance.PodRef]*cluster.Pod{}}
	for _, ns := range full.Namespaces() {
		must(t, env.CreateNamespace(ctx, ns, full.DefaultNamespaceLabels(ns)))
	}
	var ports []cluster.Port
	for _, cp := range conformance.ContainerPorts() {
		ports = append(ports, cluster.Port{Name: cp.Name, Port: uint16(cp.ContainerPort), Protocol: cp.Protocol})
	}
	for _, ref := range full.Pods {
		p, err := env.AddPod(ctx, cluster.PodSpec{Namespace: ref.Namespace, Name: ref.Name, Node: env.Nodes[full.Node(ref)],
			Labels: conformance.DefaultPodLabels(ref.Name), Ports: ports})
		must(t, err)
		pc.pods[ref] = p
	}
	startDaemons(t, env)
	var allPods []*cluster.Pod
	for _, ref := range full.Pods {
		allPods = append(allPods, pc.pods[ref])
	}

	var sum conformance.Summary
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			must(t, pc.reset(cctx))
			// The reset must be enforced before the case starts, or a case could pass
			// on the previous case's rules. An open matrix costs no timeouts.
			must(t, env.WaitMatrix(cctx, cluster.NewReachability(allPods, true), tcp80v4, converge))
			m, err := conformance.NewModel(suffix(env), c.Pods)
			must(t, err)
			res := conformance.RunCase(cctx, pc, m, c, nil, conformance.RunOptions{
				Workers:    48,
				Attempts:   int(converge / (500 * time.Millisecond)),
				RetryDelay: 500 * time.Millisecond,
				Repro:      fmt.Sprintf("cd integration && CONFORMANCE_RUN=%q go test -run TestIntegrationConformance .", c.Name),
			})
			sum.Add(res)
			if !res.Passed() {
				t.Error(res.Report())
			}
		})
	}
	var b strings.Builder
	if err := sum.Write(&b); err == nil {
		t.Logf("conformance summary:\n%s", b.String())
	}
}
