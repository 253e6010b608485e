// Command demo shows nftwarden at work on one machine, for a newcomer: it starts a
// real kube-apiserver and etcd, simulates two nodes and four pods in two namespaces
// with network namespaces, runs the nftwarden daemon on each node, and prints who can
// reach whom before and after a default-deny policy and an allow policy, followed by
// `nftwarden explain` for two flows, then after an Admin-tier ClusterNetworkPolicy
// that overrides an allow of the namespace's own policy, with the deny log's lines and a
// policy tried in audit mode; then a new pod comes up through the CNI chain
// ptp + host-local + nftwarden-cni (libcni, as a kubelet's runtime runs it) and is
// isolated as policy says from the moment ADD returns, before its status is written.
// Everything is removed at the end, also on Ctrl-C.
//
// Run it through scripts/demo.sh (as root), which builds the control plane first.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/integration/cluster"
)

func main() {
	cluster.Main("demo", run)
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func run() error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the demo creates network namespaces and nftables rules inside them")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Leftovers of an earlier run that was killed hard (SIGKILL) go first.
	if _, err := cluster.RemoveStale(); err != nil {
		return err
	}

	step("Starting etcd and kube-apiserver (built from source by scripts/build-control-plane.sh)")
	start := time.Now()
	cp, err := cluster.StartControlPlane(ctx, cluster.ControlPlaneOptions{})
	if err != nil {
		return err
	}
	defer cp.Stop()
	fmt.Printf("    API server %s ready in %s\n", cp.Host, time.Since(start).Round(100*time.Millisecond))

	step("Building the nftwarden daemon and simulating two nodes (network namespaces on a shared underlay)")
	daemon, err := cluster.DaemonBinary()
	if err != nil {
		return err
	}
	// --log-denied: each connection policy drops is a line in the daemon's output
	// (its log file here), naming the pods and the policy.
	env, err := cluster.NewEnv(ctx, cp, cluster.Options{Nodes: 2, DaemonArgs: []string{"--log-denied"}})
	if err != nil {
		return err
	}
	defer env.Close()
	for _, n := range env.Nodes {
		fmt.Printf("    node %-16s %s  %s\n", n.Name, n.IPv4, n.IPv6)
	}

	// The ClusterNetworkPolicy CRD (network-policy-api, standard channel) goes in
	// before the daemons start, so that they watch the API from the first moment
	// (installed later, they would notice it within their discovery period).
	if err := cp.InstallClusterNetworkPolicyCRD(ctx, cluster.StandardChannel); err != nil {
		return err
	}

	step("Creating namespaces shop and tools, and four pods (each serves TCP 80 \"http\" and TCP 5432 \"postgres\")")
	ports := []cluster.Port{{Name: "http", Port: 80}, {Name: "postgres", Port: 5432}}
	for _, ns := range []string{"shop", "tools"} {
		if err := env.CreateNamespace(ctx, ns, map[string]string{"team": ns}); err != nil {
			return err
		}
	}
	var pods []*cluster.Pod
	for i, spec := range []struct{ ns, name string }{{"shop", "web"}, {"shop", "db"}, {"tools", "debug"}, {"tools", "monitor"}} {
		p, err := env.AddPod(ctx, cluster.PodSpec{Namespace: spec.ns, Name: spec.name, Node: env.Nodes[i%2], Labels: map[string]string{"app": spec.name}, Ports: ports})
		if err != nil {
			return err
		}
		fmt.Printf("    pod %-14s on %-16s %s  %s\n", p, p.Node.Name, p.IPv4, p.IPv6)
		pods = append(pods, p)
	}
	web, db, debug := pods[0], pods[1], pods[2]

	step("Starting `nftwarden run` in each node's network namespace")
	if err := env.StartDaemons(); err != nil {
		return err
	}
	for _, n := range env.Nodes {
		fmt.Printf("    %s: %s run --kubeconfig %s --node-name %s (log: %s)\n", n.Name, daemon, env.DaemonKubeconfig(), n.Name, n.DaemonLog())
	}

	http := cluster.Flow{Port: 80, Protocol: corev1.ProtocolTCP, Family: 4}
	pg := cluster.Flow{Port: 5432, Protocol: corev1.ProtocolTCP, Family: 4}
	open := cluster.NewReachability(pods, true)
	if err := show(ctx, env, "No policy yet: every pod reaches every pod", open, http, pg); err != nil {
		return err
	}

	step("Applying three NetworkPolicies in namespace shop: a default deny and two allows")
	fmt.Print(`    default-deny:  podSelector {}            policyTypes [Ingress]        (nothing gets in)
    db-from-web:   podSelector {app: db}     from {app: web} on port postgres
    web-public:    podSelector {app: web}    from any namespace on port http
`)
	policies := []*networkingv1.NetworkPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default-deny"},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-from-web"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: new(intstr.FromString("postgres"))}},
				}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-public"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: new(intstr.FromString("http"))}},
				}},
			},
		},
	}
	for _, np := range policies {
		if err := env.ApplyPolicy(ctx, np); err != nil {
			return err
		}
	}

	wantHTTP := cluster.NewReachability(pods, true)
	wantHTTP.ExpectIngress(db, false)
	wantPG := cluster.NewReachability(pods, true)
	wantPG.ExpectIngress(web, false)
	wantPG.ExpectIngress(db, false)
	wantPG.Expect(web, db, true)
	if err := show(ctx, env, "With the policies", wantHTTP, http); err != nil {
		return err
	}
	if err := show(ctx, env, "", wantPG, pg); err != nil {
		return err
	}

	step("Asking nftwarden why (nftwarden explain answers from the same model it programs)")
	for _, q := range [][2]*cluster.Pod{{web, db}, {debug, db}} {
		out, err := explain(ctx, daemon, cp.AdminKubeconfig, q[0], q[1], 5432)
		fmt.Printf("\n$ nftwarden explain --from %s --to %s --port 5432/tcp\n%s", q[0], q[1], indent(out))
		if err != nil {
			fmt.Printf("    (explain failed: %v)\n", err)
		}
	}

	step("The deny log (run --log-denied): the daemon of %s wrote a line for each connection it dropped", db.Node.Name)
	printLogLines(db.Node, 2, "verdict=denied", "src="+debug.String(), "dst="+db.String())

	wantAdmin, err := adminTier(ctx, env, cp, pods, wantHTTP, http)
	if err != nil {
		return err
	}
	out, err := explain(ctx, daemon, cp.AdminKubeconfig, debug, web, 80)
	fmt.Printf("\n$ nftwarden explain --from %s --to %s --port 80/tcp\n%s", debug, web, indent(out))
	if err != nil {
		fmt.Printf("    (explain failed: %v)\n", err)
	}

	if err := auditLockdown(ctx, env, debug, wantAdmin, http); err != nil {
		return err
	}

	if err := tamper(ctx, db.Node, daemon); err != nil {
		return err
	}
	if err := show(ctx, env, "", wantPG, pg); err != nil {
		return err
	}

	if err := firstPacket(ctx, env, web, debug, ports); err != nil {
		return err
	}

	// nftwarden lists its table itself: the demo needs no nft binary.
	step("The ruleset the daemon programmed on %s (table inet nftwarden in nft syntax: nftwarden dump)", db.Node.Name)
	out, err = db.Node.DumpKernel(ctx)
	if err != nil {
		fmt.Printf("    (nftwarden dump failed: %v)\n", err)
	} else {
		fmt.Print(indent(out))
	}

	step("Cleaning up: daemons, pods, nodes, network namespaces, control plane")
	return nil
}

// adminTier has a cluster admin write an Admin-tier ClusterNetworkPolicy that
// keeps namespace tools out of namespace shop: web-public, shop's own
// NetworkPolicy, lets every namespace reach web on http, but the Admin tier is
// evaluated first and namespace owners cannot write it (README, "Who may write
// which policy").
func adminTier(ctx context.Context, env *cluster.Env, cp *cluster.ControlPlane, pods []*cluster.Pod, before *cluster.Reachability, http cluster.Flow) (*cluster.Reachability, error) {
	step("A cluster admin adds an Admin-tier ClusterNetworkPolicy: tools may not reach shop, whatever shop's NetworkPolicies allow")
	fmt.Print(`    tools-out-of-shop: tier Admin, priority 10, subject namespaces {team: shop}
                       ingress: Deny from namespaces {team: tools}
`)
	cfg := rest.CopyConfig(cp.Config)
	cfg.ContentType = "application/json" // custom resources are served in JSON only
	client, err := npaclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cnp := &policyv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "tools-out-of-shop"},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{
			Tier:     policyv1beta1.AdminTier,
			Priority: 10,
			Subject:  policyv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "shop"}}},
			Ingress: []policyv1beta1.ClusterNetworkPolicyIngressRule{{
				Name:   "deny-tools",
				Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From:   []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "tools"}}}},
			}},
		},
	}
	if _, err := client.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, cnp, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create clusternetworkpolicy: %w", err)
	}
	want := cluster.NewReachability(pods, true)
	for _, from := range pods {
		for _, to := range pods {
			want.Expect(from, to, before.Allowed(from, to) && !(from.Namespace == "tools" && to.Namespace == "shop"))
		}
	}
	return want, show(ctx, env, "", want, http)
}

// auditLockdown has tools' owner try an egress lockdown in audit mode
// (annotation nftwarden.io/enforcement: audit): nothing changes for the packets,
// and the deny log says what the policy would have dropped.
func auditLockdown(ctx context.Context, env *cluster.Env, debug *cluster.Pod, want *cluster.Reachability, http cluster.Flow) error {
	step("tools' owner tries an egress lockdown in audit mode before it drops anything (annotation nftwarden.io/enforcement: audit)")
	fmt.Print(`    tools-lockdown: podSelector {}  policyTypes [Egress]  (no egress at all), in audit mode
`)
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "tools", Name: "tools-lockdown",
			Annotations: map[string]string{enforcer.EnforcementAnnotation: enforcer.EnforcementAudit}},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
	}
	if err := env.ApplyPolicy(ctx, np); err != nil {
		return err
	}
	// The packets do not change; the daemon logs what would have been dropped.
	deadline := time.Now().Add(20 * time.Second)
	for countLogLines(debug.Node, "verdict=would-deny", "src="+debug.String()) == 0 {
		if _, err := env.ProbeMatrix(ctx, want.Pods, http); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no would-deny line from %s after 20s", debug)
		}
	}
	if err := show(ctx, env, "", want, http); err != nil {
		return err
	}
	fmt.Printf("\n    the daemon of %s logged:\n", debug.Node.Name)
	printLogLines(debug.Node, 2, "verdict=would-deny", "src="+debug.String())
	return nil
}

// logLinesWith returns the lines of the node daemon's output that contain every
// one of parts.
func logLinesWith(n *cluster.Node, parts ...string) []string {
	data, err := os.ReadFile(n.DaemonLog())
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

func countLogLines(n *cluster.Node, parts ...string) int { return len(logLinesWith(n, parts...)) }

// printLogLines prints the first max lines of the node daemon's output that
// contain every one of parts.
func printLogLines(n *cluster.Node, max int, parts ...string) {
	lines := logLinesWith(n, parts...)
	if len(lines) == 0 {
		fmt.Printf("    (no line with %s in %s)\n", strings.Join(parts, " "), n.DaemonLog())
		return
	}
	fmt.Print(indent(strings.Join(lines[:min(max, len(lines))], "\n")))
}

// tamper deletes the node's table behind the daemon's back, as an operator or
// another program could, and shows how soon the daemon restored it and what it
// logged. A second nftwarden process deletes it (`nftwarden cleanup` does
// what `nft delete table inet nftwarden` would), so the demo needs no nft
// binary.
func tamper(ctx context.Context, n *cluster.Node, daemon string) error {
	step("Someone deletes the table on %s (nftwarden cleanup, as nft delete table inet nftwarden would): the daemon sees it and restores it", n.Name)
	start := time.Now()
	if _, err := n.Exec(ctx, daemon, "cleanup"); err != nil {
		return err
	}
	for {
		if _, err := n.DumpKernel(ctx); err == nil {
			break
		}
		if time.Since(start) > 20*time.Second {
			return fmt.Errorf("the table of %s was not restored", n.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("    restored within %s; the daemon's log says:\n", time.Since(start).Round(time.Millisecond))
	log, err := os.ReadFile(n.DaemonLog())
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "repaired the table") {
			fmt.Print(indent(line))
		}
	}
	return nil
}

// show waits until the packets match want (the daemons apply changes asynchronously),
// then prints the observed matrix.
func show(ctx context.Context, env *cluster.Env, title string, want *cluster.Reachability, flows ...cluster.Flow) error {
	if title != "" {
		step("%s", title)
	}
	for _, f := range flows {
		err := env.WaitMatrix(ctx, want, f, 20*time.Second)
		got, perr := env.ProbeMatrix(ctx, want.Pods, f)
		if perr != nil {
			return perr
		}
		fmt.Printf("\n    %s (ok = connects, -- = dropped)\n%s", f, indent(got.Table(want)))
		if err != nil {
			return fmt.Errorf("the packets do not match the expected table: %w\n%s", err, env.Diagnostics(ctx))
		}
	}
	return nil
}

// explain runs `nftwarden explain` for a TCP flow between two pods.
func explain(ctx context.Context, daemon, kubeconfig string, from, to *cluster.Pod, port int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, daemon, "explain", "--kubeconfig", kubeconfig,
		"--from", from.String(), "--to", to.String(), "--port", fmt.Sprintf("%d/tcp", port))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}
