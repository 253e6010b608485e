package cniplugin

import (
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// podAddresses are prevResult's addresses on the pod's side: every IP whose
// interface is in a sandbox, or that names no interface (older and simpler
// main plugins leave it out). Addresses on host-side interfaces (a veth's host
// end, a bridge) are the node's, not the pod's. Sorted, without duplicates.
func podAddresses(prev types.Result) ([]netip.Addr, error) {
	res, err := current.NewResultFromResult(prev)
	if err != nil {
		return nil, errorf(types.ErrDecodingFailure, "nftwarden-cni: convert prevResult to CNI %s: %v", current.ImplementedSpecVersion, err)
	}
	var addrs []netip.Addr
	for _, ip := range res.IPs {
		if ip == nil {
			continue
		}
		if ip.Interface != nil {
			i := *ip.Interface
			if i < 0 || i >= len(res.Interfaces) || res.Interfaces[i] == nil {
				return nil, errorf(types.ErrDecodingFailure, "nftwarden-cni: prevResult: IP %s names interface %d of %d", ip.Address.String(), i, len(res.Interfaces))
			}
			if res.Interfaces[i].Sandbox == "" {
				continue
			}
		}
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			return nil, errorf(types.ErrDecodingFailure, "nftwarden-cni: prevResult: invalid IP address %q", ip.Address.String())
		}
		addrs = append(addrs, a.Unmap())
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	if len(addrs) == 0 {
		return nil, errorf(ErrNoPodAddresses, "nftwarden-cni: prevResult has no address on the pod's interfaces: nothing to isolate, and the pod must not start unprotected")
	}
	return addrs, nil
}
