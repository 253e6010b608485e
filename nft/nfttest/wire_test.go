package nfttest

// Wiring test, no nftables: two pods on one node, routed and bridged, must
// reach each other over IPv4 and IPv6.
//
//	routed:  pod a 198.18.1.10/32 2001:db8:1::10/128, pod b .11/::11, gateway
//	         198.19.255.1/32 and 2001:db8:ffff::1/128 on each node-side veth
//	bridged: pod a 198.18.1.10/24 2001:db8:1::10/64, pod b .11/::11 on br0

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestWire(t *testing.T) {
	if testing.Short() {
		t.Skip("wiring test skipped in -short mode")
	}
	a4, a6 := netip.MustParseAddr("198.18.1.10"), netip.MustParseAddr("2001:db8:1::10")
	b4, b6 := netip.MustParseAddr("198.18.1.11"), netip.MustParseAddr("2001:db8:1::11")
	gw4, gw6 := netip.MustParseAddr("198.19.255.1"), netip.MustParseAddr("2001:db8:ffff::1")
	for _, tc := range []struct {
		name    string
		connect func(t *testing.T, node, a, b *NetNS)
	}{
		{"routed", func(t *testing.T, node, a, b *NetNS) {
			EnableForwarding(t, node)
			for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
				if v, err := GetSysctl(node, key); err != nil || strings.TrimSpace(v) != "1" {
					t.Fatalf("%s in node = %q, %v; want 1", key, v, err)
				}
			}
			ConnectRouted(t, node, a, a4, a6, gw4, gw6, "veth-a")
			ConnectRouted(t, node, b, b4, b6, gw4, gw6, "veth-b")
		}},
		{"bridged", func(t *testing.T, node, a, b *NetNS) {
			AddBridge(t, node, "br0")
			ConnectBridged(t, node, a, "br0", netip.PrefixFrom(a4, 24), netip.PrefixFrom(a6, 64), "veth-a")
			ConnectBridged(t, node, b, "br0", netip.PrefixFrom(b4, 24), netip.PrefixFrom(b6, 64), "veth-b")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, a, b := NewNetNS(t), NewNetNS(t), NewNetNS(t)
			tc.connect(t, node, a, b)
			var l net.Listener
			if err := b.Run(func() error {
				var err error
				l, err = net.Listen("tcp", ":8080")
				return err
			}); err != nil {
				t.Fatalf("listen in b: %v", err)
			}
			t.Cleanup(func() { _ = l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					_, _ = c.Write([]byte("hi"))
					_ = c.Close()
				}
			}()
			for _, dst := range []netip.Addr{b4, b6} {
				if err := hello(a, netip.AddrPortFrom(dst, 8080)); err != nil {
					for _, ns := range []*NetNS{node, a, b} {
						out, _ := ns.Exec("sh", "-c", "ip addr; ip route; ip -6 route")
						t.Logf("%s:\n%s", ns.Name, out)
					}
					t.Fatalf("a -> %v: %v", dst, err)
				}
			}
		})
	}
}

func hello(from *NetNS, dst netip.AddrPort) error {
	var c net.Conn
	if err := from.Run(func() error {
		var err error
		c, err = net.DialTimeout("tcp", dst.String(), 2*time.Second)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != "hi" {
		return fmt.Errorf("got %q, want %q", b, "hi")
	}
	return nil
}
