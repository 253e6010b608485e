package daemon

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/urfave/cli/v2"
)

// Flags of first-packet isolation (programFlags: run, dump --desired and
// explain compile with them alike).
const (
	flagFirstPacketIsolation = "first-packet-isolation"
	flagPodCIDR              = "pod-cidr"
)

// firstPacketConfig is what --first-packet-isolation and --pod-cidr
// configure.
type firstPacketConfig struct {
	// On drops connections from and to addresses of the node's pod CIDRs
	// that are no known pod's.
	On bool
	// PodCIDRs (--pod-cidr) are the node's pod CIDRs; empty: the daemon
	// reads them from its Node (spec.podCIDRs), and dump --desired and
	// explain compile without isolation.
	PodCIDRs []netip.Prefix
}

// firstPacketFlags are the flags of firstPacketConfig.
func firstPacketFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: flagFirstPacketIsolation, Value: true, EnvVars: []string{"NFTWARDEN_FIRST_PACKET_ISOLATION"},
			Usage: "drop connections from and to addresses of this node's pod CIDRs that are no known pod's, until the pod is programmed " +
				"(a new pod is isolated from its first packet, not from when its status reaches the daemon)"},
		&cli.StringSliceFlag{Name: flagPodCIDR, EnvVars: []string{"NFTWARDEN_POD_CIDRS"},
			Usage: "this node's pod `CIDR` (repeat it, or comma-separate in the variable: one per family, or the blocks " +
				"a CNI's own IPAM gives the node); default: the Node's spec.podCIDRs (run only)"},
	}
}

// firstPacketConfigFrom reads and checks the flags of firstPacketFlags.
func firstPacketConfigFrom(c *cli.Context) (firstPacketConfig, error) {
	v := firstPacketConfig{On: c.Bool(flagFirstPacketIsolation)}
	var err error
	if v.PodCIDRs, err = parsePodCIDRs(c.StringSlice(flagPodCIDR)); err != nil {
		return v, usagef("--%s %w", flagPodCIDR, err)
	}
	return v, nil
}

// parsePodCIDRs parses pod CIDRs: canonical prefixes (no host bits). A CNI
// with its own IPAM may give a node several per family (Calico's blocks).
// nil for none.
func parsePodCIDRs(in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			return nil, fmt.Errorf("%q: want a CIDR such as 10.244.1.0/24 or fd00:10:244:1::/64", s)
		case p != p.Masked():
			return nil, fmt.Errorf("%q: host bits set (want %s)", s, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}
