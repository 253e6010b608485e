package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// peerProbe is one peer the first-packet step probes the new pod from, and what
// shop's policies say of it.
type peerProbe struct {
	role string // "allowed" or "denied", as the output names it
	from *cluster.Pod
	want bool
}

// firstPacket brings a new pod of shop up as a kubelet's runtime does, through the
// CNI chain ptp + host-local + nftwarden-cni run with libcni, and probes it from an
// allowed and a denied peer on its node the moment ADD returns. The daemon otherwise
// learns a pod's IP from the status the kubelet writes after ADD; here the status is
// held back until the probes are done, so what they find is what nftwarden-cni had
// the daemon put in the kernel before it returned. Then the status is written and
// the probes find the same.
func firstPacket(ctx context.Context, env *cluster.Env, allowed, denied *cluster.Pod, ports []cluster.Port) error {
	node := allowed.Node
	step("A new pod shop/db-2 {app: db} comes up on %s through the CNI chain ptp + host-local + nftwarden-cni (run with libcni, as the kubelet's runtime does); its status is not written yet", node.Name)
	p, err := env.AddCNIPod(ctx,
		cluster.PodSpec{Namespace: "shop", Name: "db-2", Node: node, Labels: map[string]string{"app": "db"}, Ports: ports},
		cluster.CNIPodOptions{Plugin: true, NoStatus: true})
	if err != nil {
		return err
	}
	pg := cluster.Flow{Port: 5432, Protocol: corev1.ProtocolTCP, Family: 4}
	peers := []peerProbe{{"allowed", allowed, true}, {"denied", denied, false}}
	got, fired, err := probeAtOnce(ctx, env, p, pg, peers)
	if err != nil {
		return err
	}
	// Read after the probes: the status was not there while they ran.
	obj, err := env.CP.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get pod %s: %w", p, err)
	}
	if obj.Status.PodIP != "" || len(obj.Status.PodIPs) > 0 {
		return fmt.Errorf("pod %s has addresses in the API (%v) before its status was written", p, obj.Status.PodIPs)
	}
	fmt.Printf("    ADD took %s and gave the pod %s and %s\n", p.AddTook.Round(100*time.Microsecond), p.IPv4, p.IPv6)
	fmt.Printf("    probes to %s fired %s after ADD returned, the pod's status (its IP in the API) not even written yet (phase %s, no IP):\n",
		pg, fired.Round(10*time.Microsecond), obj.Status.Phase)
	if err := printProbes(ctx, env, peers, got); err != nil {
		return err
	}

	// The kubelet reports: the API now lists the addresses the plugin gave, and the
	// daemon's table already holds everything the API asks of it.
	if err := p.WriteStatus(ctx); err != nil {
		return err
	}
	if err := node.WaitConverged(ctx, 20*time.Second); err != nil {
		return err
	}
	fmt.Printf("    status written (Running, its IPs in the API), %s's table matches what the API now says; probed again, nothing changed:\n", node.Name)
	if got, _, err = probeAtOnce(ctx, env, p, pg, peers); err != nil {
		return err
	}
	return printProbes(ctx, env, peers, got)
}

// probeAtOnce probes f to the pod from every peer at the same time and returns
// whether each reached it, and the time from ADD's return to the last probe's
// start.
func probeAtOnce(ctx context.Context, env *cluster.Env, to *cluster.CNIPod, f cluster.Flow, peers []peerProbe) (reached []bool, fired time.Duration, err error) {
	reached = make([]bool, len(peers))
	errs := make([]error, len(peers))
	starts := make([]time.Duration, len(peers))
	var wg sync.WaitGroup
	for i, peer := range peers {
		wg.Go(func() {
			starts[i] = time.Since(to.Added)
			reached[i], errs[i] = env.Probe(ctx, peer.from, to.Pod, f)
		})
	}
	wg.Wait()
	for i := range peers {
		if errs[i] != nil {
			return nil, 0, errs[i]
		}
		fired = max(fired, starts[i])
	}
	return reached, fired, nil
}

// printProbes prints one line of results and fails if a peer was not treated as
// shop's policies say.
func printProbes(ctx context.Context, env *cluster.Env, peers []peerProbe, reached []bool) error {
	var parts, wrong []string
	for i, peer := range peers {
		verdict := map[bool]string{true: "reached", false: "dropped"}[reached[i]]
		parts = append(parts, fmt.Sprintf("%s peer %s: %s", peer.role, peer.from, verdict))
		if reached[i] != peer.want {
			wrong = append(wrong, fmt.Sprintf("%s peer %s was %s", peer.role, peer.from, verdict))
		}
	}
	fmt.Printf("      %s\n", strings.Join(parts, "    "))
	if len(wrong) > 0 {
		return fmt.Errorf("the new pod is not isolated as shop's policies say: %s\n%s", strings.Join(wrong, ", "), env.Diagnostics(ctx))
	}
	return nil
}
