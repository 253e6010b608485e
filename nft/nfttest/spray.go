package nfttest

import (
	"fmt"
	"net"
	"net/netip"
)

// SprayUDP sends n empty datagrams from pod p to dst, each on a connection of
// its own (another destination port, and another source socket every
// sprayPorts datagrams), so that a node between them tracks n connections:
// UDP entries stay nf_conntrack_udp_timeout (30 s) unreplied. Nothing needs
// to listen at dst. Datagrams the path drops are not resent: count the
// entries if the number matters.
func SprayUDP(p *Pod, dst netip.Addr, n int) error {
	return p.NS.Run(func() error {
		var c *net.UDPConn
		defer func() {
			if c != nil {
				c.Close()
			}
		}()
		for i := range n {
			if i%sprayPorts == 0 {
				if c != nil {
					c.Close()
				}
				var err error
				if c, err = net.ListenUDP("udp", nil); err != nil {
					return fmt.Errorf("spray from %s: %w", p.Name, err)
				}
			}
			to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, sprayFirstPort+uint16(i%sprayPorts)))
			if _, err := c.WriteToUDP(nil, to); err != nil {
				return fmt.Errorf("spray from %s to %v: %w", p.Name, to, err)
			}
		}
		return nil
	})
}

// The destination ports SprayUDP uses: 1024 and up.
const (
	sprayFirstPort = 1024
	sprayPorts     = 65536 - sprayFirstPort
)
