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
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo: got %q, want %q", buf, msg)
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
