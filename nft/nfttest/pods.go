package nfttest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Pod is a pod for packet tests: a network namespace of its own wired to a
// node namespace, with an IPv4 and, unless V6 is the zero Addr, an IPv6
// address.
type Pod struct {
	Name   string
	V4, V6 netip.Addr
	NS     *NetNS
}

// The gateway addresses every routed pod uses (ConnectRouted), outside the
// pods' own ranges.
var (
	Gateway4 = netip.MustParseAddr("198.19.255.1")
	Gateway6 = netip.MustParseAddr("2001:db8:ffff::1")
)

// WirePods gives each pod a namespace and connects it to the node with a
// veth pair: routed (host routes, forwarding on) or bridged (one bridge, one
// subnet, br_netfilter passing bridged IP traffic through the forward hook).
func WirePods(t testing.TB, node *NetNS, bridged bool, pods ...*Pod) {
	t.Helper()
	if bridged {
		AddBridge(t, node, "br0")
	} else {
		EnableForwarding(t, node)
	}
	for _, p := range pods {
		p.NS = NewNetNS(t)
		veth := "veth-" + p.Name
		if bridged {
			ConnectBridged(t, node, p.NS, "br0", netip.PrefixFrom(p.V4, 24), netip.PrefixFrom(p.V6, 64), veth)
			continue
		}
		var gw6 netip.Addr
		if p.V6.IsValid() {
			gw6 = Gateway6
		}
		ConnectRouted(t, node, p.NS, p.V4, p.V6, Gateway4, gw6, veth)
	}
}

// Serve runs TCP echo servers and a UDP echo server (udpPort 0: none; see
// ServeUDPEcho) on the given ports in the pod, on all its addresses, until
// the test ends.
func Serve(t testing.TB, p *Pod, tcpPorts []int, udpPort int) {
	t.Helper()
	var closers []io.Closer
	err := p.NS.Run(func() error {
		for _, port := range tcpPorts {
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				return err
			}
			closers = append(closers, l)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
				}
			}()
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range closers {
			_ = c.Close()
		}
	})
	if err != nil {
		t.Fatalf("servers in pod %s: %v", p.Name, err)
	}
	if udpPort != 0 {
		ServeUDPEcho(t, p, udpPort)
	}
}

// ProbeTimeout bounds a probe: a denied packet is dropped silently, so a
// denied connection is one that gets no answer in time.
const ProbeTimeout = 2 * time.Second

// Dial opens a connection from pod p to dst (inside p's namespace).
func Dial(p *Pod, network string, dst netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := p.NS.Run(func() error {
		var err error
		c, err = net.DialTimeout(network, dst.String(), ProbeTimeout)
		return err
	})
	return c, err
}

// Echo sends a message on c and waits for it to come back.
func Echo(c net.Conn, msg string) error { return EchoWithin(c, msg, ProbeTimeout) }

// Probe reports whether a new connection (TCP) or exchange (UDP) from p to
// dst gets through.
func Probe(p *Pod, network string, dst netip.AddrPort) (bool, error) {
	c, err := Dial(p, network, dst)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, nil
		}
		return false, err
	}
	defer c.Close()
	if err := Echo(c, "ping"); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
