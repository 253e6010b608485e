package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Options describes the simulated nodes of an Env.
type Options struct {
	// Nodes is the number of nodes (default 1).
	Nodes int
	// Bridged wires pods to a Linux bridge in their node namespace (with br_netfilter
	// on) instead of routed point-to-point veths.
	Bridged bool
	// DaemonKubeconfig is the kubeconfig the daemons use. The default is the daemon's
	// own identity (ControlPlane.DaemonKubeconfig) with the role the project ships
	// (daemon/deploy/rbac.yaml, applied by ControlPlane.ApplyDaemonRBAC), so that every
	// test proves the daemon needs no more than that role.
	DaemonKubeconfig string
	// DaemonArgs are added to `nftwarden run --kubeconfig K --node-name N`.
	DaemonArgs []string
	// DaemonEnv are added to every daemon's environment ("KEY=value"), after the
	// test process's own; Node.SetDaemonEnv adds more for one node.
	DaemonEnv []string
	// ProbeTimeout bounds one probe; a denied flow takes that long (default 1 s).
	ProbeTimeout time.Duration
}

// Env is a set of simulated nodes and pods on a ControlPlane. It is not safe for
// concurrent changes (one test drives it), but probes run concurrently.
type Env struct {
	CP    *ControlPlane
	Nodes []*Node
	// Dir holds the logs of this environment (daemons, agents).
	Dir string

	opts       Options
	id         string // network namespace prefix
	short      string // random suffix for API object names
	underlay   string
	rmUnderlay func()
	agentBin   string

	mu         sync.Mutex
	pods       []*Pod
	namespaces []string
	bg         sync.WaitGroup // teardowns that run after ReplacePod returns
	unreg      func()
}

// Node is a simulated node: a network namespace on the underlay, a Node object in the
// API server, and (once started) an nftwarden daemon.
type Node struct {
	// Name is the Kubernetes node name.
	Name string
	// Netns is the node's network namespace.
	Netns string
	// IPv4 and IPv6 are the node's underlay addresses.
	IPv4, IPv6 netip.Addr
	// Index is the global node index that the address plan is built from.
	Index int

	env *Env
	// nextPod is the last pod address number handed out (PodAddrs); nextLink numbers
	// pod namespaces and veths, which a pod with a chosen address needs too.
	nextPod, nextLink int
	// cniUsed: host-local hands out the top of the node's ranges (cniconf.go).
	cniUsed   bool
	daemonEnv []string
	relay     *relay
	daemon    *process
	rmNetns   func()
}

// Port is a container port a pod serves.
type Port struct {
	Name     string // optional IANA_SVC_NAME, for named-port policies
	Port     uint16
	Protocol corev1.Protocol // TCP (default), UDP or SCTP
}

// PodSpec describes a pod to create.
type PodSpec struct {
	Namespace, Name string
	// Node is where the pod runs (default: the first node).
	Node   *Node
	Labels map[string]string
	Ports  []Port
	// IPv4 and IPv6 choose the pod's addresses, e.g. those of a pod just deleted, to
	// test address reuse. Zero means the node's next free pair (Node.PodAddrs). Pod
	// addresses are routed per node on the underlay (the node's /24 and /64), so a pod
	// with a network namespace (AddPod) must take both from its own node's ranges; an
	// API-only pod (AddAPIPod) may claim any address, e.g. one of another node or of
	// UnroutedAddrs.
	IPv4, IPv6 netip.Addr
}

// Pod is a simulated pod: a network namespace with a podagent, and a Pod object; or,
// made by AddAPIPod, only the Pod object.
type Pod struct {
	Namespace, Name string
	Node            *Node
	// Netns is the pod's network namespace ("" for an API-only pod).
	Netns      string
	IPv4, IPv6 netip.Addr
	Ports      []Port
	// TakeoverGap is set on a pod made by ReplacePod: the time from the request that
	// deleted the pod it replaced to the end of this pod's status write.
	TakeoverGap time.Duration

	agent   *agent
	hostIf  string // the node's end of the pod's veth
	rmNetns func()
	cni     *cniSandbox // the CNI attachment of a pod made by AddCNIPod (cnipod.go)
}

// String is "namespace/name".
func (p *Pod) String() string { return p.Namespace + "/" + p.Name }

// Addr returns the pod's address of the family (4 or 6).
func (p *Pod) Addr(family int) netip.Addr {
	if family == 6 {
		return p.IPv6
	}
	return p.IPv4
}

// nodeCounter hands out node indexes for the whole process, so that environments that
// follow each other never reuse an address, even if some API object outlived its test.
var nodeCounter atomic.Int64

var podAgentOnce = sync.OnceValues(BuildPodAgent)

// NewEnv creates opts.Nodes nodes (namespaces, underlay, routes, Node objects, relays
// to the API server). Daemons start with StartDaemons. On error nothing is left behind.
func NewEnv(ctx context.Context, cp *ControlPlane, opts Options) (_ *Env, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces")
	}
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = time.Second
	}
	if opts.DaemonKubeconfig == "" {
		if err := cp.ApplyDaemonRBAC(); err != nil {
			return nil, err
		}
		opts.DaemonKubeconfig = cp.DaemonKubeconfig
	}
	agentBin, err := podAgentOnce()
	if err != nil {
		return nil, fmt.Errorf("build podagent: %w", err)
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random id: %w", err)
	}
	short := hex.EncodeToString(b)
	e := &Env{CP: cp, opts: opts, id: namePrefix() + short, short: short, agentBin: agentBin}
	if e.Dir, err = os.MkdirTemp("", e.id+"-"); err != nil {
		return nil, fmt.Errorf("env dir: %w", err)
	}
	e.unreg = defaultJanitor.register(e.close)
	defer func() {
		if err != nil {
			e.Close()
		}
	}()

	e.underlay = e.id + "-ul"
	if e.rmUnderlay, err = createNetns(e.underlay); err != nil {
		return nil, err
	}
	if err := ipBatch(e.underlay, []string{"link add ul0 type bridge", "link set ul0 up"}); err != nil {
		return nil, err
	}
	for k := range opts.Nodes {
		n, err := e.addNode(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", k, err)
		}
		e.Nodes = append(e.Nodes, n)
	}
	// Routes to every other node's pod range through the underlay.
	for _, n := range e.Nodes {
		var cmds []string
		for _, m := range e.Nodes {
			if m == n {
				continue
			}
			cmds = append(cmds,
				fmt.Sprintf("route add 198.18.%d.0/24 via %s", 16+m.Index, m.IPv4),
				fmt.Sprintf("route add 2001:db8:1:%x::/64 via %s", m.Index, m.IPv6))
		}
		if len(cmds) > 0 {
			if err := ipBatch(n.Netns, cmds); err != nil {
				return nil, err
			}
		}
	}
	return e, nil
}

func (e *Env) addNode(ctx context.Context, k int) (*Node, error) {
	idx := int(nodeCounter.Add(1)-1) % 200
	n := &Node{
		Name:  fmt.Sprintf("node-%s-%d", e.short, k),
		Netns: fmt.Sprintf("%s-n%d", e.id, k),
		IPv4:  netip.AddrFrom4([4]byte{198, 18, 0, byte(idx + 1)}),
		IPv6:  netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", idx+1)),
		Index: idx,
		env:   e,
	}
	var err error
	if n.rmNetns, err = createNetns(n.Netns); err != nil {
		return nil, err
	}
	sysctls := map[string]string{
		"net/ipv4/ip_forward":              "1",
		"net/ipv6/conf/all/forwarding":     "1",
		"net/ipv6/conf/all/accept_dad":     "0",
		"net/ipv6/conf/default/accept_dad": "0",
	}
	if e.opts.Bridged {
		if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
			return nil, fmt.Errorf("%w: br_netfilter is not loaded (modprobe br_netfilter)", ErrNoBrNetfilter)
		}
		sysctls["net/bridge/bridge-nf-call-iptables"] = "1"
		sysctls["net/bridge/bridge-nf-call-ip6tables"] = "1"
	}
	if err := nsSysctls(n.Netns, sysctls); err != nil {
		if e.opts.Bridged {
			return nil, fmt.Errorf("%w: %w", ErrNoBrNetfilter, err)
		}
		return nil, err
	}
	ulPort := fmt.Sprintf("n%d", k)
	if err := ip("-n", n.Netns, "link", "add", "eth0", "type", "veth", "peer", "name", ulPort, "netns", e.underlay); err != nil {
		return nil, err
	}
	if err := ipBatch(e.underlay, []string{"link set " + ulPort + " master ul0", "link set " + ulPort + " up"}); err != nil {
		return nil, err
	}
	cmds := []string{
		"addr add " + n.IPv4.String() + "/24 dev eth0",
		"addr add " + n.IPv6.String() + "/64 dev eth0 nodad",
		"link set eth0 up",
	}
	if e.opts.Bridged {
		cmds = append(cmds,
			"link add br0 type bridge",
			fmt.Sprintf("addr add 198.18.%d.254/24 dev br0", 16+idx),
			fmt.Sprintf("addr add 2001:db8:1:%x::fffe/64 dev br0 nodad", idx),
			"link set br0 up")
	}
	if err := ipBatch(n.Netns, cmds); err != nil {
		return nil, err
	}
	if n.relay, err = startRelay(n.Netns, "127.0.0.1:"+strconv.Itoa(e.CP.Port), "127.0.0.1:"+strconv.Itoa(e.CP.Port)); err != nil {
		return nil, err
	}
	node := &corev1.Node{
		// The labels a kubelet puts on its Node (network-policy-api's node-peer
		// conformance tests select kubernetes.io/os: linux).
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{corev1.LabelHostname: n.Name, corev1.LabelOSStable: "linux"}},
		// Canonical text (RFC 5952), which the API server asks for.
		Spec: corev1.NodeSpec{PodCIDRs: []string{n.PodCIDRv4().String(), n.PodCIDRv6().String()}},
	}
	node.Spec.PodCIDR = node.Spec.PodCIDRs[0]
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	created, err := e.CP.Client.CoreV1().Nodes().Create(actx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create node object %s: %w", n.Name, err)
	}
	created.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.IPv4.String()},
		{Type: corev1.NodeInternalIP, Address: n.IPv6.String()},
		{Type: corev1.NodeHostName, Address: n.Name},
	}
	created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if _, err := e.CP.Client.CoreV1().Nodes().UpdateStatus(actx, created, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("node status %s: %w", n.Name, err)
	}
	return n, nil
}

// ErrNoBrNetfilter means the bridged variant cannot run: bridged packets would not go
// through the nftables forward hook. Tests skip on it.
var ErrNoBrNetfilter = errors.New("br_netfilter unavailable")

// DaemonKubeconfig is the kubeconfig the daemons of this environment use (see
// Options.DaemonKubeconfig).
func (e *Env) DaemonKubeconfig() string { return e.opts.DaemonKubeconfig }

// Pods returns the pods of the environment in creation order.
func (e *Env) Pods() []*Pod {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.pods)
}

// Close stops the daemons and agents, deletes the API objects the environment created
// (pods, namespaces with everything in them, nodes), removes every namespace, and
// deletes Dir unless NFTW_KEEP_LOGS is set. Safe to call more than once.
func (e *Env) Close() { e.unreg() }

func (e *Env) close() {
	for _, n := range e.Nodes {
		n.StopDaemon()
	}
	e.bg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Namespaces first: their pods go with one request each, however many there are.
	e.mu.Lock()
	namespaces := slices.Clone(e.namespaces)
	e.mu.Unlock()
	for _, ns := range namespaces {
		_ = e.DeleteNamespace(ctx, ns)
	}
	for _, p := range e.Pods() {
		_ = e.DeletePod(ctx, p)
	}
	for _, n := range e.Nodes {
		if n.relay != nil {
			n.relay.close()
		}
		_ = e.CP.Client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
		if n.rmNetns != nil {
			n.rmNetns()
		}
	}
	if e.rmUnderlay != nil {
		e.rmUnderlay()
	}
	if os.Getenv("NFTW_KEEP_LOGS") == "" {
		_ = os.RemoveAll(e.Dir)
	}
}
