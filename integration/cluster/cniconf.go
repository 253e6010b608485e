package cluster

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
)

// The part of each node's pod ranges that host-local hands out to pods made by
// AddCNIPod: .128 to .250 and ::1:80 to ::1:fa. Node.PodAddrs hands out k = 1, 2, ...
// (at most cniFirstHost-1 on a node that has CNI pods, see newPod), so the two never
// meet. The node's end of every ptp veth holds the gateway, .251 and ::1:fb, which no
// pod has.
const (
	cniFirstHost = 128
	cniLastHost  = 250
	cniGateway   = 251
)

// cniVersion is the CNI spec version of the generated conflists; the reference
// plugins, libcni and nftwarden-cni all speak it.
const cniVersion = "1.0.0"

// cniAddr returns the address with host part k of the node's CNI range of the family.
func (n *Node) cniAddr(family, k int) netip.Addr {
	if family == 6 {
		a := n.PodCIDRv6().Addr().As16()
		a[13], a[15] = 1, byte(k)
		return netip.AddrFrom16(a)
	}
	a := n.PodCIDRv4().Addr().As4()
	a[3] = byte(k)
	return netip.AddrFrom4(a)
}

// CNIRange reports whether a is one of the addresses host-local hands out on the node.
func (n *Node) CNIRange(a netip.Addr) bool {
	for _, family := range []int{4, 6} {
		first, last := n.cniAddr(family, cniFirstHost), n.cniAddr(family, cniLastHost)
		if a.Compare(first) >= 0 && a.Compare(last) <= 0 {
			return true
		}
	}
	return false
}

// CNISocket is the unix socket the node's daemon serves the chained plugin on
// (`nftwarden run --cni-socket`, set through NFTWARDEN_CNI_SOCKET by StartDaemon).
func (n *Node) CNISocket() string {
	return filepath.Join(n.env.Dir, n.Name+".sock")
}

// cniNetworkName names the node's network. Both chains of a node (with and without
// nftwarden-cni) carry it, so that host-local keeps one allocation for both.
func (n *Node) cniNetworkName() string { return "nftw-" + n.Name }

// cniConfList builds the node's conflist as a runtime reads it from /etc/cni/net.d:
// ptp with host-local IPAM in the node's CNI range (both families, default routes
// through the node), then, if withPlugin is set, nftwarden-cni with the node's socket.
// host-local keeps its leases in the environment's directory, not in /var/lib/cni.
func (n *Node) cniConfList(withPlugin bool) (*libcni.NetworkConfigList, error) {
	type ipRange struct {
		Subnet     string `json:"subnet"`
		RangeStart string `json:"rangeStart"`
		RangeEnd   string `json:"rangeEnd"`
		Gateway    string `json:"gateway"`
	}
	rangeOf := func(family int, subnet netip.Prefix) []ipRange {
		return []ipRange{{
			Subnet:     subnet.String(),
			RangeStart: n.cniAddr(family, cniFirstHost).String(),
			RangeEnd:   n.cniAddr(family, cniLastHost).String(),
			Gateway:    n.cniAddr(family, cniGateway).String(),
		}}
	}
	ptp := map[string]any{
		"type": "ptp",
		// A runtime's static addresses (CNIPodOptions.IPs) reach host-local through
		// ptp's runtimeConfig, as multus and the kubelet pass them.
		"capabilities": map[string]bool{"ips": true},
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": filepath.Join(n.env.Dir, "cni-ipam"),
			"ranges":  [][]ipRange{rangeOf(4, n.PodCIDRv4()), rangeOf(6, n.PodCIDRv6())},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}},
		},
	}
	plugins := []any{ptp}
	if withPlugin {
		plugins = append(plugins, map[string]any{"type": "nftwarden-cni", "socket": n.CNISocket(), "timeout": "10s"})
	}
	b, err := json.Marshal(map[string]any{"cniVersion": cniVersion, "name": n.cniNetworkName(), "plugins": plugins})
	if err != nil {
		return nil, fmt.Errorf("conflist of %s: %w", n.Name, err)
	}
	list, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("conflist of %s: %w", n.Name, err)
	}
	return list, nil
}
