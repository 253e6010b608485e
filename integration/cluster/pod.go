package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxPodAddrs is how many address pairs of a node's ranges Node.PodAddrs hands out:
// .254 and ::fffe are the bridge gateway of the bridged variant.
const maxPodAddrs = 250

// PodCIDRv4 is the node's IPv4 pod range, 198.18.(16+Index).0/24.
func (n *Node) PodCIDRv4() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(16 + n.Index), 0}), 24)
}

// PodCIDRv6 is the node's IPv6 pod range, 2001:db8:1:<Index>::/64.
func (n *Node) PodCIDRv6() netip.Prefix {
	return netip.PrefixFrom(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:%x::", n.Index)), 64)
}

// PodAddrs returns the k-th address pair of the node's pod ranges (1 <= k <= 250):
// 198.18.(16+Index).k and 2001:db8:1:<Index>::k. AddPod and AddAPIPod without chosen
// addresses take k = 1, 2, ... in order; a test that chooses addresses itself should
// take them from the top (k near 250) so that the two never meet. Any other k is a bug
// in the test: it panics.
func (n *Node) PodAddrs(k int) (ipv4, ipv6 netip.Addr) {
	if k < 1 || k > maxPodAddrs {
		panic(fmt.Sprintf("Node.PodAddrs(%d): want 1 <= k <= %d", k, maxPodAddrs))
	}
	v4 := n.PodCIDRv4().Addr().As4()
	v4[3] = byte(k)
	v6 := n.PodCIDRv6().Addr().As16()
	v6[14], v6[15] = byte(k>>8), byte(k)
	return netip.AddrFrom4(v4), netip.AddrFrom16(v6)
}

// maxUnrouted is how many address pairs UnroutedAddrs has.
const maxUnrouted = 8190

// UnroutedAddrs returns the i-th address pair (0 <= i < 8190) of ranges that no node
// routes: 198.18.224.0/19 and 2001:db8:ff::/64. They are for API-only pods that only
// need to exist in the API (peer sets with thousands of members): packets to them go
// nowhere. Any other i is a bug in the test: it panics.
func UnroutedAddrs(i int) (ipv4, ipv6 netip.Addr) {
	if i < 0 || i >= maxUnrouted {
		panic(fmt.Sprintf("cluster.UnroutedAddrs(%d): want 0 <= i < %d", i, maxUnrouted))
	}
	n := i + 1
	v4 := netip.AddrFrom4([4]byte{198, 18, byte(224 + n>>8), byte(n)})
	v6 := netip.MustParseAddr("2001:db8:ff::").As16()
	v6[14], v6[15] = byte(n>>8), byte(n)
	return v4, netip.AddrFrom16(v6)
}

// APIOnly reports whether the pod exists only in the API server (AddAPIPod): no
// network namespace, no agent, so it cannot send or answer probes.
func (p *Pod) APIOnly() bool { return p.Netns == "" }

// newPod resolves the node and addresses of spec and builds its Pod object (container
// ports included, for named-port policies).
func (e *Env) newPod(spec PodSpec) (*Pod, *corev1.Pod, error) {
	n := spec.Node
	if n == nil {
		n = e.Nodes[0]
	}
	p := &Pod{Namespace: spec.Namespace, Name: spec.Name, Node: n, IPv4: spec.IPv4, IPv6: spec.IPv6, Ports: spec.Ports}
	if !p.IPv4.IsValid() && !p.IPv6.IsValid() {
		e.mu.Lock()
		limit := maxPodAddrs
		if n.cniUsed { // the top of the range is host-local's (cniconf.go)
			limit = cniFirstHost - 1
		}
		if n.nextPod >= limit {
			e.mu.Unlock()
			return nil, nil, fmt.Errorf("pod %s: node %s has no pod addresses left", p, n.Name)
		}
		n.nextPod++
		k := n.nextPod
		e.mu.Unlock()
		p.IPv4, p.IPv6 = n.PodAddrs(k)
	}
	obj, err := podObject(spec, n)
	if err != nil {
		return nil, nil, fmt.Errorf("pod %s: %w", p, err)
	}
	return p, obj, nil
}

// podObject builds the Pod object of spec on node n, scheduled and pending (no
// status), with its container ports (for named-port policies).
func podObject(spec PodSpec, n *Node) (*corev1.Pod, error) {
	var containerPorts []corev1.ContainerPort
	for _, port := range spec.Ports {
		proto := port.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		switch proto {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			return nil, fmt.Errorf("unknown protocol %q", proto)
		}
		containerPorts = append(containerPorts, corev1.ContainerPort{Name: port.Name, ContainerPort: int32(port.Port), Protocol: proto})
	}
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name, Labels: spec.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      n.Name,
			AutomountServiceAccountToken:  new(bool),
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name:  "agent",
				Image: "nftwarden.invalid/podagent",
				Ports: containerPorts,
			}},
		},
	}
	return obj, nil
}

// createPod writes the Pod object (spec.nodeName set, like a scheduled pod) and
// remembers p for DeletePod and Close.
func (e *Env) createPod(ctx context.Context, p *Pod, obj *corev1.Pod) (*corev1.Pod, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	created, err := e.CP.Client.CoreV1().Pods(p.Namespace).Create(actx, obj, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s: %w", p, err)
	}
	e.mu.Lock()
	e.pods = append(e.pods, p)
	e.mu.Unlock()
	return created, nil
}

// writeRunning writes the status a kubelet writes once the pod runs: Running, ready,
// with the pod's addresses, through the pods/status subresource.
func (e *Env) writeRunning(ctx context.Context, p *Pod, created *corev1.Pod) error {
	now := metav1.Now()
	n := p.Node
	created.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    n.IPv4.String(),
		HostIPs:   []corev1.HostIP{{IP: n.IPv4.String()}, {IP: n.IPv6.String()}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	for _, a := range []netip.Addr{p.IPv4, p.IPv6} {
		if a.IsValid() {
			created.Status.PodIPs = append(created.Status.PodIPs, corev1.PodIP{IP: a.String()})
		}
	}
	created.Status.PodIP = created.Status.PodIPs[0].IP
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if _, err := e.CP.Client.CoreV1().Pods(p.Namespace).UpdateStatus(actx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod status %s: %w", p, err)
	}
	return nil
}

// AddAPIPod creates a pod that exists only in the API server: a Pod object on
// spec.Node with status Running and the addresses of spec (the node's next free pair
// if both are zero), as a kubelet would report it, but no network namespace and no
// agent. It makes churn and large peer sets cheap. Safe for concurrent use.
func (e *Env) AddAPIPod(ctx context.Context, spec PodSpec) (*Pod, error) {
	p, obj, err := e.newPod(spec)
	if err != nil {
		return nil, err
	}
	created, err := e.createPod(ctx, p, obj)
	if err != nil {
		return nil, err
	}
	if err := e.writeRunning(ctx, p, created); err != nil {
		_ = e.DeletePod(context.Background(), p)
		return nil, err
	}
	return p, nil
}

// AddPod creates a pod with a network namespace: it builds the namespace, wires it to
// its node, starts its podagent on its ports, creates the Pod object (spec.nodeName
// set, like a scheduled pod) and writes its status (Running, podIP, podIPs) the way a
// kubelet would. Its addresses are spec's (both from the node's ranges) or the node's
// next free pair.
func (e *Env) AddPod(ctx context.Context, spec PodSpec) (*Pod, error) {
	if spec.IPv4.IsValid() || spec.IPv6.IsValid() {
		n := spec.Node
		if n == nil {
			n = e.Nodes[0]
		}
		if !n.PodCIDRv4().Contains(spec.IPv4) || !n.PodCIDRv6().Contains(spec.IPv6) {
			return nil, fmt.Errorf("pod %s/%s: addresses %s and %s must both be in node %s's ranges %s and %s (pods are routed per node)",
				spec.Namespace, spec.Name, spec.IPv4, spec.IPv6, n.Name, n.PodCIDRv4(), n.PodCIDRv6())
		}
	}
	p, obj, link, err := e.preparePod(spec)
	if err != nil {
		return nil, err
	}
	if err := e.wirePod(p, link); err != nil {
		e.teardownPod(p)
		return nil, err
	}
	created, err := e.createPod(ctx, p, obj)
	if err != nil {
		e.teardownPod(p)
		return nil, err
	}
	if err := e.writeRunning(ctx, p, created); err != nil {
		_ = e.DeletePod(context.Background(), p)
		return nil, err
	}
	return p, nil
}

// ReplacePod deletes old and creates a pod of spec in its place, with old's addresses
// on old's node, as a kubelet and CNI plugin do when a new pod gets a deleted pod's
// address; spec's Node and addresses are ignored. Little time passes between old's
// deletion and the new pod's status with the addresses (the window in which an
// enforcer must not let a stale verdict through): the new pod's namespace, agent and
// Pod object (pending, without addresses) are made first; then old's Pod object is
// deleted while, on the node, old's veth is removed and the new pod wired in its
// place; then the new pod's status is written. Old's agent and namespace go after.
func (e *Env) ReplacePod(ctx context.Context, old *Pod, spec PodSpec) (*Pod, error) {
	if old.APIOnly() {
		return nil, fmt.Errorf("replace %s: an API-only pod has no place to take (use DeletePod and AddAPIPod)", old)
	}
	spec.Node, spec.IPv4, spec.IPv6 = old.Node, old.IPv4, old.IPv6
	p, obj, link, err := e.preparePod(spec)
	if err != nil {
		return nil, err
	}
	created, err := e.createPod(ctx, p, obj)
	if err != nil {
		e.teardownPod(p)
		return nil, err
	}
	var unlink []string
	if old.hostIf != "" {
		unlink = []string{"link del " + old.hostIf}
		old.hostIf = ""
	}
	deleting := time.Now()
	var wired sync.WaitGroup
	var wireErr error
	wired.Go(func() { wireErr = e.wirePod(p, link, unlink...) })
	err = e.deletePodObject(ctx, old)
	wired.Wait()
	e.forgetPods(func(q *Pod) bool { return q == old }, false)
	e.bg.Go(func() { e.teardownPod(old) })
	if err = errors.Join(err, wireErr); err != nil {
		_ = e.DeletePod(context.Background(), p)
		return nil, fmt.Errorf("replace %s: %w", old, err)
	}
	if err := e.writeRunning(ctx, p, created); err != nil {
		_ = e.DeletePod(context.Background(), p)
		return nil, err
	}
	p.TakeoverGap = time.Since(deleting)
	return p, nil
}

// preparePod makes the pod of spec and its object (newPod), builds its namespace and
// veth, configures the pod's side and starts its agent, but does not route the pod's
// addresses to it on the node yet (wirePod): they may still belong to a pod being
// replaced. It also returns the link number that names the node's side of the veth.
// On error nothing is left.
func (e *Env) preparePod(spec PodSpec) (_ *Pod, _ *corev1.Pod, link int, err error) {
	p, obj, err := e.newPod(spec)
	if err != nil {
		return nil, nil, 0, err
	}
	n := p.Node
	e.mu.Lock()
	n.nextLink++
	link = n.nextLink
	e.mu.Unlock()
	p.Netns = fmt.Sprintf("%s-n%d-p%d", e.id, slices.Index(e.Nodes, n), link)
	defer func() {
		if err != nil {
			e.teardownPod(p)
		}
	}()
	if p.rmNetns, err = createNetns(p.Netns); err != nil {
		return nil, nil, 0, err
	}
	hostIf := fmt.Sprintf("p%d", link)
	if err := ip("-n", p.Netns, "link", "add", "eth0", "type", "veth", "peer", "name", hostIf, "netns", n.Netns); err != nil {
		return nil, nil, 0, err
	}
	p.hostIf = hostIf
	if err := nsSysctls(p.Netns, map[string]string{"net/ipv6/conf/all/accept_dad": "0", "net/ipv6/conf/eth0/accept_dad": "0"}); err != nil {
		return nil, nil, 0, err
	}
	var podCmds, nodeCmds []string
	if e.opts.Bridged {
		podCmds = []string{
			"addr add " + p.IPv4.String() + "/24 dev eth0",
			"addr add " + p.IPv6.String() + "/64 dev eth0 nodad",
			"link set eth0 up",
			fmt.Sprintf("route add default via 198.18.%d.254", 16+n.Index),
			fmt.Sprintf("route add ::/0 via 2001:db8:1:%x::fffe", n.Index),
		}
	} else {
		// Routed like Calico: the pod sends everything to its veth; the node answers ARP
		// by proxy and owns fe80::1 on its side for IPv6.
		podCmds = []string{
			"addr add " + p.IPv4.String() + "/32 dev eth0",
			"addr add " + p.IPv6.String() + "/128 dev eth0 nodad",
			"link set eth0 up",
			"route add default dev eth0 scope link",
			"route add ::/0 via fe80::1 dev eth0",
		}
		nodeCmds = []string{"addr add fe80::1/64 dev " + hostIf + " nodad"}
		// Proxy ARP answers after a random delay of up to 0.8 s by default, which the
		// first probe of a new pod would wait for; Calico sets it to 0 on its veths too.
		if err := nsSysctls(n.Netns, map[string]string{
			"net/ipv4/conf/" + hostIf + "/proxy_arp":    "1",
			"net/ipv4/neigh/" + hostIf + "/proxy_delay": "0",
		}); err != nil {
			return nil, nil, 0, err
		}
	}
	if len(nodeCmds) > 0 {
		if err := ipBatch(n.Netns, nodeCmds); err != nil {
			return nil, nil, 0, err
		}
	}
	if err := ipBatch(p.Netns, podCmds); err != nil {
		return nil, nil, 0, err
	}
	if err := e.startPodAgent(p, obj); err != nil {
		return nil, nil, 0, err
	}
	return p, obj, link, nil
}

// startPodAgent starts the podagent of p in its namespace, serving the container
// ports of obj.
func (e *Env) startPodAgent(p *Pod, obj *corev1.Pod) error {
	var tcp, udp, sctp []string
	for _, port := range obj.Spec.Containers[0].Ports {
		s := strconv.Itoa(int(port.ContainerPort))
		switch port.Protocol {
		case corev1.ProtocolTCP:
			tcp = append(tcp, s)
		case corev1.ProtocolUDP:
			udp = append(udp, s)
		case corev1.ProtocolSCTP:
			sctp = append(sctp, s)
		}
	}
	// Two names may declare one port (a container port per name, as
	// upstream's network-policy-api pods have); the agent listens once.
	tcp, udp, sctp = distinct(tcp), distinct(udp), distinct(sctp)
	var err error
	p.agent, err = startAgent(e.agentBin, p.Netns, p.String(), filepath.Join(e.Dir, "agent-"+p.Namespace+"-"+p.Name+".log"), tcp, udp, sctp)
	return err
}

// wirePod runs the ip(8) commands first in the node's namespace, then wires a
// prepared pod to its node (routes to its addresses, or its port on the node's
// bridge), all as one batch.
func (e *Env) wirePod(p *Pod, link int, first ...string) error {
	hostIf := fmt.Sprintf("p%d", link)
	cmds := slices.Clone(first)
	if e.opts.Bridged {
		cmds = append(cmds, "link set "+hostIf+" master br0", "link set "+hostIf+" up")
	} else {
		cmds = append(cmds,
			"link set "+hostIf+" up",
			"route add "+p.IPv4.String()+"/32 dev "+hostIf,
			"route add "+p.IPv6.String()+"/128 dev "+hostIf)
	}
	return ipBatch(p.Node.Netns, cmds)
}

// DeletePod removes the pod from the API server (immediately, as a kubelet confirming
// the deletion would) and tears down its namespace and agent. Safe for concurrent use
// on different pods.
func (e *Env) DeletePod(ctx context.Context, p *Pod) error {
	err := e.deletePodObject(ctx, p)
	e.forgetPods(func(q *Pod) bool { return q == p }, true)
	return err
}

// deletePodObject deletes the Pod object at once (grace period 0); a missing one is not
// an error.
func (e *Env) deletePodObject(ctx context.Context, p *Pod) error {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	err := e.CP.Client.CoreV1().Pods(p.Namespace).Delete(actx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("delete pod %s: %w", p, err)
	}
	return nil
}

// forgetPods forgets the pods for which match is true, and tears them down if
// teardown is set.
func (e *Env) forgetPods(match func(*Pod) bool, teardown bool) {
	e.mu.Lock()
	var gone []*Pod
	e.pods = slices.DeleteFunc(e.pods, func(q *Pod) bool {
		if match(q) {
			gone = append(gone, q)
			return true
		}
		return false
	})
	e.mu.Unlock()
	if teardown {
		for _, p := range gone {
			e.teardownPod(p)
		}
	}
}

func (e *Env) teardownPod(p *Pod) {
	if p.cni != nil {
		// The kubelet's CNI DEL, while the pod's namespace still exists (cnipod.go).
		p.cni.teardown()
	}
	if p.agent != nil {
		p.agent.stop()
		p.agent = nil
	}
	if p.hostIf != "" {
		// The kernel removes a deleted namespace's links (and the node's routes through
		// them) some time later; deleting the node's end now frees the pod's addresses
		// for a pod that takes them next.
		_ = ip("-n", p.Node.Netns, "link", "del", p.hostIf)
		p.hostIf = ""
	}
	if p.rmNetns != nil {
		p.rmNetns()
		p.rmNetns = nil
	}
}

// errNoAgent is returned for probes and sessions from a pod without an agent.
var errNoAgent = errors.New("pod has no agent (API-only or deleted)")

// distinct returns ports sorted, each once.
func distinct(ports []string) []string {
	slices.Sort(ports)
	return slices.Compact(ports)
}
