package nfttest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Topology wiring for packet tests, over netlink (no ip or sysctl binaries).
//
// Nothing here registers its own cleanup: every link, address and route lives
// in a namespace made by NewNetNS, and deleting the namespaces at the end of
// the test removes them all (a veth pair dies with either end's namespace, a
// bridge with its node namespace). Sysctls written here are per namespace and
// go with it as well; none is ever written in the machine's own namespace.

// PodIfName is the name of the pod's end of every veth pair, as a CNI names it.
const PodIfName = "eth0"

// ConnectRouted wires pod to node the way a routing CNI (Calico, Cilium in
// routing mode) does: a veth pair named ifname in node and PodIfName in pod;
// the node's end carries the gateway addresses gw4/32 and gw6/128 and a host
// route to podV4/32 and podV6/128; the pod's end carries podV4/32 and
// podV6/128, a link-scoped route to each gateway and a default route via it.
// Duplicate address detection is off on both ends (IFA_F_NODAD on the
// addresses, accept_dad=0 for the link-local ones) so IPv6 works at once. The
// loopbacks of both namespaces are brought up.
//
// A family whose pod address is the zero netip.Addr is not wired (its gateway
// must then be zero too). The same gateway addresses may be given for every
// pod of a node. Forwarding is not switched on here: call EnableForwarding
// once per node.
func ConnectRouted(t testing.TB, node, pod *NetNS, podV4, podV6 netip.Addr, gw4, gw6 netip.Addr, ifname string) {
	t.Helper()
	if err := connectRouted(node, pod, podV4, podV6, gw4, gw6, ifname); err != nil {
		t.Fatalf("connect pod %s to node %s (routed): %v", pod.Name, node.Name, err)
	}
}

// AddBridge creates the bridge name in node, brings it up, and sets net.bridge.bridge-nf-call-iptables and -ip6tables in node, so that
// IP packets crossing the bridge pass the inet forward hook as they do on a
// bridged CNI's node. It skips the test when br_netfilter is neither built in
// nor loaded: a test must never load kernel modules, that would change the
// machine.
func AddBridge(t testing.TB, node *NetNS, name string) {
	t.Helper()
	if err := node.Run(func() error {
		_, err := os.Stat(sysctlPath("net/bridge/bridge-nf-call-iptables"))
		return err
	}); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			t.Skip("br_netfilter is not available (not built in, not loaded): bridged topology skipped")
		}
		t.Fatalf("look for br_netfilter in %s: %v", node.Name, err)
	}
	for _, key := range []string{"net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables"} {
		if err := SetSysctl(node, key, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := addBridge(node, name); err != nil {
		t.Fatalf("bridge %s in %s: %v", name, node.Name, err)
	}
}

// ConnectBridged wires pod to the bridge of node (made by AddBridge): a veth
// pair named ifname in node, a port of bridge, and PodIfName in pod carrying
// podV4 and podV6 with their prefix lengths (the pods of one bridge share a
// subnet, e.g. /24 and /64; no duplicate address detection, as above). The
// loopbacks of both namespaces are brought up. A family whose prefix is the
// zero netip.Prefix is not wired.
func ConnectBridged(t testing.TB, node, pod *NetNS, bridge string, podV4, podV6 netip.Prefix, ifname string) {
	t.Helper()
	if err := connectBridged(node, pod, bridge, podV4, podV6, ifname); err != nil {
		t.Fatalf("connect pod %s to bridge %s of node %s: %v", pod.Name, bridge, node.Name, err)
	}
}

// EnableForwarding switches on IPv4 and IPv6 forwarding in ns (a routed node).
func EnableForwarding(t testing.TB, ns *NetNS) {
	t.Helper()
	for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if err := SetSysctl(ns, key, "1"); err != nil {
			t.Fatal(err)
		}
	}
}

// SetSysctl writes value to the sysctl key, given as its path under /proc/sys
// ("net/ipv4/ip_forward"), inside ns. Network sysctls resolve against the
// namespace of the thread that opens them, so the file is opened on a thread
// locked into ns.
func SetSysctl(ns *NetNS, key, value string) error {
	err := ns.Run(func() error {
		return os.WriteFile(sysctlPath(key), []byte(value), 0)
	})
	if err != nil {
		return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, ns.Name, err)
	}
	return nil
}

// GetSysctl reads the sysctl key (its path under /proc/sys) inside ns.
func GetSysctl(ns *NetNS, key string) (string, error) {
	var b []byte
	err := ns.Run(func() error {
		var err error
		b, err = os.ReadFile(sysctlPath(key))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s in %s: %w", key, ns.Name, err)
	}
	return string(b), nil
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", filepath.Clean("/"+key))
}

// nlHandle opens a netlink handle whose sockets live in ns.
func (ns *NetNS) nlHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns.handle)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", ns.Name, err)
	}
	return h, nil
}

func connectRouted(node, pod *NetNS, podV4, podV6, gw4, gw6 netip.Addr, ifname string) error {
	if podV4.IsValid() != gw4.IsValid() || podV6.IsValid() != gw6.IsValid() {
		return fmt.Errorf("pod addresses %v %v and gateways %v %v must be given in pairs: %w", podV4, podV6, gw4, gw6, os.ErrInvalid)
	}
	for _, a := range []netip.Addr{podV4, gw4} {
		if a.IsValid() && !a.Is4() {
			return fmt.Errorf("%v is not an IPv4 address: %w", a, os.ErrInvalid)
		}
	}
	for _, a := range []netip.Addr{podV6, gw6} {
		if a.IsValid() && (!a.Is6() || a.Is4In6()) {
			return fmt.Errorf("%v is not an IPv6 address: %w", a, os.ErrInvalid)
		}
	}
	nh, ph, err := handles(node, pod)
	if err != nil {
		return err
	}
	defer nh.Close()
	defer ph.Close()
	host, podEnd, err := addVeth(nh, ph, node, pod, ifname)
	if err != nil {
		return err
	}
	if err := upNoDAD(nh, ph, node, pod, host, podEnd); err != nil {
		return err
	}
	for _, f := range []struct{ pod, gw netip.Addr }{{podV4, gw4}, {podV6, gw6}} {
		if !f.pod.IsValid() {
			continue
		}
		// Node: the gateway address on its end, a host route to the pod.
		if err := addAddr(nh, node, host, netip.PrefixFrom(f.gw, f.gw.BitLen())); err != nil {
			return err
		}
		if err := addRoute(nh, node, &netlink.Route{LinkIndex: host.Attrs().Index, Scope: netlink.SCOPE_LINK, Dst: hostNet(f.pod)}); err != nil {
			return err
		}
		// Pod: its address, the gateway on link, everything via the gateway.
		if err := addAddr(ph, pod, podEnd, netip.PrefixFrom(f.pod, f.pod.BitLen())); err != nil {
			return err
		}
		if err := addRoute(ph, pod, &netlink.Route{LinkIndex: podEnd.Attrs().Index, Scope: netlink.SCOPE_LINK, Dst: hostNet(f.gw)}); err != nil {
			return err
		}
		if err := addRoute(ph, pod, &netlink.Route{LinkIndex: podEnd.Attrs().Index, Gw: net.IP(f.gw.AsSlice())}); err != nil {
			return err
		}
	}
	return waitOperUp(nh, ph, node, pod, host, podEnd)
}

func addBridge(node *NetNS, name string) error {
	h, err := node.nlHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge: %w", err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find the new bridge: %w", err)
	}
	return up(h, node, link)
}

func connectBridged(node, pod *NetNS, bridge string, podV4, podV6 netip.Prefix, ifname string) error {
	if podV4.IsValid() && !podV4.Addr().Is4() || podV6.IsValid() && (!podV6.Addr().Is6() || podV6.Addr().Is4In6()) {
		return fmt.Errorf("pod prefixes %v %v are not IPv4 and IPv6: %w", podV4, podV6, os.ErrInvalid)
	}
	nh, ph, err := handles(node, pod)
	if err != nil {
		return err
	}
	defer nh.Close()
	defer ph.Close()
	br, err := nh.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s in %s: %w", bridge, node.Name, err)
	}
	host, podEnd, err := addVeth(nh, ph, node, pod, ifname)
	if err != nil {
		return err
	}
	if err := nh.LinkSetMaster(host, br); err != nil {
		return fmt.Errorf("make %s a port of %s in %s: %w", ifname, bridge, node.Name, err)
	}
	if err := upNoDAD(nh, ph, node, pod, host, podEnd); err != nil {
		return err
	}
	for _, p := range []netip.Prefix{podV4, podV6} {
		if !p.IsValid() {
			continue
		}
		if err := addAddr(ph, pod, podEnd, p); err != nil {
			return err
		}
	}
	return waitOperUp(nh, ph, node, pod, host, podEnd)
}

// handles opens netlink handles in node and pod and brings both loopbacks up.
func handles(node, pod *NetNS) (nh, ph *netlink.Handle, err error) {
	nh, err = node.nlHandle()
	if err != nil {
		return nil, nil, err
	}
	ph, err = pod.nlHandle()
	if err != nil {
		nh.Close()
		return nil, nil, err
	}
	for _, x := range []struct {
		h  *netlink.Handle
		ns *NetNS
	}{{nh, node}, {ph, pod}} {
		lo, err := x.h.LinkByName("lo")
		if err == nil {
			err = up(x.h, x.ns, lo)
		}
		if err != nil {
			nh.Close()
			ph.Close()
			return nil, nil, fmt.Errorf("loopback in %s: %w", x.ns.Name, err)
		}
	}
	return nh, ph, nil
}

// addVeth creates the pair in node with its peer created directly in pod, so
// the pod's name never clashes with a link of the node.
func addVeth(nh, ph *netlink.Handle, node, pod *NetNS, ifname string) (host, podEnd netlink.Link, err error) {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: ifname},
		PeerName:      PodIfName,
		PeerNamespace: netlink.NsFd(pod.FD),
	}
	if err := nh.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("add veth %s in %s with peer %s in %s: %w", ifname, node.Name, PodIfName, pod.Name, err)
	}
	if host, err = nh.LinkByName(ifname); err != nil {
		return nil, nil, fmt.Errorf("find %s in %s: %w", ifname, node.Name, err)
	}
	if podEnd, err = ph.LinkByName(PodIfName); err != nil {
		return nil, nil, fmt.Errorf("find %s in %s: %w", PodIfName, pod.Name, err)
	}
	return host, podEnd, nil
}

// upNoDAD turns duplicate address detection off on both ends of a veth pair
// and brings them up. The test owns every address, and DAD would leave each
// end's link-local address tentative for a second or two after it comes up:
// meanwhile a forwarding node sends no neighbor solicitation out of that link
// (it needs a usable link-local source for packets that are not its own), so
// the first forwarded IPv6 packets would be dropped.
func upNoDAD(nh, ph *netlink.Handle, node, pod *NetNS, host, podEnd netlink.Link) error {
	for _, end := range []struct {
		h    *netlink.Handle
		ns   *NetNS
		link netlink.Link
	}{{nh, node, host}, {ph, pod, podEnd}} {
		if err := SetSysctl(end.ns, "net/ipv6/conf/"+end.link.Attrs().Name+"/accept_dad", "0"); err != nil {
			return err
		}
		if err := up(end.h, end.ns, end.link); err != nil {
			return err
		}
	}
	return nil
}

// operUpTimeout bounds the wait for a new veth pair's carrier.
const operUpTimeout = 5 * time.Second

// waitOperUp waits until both ends of a veth pair are operationally up. The
// kernel handles a carrier change in its linkwatch work, up to a second after
// the link is set up; until then the link's queue discards every packet, and
// a probe sent at once would lose its first packet (a TCP SYN is resent only
// after a second).
func waitOperUp(nh, ph *netlink.Handle, node, pod *NetNS, host, podEnd netlink.Link) error {
	deadline := time.Now().Add(operUpTimeout)
	for _, end := range []struct {
		h    *netlink.Handle
		ns   *NetNS
		name string
	}{{nh, node, host.Attrs().Name}, {ph, pod, podEnd.Attrs().Name}} {
		for {
			l, err := end.h.LinkByName(end.name)
			if err != nil {
				return fmt.Errorf("find %s in %s: %w", end.name, end.ns.Name, err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s in %s is still %s after %v", end.name, end.ns.Name, l.Attrs().OperState, operUpTimeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

func up(h *netlink.Handle, ns *NetNS, link netlink.Link) error {
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up in %s: %w", link.Attrs().Name, ns.Name, err)
	}
	return nil
}

func addAddr(h *netlink.Handle, ns *NetNS, link netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("add address %v to %s in %s: %w", p, link.Attrs().Name, ns.Name, err)
	}
	return nil
}

func addRoute(h *netlink.Handle, ns *NetNS, r *netlink.Route) error {
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("add route %s in %s: %w", r, ns.Name, err)
	}
	return nil
}

// hostNet is the /32 or /128 network of a.
func hostNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}
