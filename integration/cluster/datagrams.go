package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// SendDatagrams sends count UDP datagrams from pod from to addr:port, each from a
// socket of its own (a new source port, so a new connection for conntrack), as fast
// as the socket takes them: a flood for rate-limit tests, or with count 1 a single
// packet whose log line can be counted exactly (a TCP probe retransmits its SYN).
func (e *Env) SendDatagrams(from *Pod, addr netip.Addr, port uint16, count int) error {
	if from.APIOnly() {
		return fmt.Errorf("send from %s: the pod has no network namespace", from)
	}
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port))
	return inNetns(from.Netns, func() error {
		for i := range count {
			c, err := net.DialUDP("udp", nil, dst)
			if err != nil {
				return fmt.Errorf("datagram %d from %s to %s: %w", i, from, dst, err)
			}
			_, err = c.Write([]byte("nftwarden test datagram"))
			c.Close()
			// A refused port (ICMP from the peer) surfaces on a later write of the
			// same socket only; every datagram has its own socket, so any error
			// here is the harness's own.
			if err != nil {
				return fmt.Errorf("datagram %d from %s to %s: %w", i, from, dst, err)
			}
		}
		return nil
	})
}

// DatagramCounter counts the UDP datagrams a pod receives on one port.
type DatagramCounter struct {
	conn  *net.UDPConn
	count atomic.Int64
	done  chan struct{}
}

// CountDatagrams listens in pod to's namespace on UDP port (all addresses) and counts
// what arrives until Close. The port must be one the pod's agent does not serve.
func (e *Env) CountDatagrams(to *Pod, port uint16) (*DatagramCounter, error) {
	if to.APIOnly() {
		return nil, fmt.Errorf("listen in %s: the pod has no network namespace", to)
	}
	var conn *net.UDPConn
	err := inNetns(to.Netns, func() error {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: int(port)})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on udp/%d in %s: %w", port, to, err)
	}
	d := &DatagramCounter{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := conn.ReadFromUDP(buf); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			d.count.Add(1)
		}
	}()
	return d, nil
}

// Count is the number of datagrams received so far.
func (d *DatagramCounter) Count() int64 { return d.count.Load() }

// Close stops listening and returns the final count.
func (d *DatagramCounter) Close() int64 {
	d.conn.Close()
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
	}
	return d.count.Load()
}
