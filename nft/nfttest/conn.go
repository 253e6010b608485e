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

// EchoWithin sends msg on c (connected to an echo server, see Serve) and
// waits at most d for it to come back. Use it on a long-lived connection to
// tell whether it still carries data: a connection whose packets are dropped
// fails with a timeout (IsTimeout).
func EchoWithin(c net.Conn, msg string, d time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(d)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	return receive(c, msg)
}

// ReceiveWithin waits at most d for msg to arrive on c, the other end of a
// connection on which msg was sent: a connection whose packets are dropped
// fails with a timeout (IsTimeout).
func ReceiveWithin(c net.Conn, msg string, d time.Duration) error {
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return err
	}
	return receive(c, msg)
}

func receive(c net.Conn, msg string) error {
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("receive: got %q, want %q", buf, msg)
	}
	return nil
}

// IsTimeout reports whether err is a network timeout: what a probe or echo
// gets when policy drops its packets silently.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// MustDial opens a connection from pod p to dst, fails the test if it cannot,
// and closes it when the test ends: for long-lived connections whose fate a
// test follows with EchoWithin.
func MustDial(t testing.TB, p *Pod, network string, dst netip.AddrPort) net.Conn {
	t.Helper()
	c, err := Dial(p, network, dst)
	if err != nil {
		t.Fatalf("dial %s %s -> %v: %v", network, p.Name, dst, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// MustConnect opens a TCP connection from pod from to dst, an address of
// pod to, where it listens for this one connection, and returns both ends,
// closed when the test ends: for tests in which the server side must send
// first, which an echo server (Serve) never does.
func MustConnect(t testing.TB, from, to *Pod, dst netip.AddrPort) (client, server *net.TCPConn) {
	t.Helper()
	var l net.Listener
	if err := to.NS.Run(func() error {
		var err error
		l, err = net.Listen("tcp", dst.String())
		return err
	}); err != nil {
		t.Fatalf("listen on %v in pod %s: %v", dst, to.Name, err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	c := MustDial(t, from, "tcp", dst)
	s := <-accepted
	if s == nil {
		t.Fatalf("accept %s -> %v in pod %s failed", from.Name, dst, to.Name)
	}
	t.Cleanup(func() { _ = s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}
