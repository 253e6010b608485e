package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
)

// CNIPodOptions says how AddCNIPod (or CNIPod.Add) runs the chain and what the
// kubelet does after it.
type CNIPodOptions struct {
	// Plugin puts nftwarden-cni, with the node's socket, after ptp in the chain.
	Plugin bool
	// NoStatus leaves the pod without status after ADD (pending, no addresses in the
	// API) until the test calls CNIPod.WriteStatus: the kubelet has not reported yet.
	NoStatus bool
	// StatusDelay writes the status that long after ADD returned, in the background
	// (CNIPod.WaitStatus waits for it); zero writes it before Add returns.
	StatusDelay time.Duration
}

// CNIPod is a pod whose network a CNI chain made, run with libcni in the node's
// namespace as a kubelet's runtime runs it (AddCNIPod). Its Pod's addresses are the
// chain's result.
type CNIPod struct {
	*Pod
	// UID is the Pod object's UID, which the chain gets as K8S_POD_UID.
	UID k8stypes.UID
	// Created is when the request that created the Pod object returned.
	Created time.Time
	// AddTook is how long the last successful ADD took, every plugin of the chain.
	AddTook time.Duration
	// Added is when the last successful ADD returned.
	Added time.Time

	env     *Env
	created *corev1.Pod

	statusMu sync.Mutex    // the delayed write and the test's may meet
	status   chan struct{} // closed when the status write of the last Add has ended
	statusT  time.Time
	statErr  error
}

// cniSandbox is one CNI attachment of a pod: what DEL and CHECK need.
type cniSandbox struct {
	node    *Node
	cni     *libcni.CNIConfig
	exec    invoke.Exec
	list    *libcni.NetworkConfigList
	rt      *libcni.RuntimeConf
	result  cnitypes.Result
	mu      sync.Mutex
	deleted bool
}

// AddCNIPod creates a pod through a CNI chain: CreateCNIPod, then CNIPod.Add. On error
// nothing is left behind.
func (e *Env) AddCNIPod(ctx context.Context, spec PodSpec, opts CNIPodOptions) (*CNIPod, error) {
	p, err := e.CreateCNIPod(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := p.Add(ctx, opts); err != nil {
		_ = e.DeletePod(context.Background(), p.Pod)
		return nil, err
	}
	return p, nil
}

// CreateCNIPod does what happens before a kubelet's runtime calls CNI ADD: the Pod
// object exists (scheduled to spec.Node, pending, no addresses), the sandbox's network
// namespace too (no interface but lo), and the pod's agent listens in it. Addresses set
// in spec are asked of host-local (the "ips" capability) and must be in the node's CNI
// range; otherwise host-local picks them. The reference plugins are built on first use.
func (e *Env) CreateCNIPod(ctx context.Context, spec PodSpec) (_ *CNIPod, err error) {
	if _, err := referencePluginsOnce(); err != nil {
		return nil, fmt.Errorf("CNI plugins: %w", err)
	}
	n := spec.Node
	if n == nil {
		n = e.Nodes[0]
	}
	for _, a := range []netip.Addr{spec.IPv4, spec.IPv6} {
		if a.IsValid() && !n.CNIRange(a) {
			return nil, fmt.Errorf("pod %s/%s: %s is not in node %s's CNI range", spec.Namespace, spec.Name, a, n.Name)
		}
	}
	e.mu.Lock()
	if n.nextPod >= cniFirstHost {
		e.mu.Unlock()
		return nil, fmt.Errorf("pod %s/%s: node %s already handed out addresses of host-local's range", spec.Namespace, spec.Name, n.Name)
	}
	n.cniUsed = true
	n.nextLink++
	link := n.nextLink
	e.mu.Unlock()
	obj, err := podObject(spec, n)
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	p := &Pod{Namespace: spec.Namespace, Name: spec.Name, Node: n, Ports: spec.Ports, IPv4: spec.IPv4, IPv6: spec.IPv6}
	p.Netns = fmt.Sprintf("%s-n%d-c%d", e.id, slices.Index(e.Nodes, n), link)
	defer func() {
		if err != nil {
			e.teardownPod(p)
		}
	}()
	if p.rmNetns, err = createNetns(p.Netns); err != nil {
		return nil, err
	}
	// ptp creates the pod's interface here later: no duplicate address detection on
	// it, or the pod's IPv6 address stays tentative for a second after ADD.
	if err := nsSysctls(p.Netns, map[string]string{"net/ipv6/conf/all/accept_dad": "0", "net/ipv6/conf/default/accept_dad": "0"}); err != nil {
		return nil, err
	}
	if err := e.startPodAgent(p, obj); err != nil {
		return nil, err
	}
	created, err := e.createPod(ctx, p, obj)
	if err != nil {
		return nil, err
	}
	return &CNIPod{Pod: p, UID: created.UID, Created: time.Now(), env: e, created: created}, nil
}

// Add runs CNI ADD of the node's chain for the pod, with a new container ID (a new
// sandbox), in the node's network namespace with the kubelet's CNI_ARGS, and times
// it. The pod's addresses become the result's. If ADD fails, the runtime's cleanup
// DEL runs and the error is returned (a *cnitypes.Error from the plugin that failed
// stays reachable with errors.As); the pod object, namespace and agent stay, for a
// retry. Then the status is written as opts say.
func (p *CNIPod) Add(ctx context.Context, opts CNIPodOptions) error {
	if p.cni != nil && !p.cni.isDeleted() {
		return fmt.Errorf("CNI ADD %s: the pod's sandbox is attached (Del first)", p)
	}
	n := p.Node
	binDir, err := referencePluginsOnce()
	if err != nil {
		return fmt.Errorf("CNI plugins: %w", err)
	}
	if opts.Plugin {
		if _, err := nftwardenCNIOnce(); err != nil {
			return fmt.Errorf("nftwarden-cni: %w", err)
		}
	}
	list, err := n.cniConfList(opts.Plugin)
	if err != nil {
		return err
	}
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("container id: %w", err)
	}
	containerID := hex.EncodeToString(id)
	// The plugins' stderr (their warnings) goes to the node's CNI log, not the
	// test's output.
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: n.cniLog()}}
	sb := &cniSandbox{
		node: n,
		exec: exec,
		cni:  libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(p.env.Dir, "cni-cache"), exec),
		list: list,
		rt: &libcni.RuntimeConf{
			ContainerID: containerID,
			NetNS:       filepath.Join("/run/netns", p.Netns),
			IfName:      "eth0",
			// What the kubelet (through containerd or CRI-O) passes.
			Args: [][2]string{
				{"IgnoreUnknown", "1"},
				{"K8S_POD_NAMESPACE", p.Namespace},
				{"K8S_POD_NAME", p.Name},
				{"K8S_POD_INFRA_CONTAINER_ID", containerID},
				{"K8S_POD_UID", string(p.UID)},
			},
		},
	}
	var ips []string
	for _, a := range []netip.Addr{p.IPv4, p.IPv6} {
		if a.IsValid() && n.CNIRange(a) {
			ips = append(ips, netip.PrefixFrom(a, a.BitLen()).String())
		}
	}
	if len(ips) > 0 {
		sb.rt.CapabilityArgs = map[string]any{"ips": ips}
	}
	var res cnitypes.Result
	start := time.Now()
	err = inNetns(n.Netns, func() error {
		var err error
		res, err = sb.cni.AddNetworkList(ctx, list, sb.rt)
		return err
	})
	took := time.Since(start)
	if err != nil {
		// A runtime tears a failed sandbox down with DEL before it retries.
		delErr := sb.del(context.Background())
		return errors.Join(fmt.Errorf("CNI ADD %s on %s: %w", p, n.Name, err), delErr)
	}
	sb.result = res
	p.cni = sb
	p.Added, p.AddTook = time.Now(), took
	v4, v6, err := resultAddrs(res)
	if err != nil {
		return fmt.Errorf("CNI ADD %s: %w", p, err)
	}
	p.IPv4, p.IPv6 = v4, v6
	p.statusMu.Lock()
	p.status = make(chan struct{})
	p.statusT, p.statErr = time.Time{}, nil
	p.statusMu.Unlock()
	switch {
	case opts.NoStatus:
	case opts.StatusDelay > 0:
		p.env.bg.Go(func() {
			select {
			case <-time.After(opts.StatusDelay):
				_ = p.WriteStatus(context.Background())
			case <-ctx.Done():
				p.finishStatus(ctx.Err())
			}
		})
	default:
		return p.WriteStatus(ctx)
	}
	return nil
}

// resultAddrs returns the pod's IPv4 and IPv6 address from a chain's result.
func resultAddrs(res cnitypes.Result) (v4, v6 netip.Addr, err error) {
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return v4, v6, fmt.Errorf("convert result: %w", err)
	}
	for _, ipc := range r.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			return v4, v6, fmt.Errorf("result address %v", ipc.Address)
		}
		if a = a.Unmap(); a.Is4() {
			v4 = a
		} else {
			v6 = a
		}
	}
	if !v4.IsValid() || !v6.IsValid() {
		return v4, v6, fmt.Errorf("result without an address of both families: %v", r.IPs)
	}
	return v4, v6, nil
}

// WriteStatus writes the status a kubelet reports once the sandbox runs (Running,
// ready, the addresses of the last ADD's result).
func (p *CNIPod) WriteStatus(ctx context.Context) error {
	err := p.env.writeRunning(ctx, p.Pod, p.created.DeepCopy())
	p.finishStatus(err)
	return err
}

func (p *CNIPod) finishStatus(err error) {
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	select {
	case <-p.status:
		return // written already (a test wrote it itself before the delayed write)
	default:
	}
	p.statusT, p.statErr = time.Now(), err
	close(p.status)
}

// WaitStatus waits until the status write of the last Add has ended and returns when
// it did, or its error.
func (p *CNIPod) WaitStatus(ctx context.Context) (time.Time, error) {
	p.statusMu.Lock()
	status := p.status
	p.statusMu.Unlock()
	if status == nil {
		return time.Time{}, fmt.Errorf("pod %s: no ADD yet", p)
	}
	select {
	case <-status:
		p.statusMu.Lock()
		defer p.statusMu.Unlock()
		return p.statusT, p.statErr
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}

// Del runs CNI DEL of the pod's sandbox in the node's namespace, as the runtime does
// when the sandbox stops. Deleting again is not an error; the pod object, namespace
// and agent stay.
func (p *CNIPod) Del(ctx context.Context) error {
	if p.cni == nil {
		return nil
	}
	return p.cni.del(ctx)
}

// CheckPlugin runs CNI CHECK of the chain's plugin of type pluginType alone, with the
// last ADD's result as prevResult, in the node's namespace. Unlike a runtime's CHECK,
// which libcni refuses once DEL has dropped its cache, it runs after Del too: what the
// plugin says of a sandbox that is gone.
func (p *CNIPod) CheckPlugin(ctx context.Context, pluginType string) error {
	if p.cni == nil {
		return fmt.Errorf("CNI CHECK %s: no ADD yet", p)
	}
	sb := p.cni
	for _, plugin := range sb.list.Plugins {
		if plugin.Network.Type != pluginType {
			continue
		}
		var prev map[string]any
		b, err := json.Marshal(sb.result)
		if err == nil {
			err = json.Unmarshal(b, &prev)
		}
		if err != nil {
			return fmt.Errorf("CNI CHECK %s: result of ADD: %w", p, err)
		}
		conf, err := libcni.InjectConf(plugin, map[string]any{"name": sb.list.Name, "cniVersion": sb.list.CNIVersion, "prevResult": prev})
		if err != nil {
			return fmt.Errorf("CNI CHECK %s: %w", p, err)
		}
		path, err := invoke.FindInPath(pluginType, sb.cni.Path)
		if err != nil {
			return fmt.Errorf("CNI CHECK %s: %w", p, err)
		}
		args := &invoke.Args{Command: "CHECK", ContainerID: sb.rt.ContainerID, NetNS: sb.rt.NetNS,
			PluginArgs: sb.rt.Args, IfName: sb.rt.IfName, Path: strings.Join(sb.cni.Path, string(os.PathListSeparator))}
		return inNetns(sb.node.Netns, func() error {
			return invoke.ExecPluginWithoutResult(ctx, path, conf.Bytes, args, sb.exec)
		})
	}
	return fmt.Errorf("CNI CHECK %s: no plugin of type %q in the chain", p, pluginType)
}

func (sb *cniSandbox) isDeleted() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.deleted
}

// del runs the chain's DEL in the node's namespace, once successfully.
func (sb *cniSandbox) del(ctx context.Context) error {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.deleted {
		return nil
	}
	err := inNetns(sb.node.Netns, func() error { return sb.cni.DelNetworkList(ctx, sb.list, sb.rt) })
	if err != nil {
		return fmt.Errorf("CNI DEL %s on %s: %w", sb.rt.ContainerID[:12], sb.node.Name, err)
	}
	sb.deleted = true
	return nil
}

// teardown is DEL when the pod goes (DeletePod, Close): bounded, and a failure (e.g.
// the daemon is stopped) leaves nothing host-local would keep, since the namespace
// goes next and the environment's lease directory with it.
func (sb *cniSandbox) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = sb.del(ctx)
}

// cniLog receives the stderr of the node's CNI plugins: <Env.Dir>/cni-<node>.log.
func (n *Node) cniLog() io.Writer {
	return appendWriter(filepath.Join(n.env.Dir, "cni-"+n.Name+".log"))
}

// appendWriter appends each Write to the file it names (appendLine): a writer that
// holds no file open, for output that comes now and then from short-lived processes.
type appendWriter string

func (w appendWriter) Write(b []byte) (int, error) {
	appendLine(string(w), string(b))
	return len(b), nil
}
