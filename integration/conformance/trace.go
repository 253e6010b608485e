package conformance

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/nft"
)

var protoNumbers = map[corev1.Protocol]uint8{
	corev1.ProtocolTCP:  nft.ProtoTCP,
	corev1.ProtocolUDP:  nft.ProtoUDP,
	corev1.ProtocolSCTP: nft.ProtoSCTP,
}

// tracePath traces the first packet of a new connection through the forward
// hook of the source node and, when the destination runs elsewhere, of the
// destination node too: the flow passes only if every node on the way accepts
// it. It returns the verdict and, for a drop, the path that dropped it.
func tracePath(src, dst *modelNode, from, to netip.Addr, port int, proto corev1.Protocol) (bool, string, error) {
	num, ok := protoNumbers[proto]
	if !ok {
		return false, "", fmt.Errorf("trace: unknown protocol %q", proto)
	}
	pkt := nft.Packet{Hook: nft.HookForward, Src: from, Dst: to, Proto: num, Dport: uint16(port), Ct: nft.CtNew}
	nodes := []*modelNode{src}
	if dst != src {
		nodes = append(nodes, dst)
	}
	for _, n := range nodes {
		if res := n.fake.Trace(pkt); !res.Accepted() {
			return false, fmt.Sprintf("dropped on %s: %s", n.name, res), nil
		}
	}
	return true, "accepted on the source and destination nodes", nil
}
