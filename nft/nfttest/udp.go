package nfttest

import (
	"fmt"
	"net"
	"testing"
)

// UDPEcho is a UDP echo server that answers each datagram at once, except
// the one after HoldNext, whose answer waits for Release: a test makes an
// answer be in flight at the moment it chooses (say, when a flow's conntrack
// entry is deleted).
type UDPEcho struct {
	hold    chan bool     // one slot: hold the answer to the next datagram
	holding chan struct{} // a datagram's answer is held
	release chan struct{}
}

// ServeUDPEcho runs a UDPEcho on port in pod p, on all its addresses, until
// the test ends.
func ServeUDPEcho(t testing.TB, p *Pod, port int) *UDPEcho {
	t.Helper()
	s := &UDPEcho{hold: make(chan bool, 1), holding: make(chan struct{}, 1), release: make(chan struct{})}
	s.hold <- false
	var pc net.PacketConn
	if err := p.NS.Run(func() error {
		var err error
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("udp server in pod %s: %v", p.Name, err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = pc.Close()
		close(done)
	})
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			held := <-s.hold
			s.hold <- false
			if held {
				s.holding <- struct{}{}
				select {
				case <-s.release:
				case <-done:
					return
				}
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return s
}

// HoldNext makes the server hold its answer to the next datagram.
func (s *UDPEcho) HoldNext() {
	<-s.hold
	s.hold <- true
}

// Holding receives once the server holds an answer.
func (s *UDPEcho) Holding() <-chan struct{} { return s.holding }

// Release sends the held answer.
func (s *UDPEcho) Release() { s.release <- struct{}{} }
