package nft

import (
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Netlink socket set-up for Kernel: dump part size, buffer sizes, port IDs.

// primeDumpSize makes the kernel fill dumps in 32 KiB parts on this socket
// instead of one page. The kernel sizes dump parts by the largest recvmsg
// buffer it has seen on the socket, and set element dumps restart their walk
// of the set for every part, so small parts make listing a large set
// quadratic. One recvmsg with a 32 KiB buffer (a peek at the answer to a cheap
// request, which the normal receive then consumes) is enough.
func primeDumpSize(c *netlink.Conn) error {
	if c == nil {
		return nil
	}
	if _, err := c.Send(getgenRequest()); err != nil {
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, 32<<10)
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		_, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN
	}); err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	_, err = c.Receive()
	return err
}

// portID returns the port ID the kernel bound the socket to.
func portID(c *netlink.Conn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("netlink socket: %w", err)
	}
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil {
		return 0, fmt.Errorf("netlink socket: %w", err)
	}
	if serr != nil {
		return 0, fmt.Errorf("netlink socket name: %w", serr)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return 0, fmt.Errorf("netlink socket name: unexpected address %T", sa)
	}
	return nl.Pid, nil
}

// sizeBuffers raises the socket buffers beyond the sysctl limits when allowed
// (CAP_NET_ADMIN, which programming nftables needs anyway).
func sizeBuffers(c *netlink.Conn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], size); e != nil {
				if e = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], size); e != nil {
					serr = e
				}
			}
		}
	})
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("netlink socket buffers: %w", serr)
	}
	return nil
}

// growBuffers makes the batch socket's buffers hold a batch of the given
// size, with room for the kernel's answers. The kernel refuses a send larger
// than the send buffer, and a batch split in several sends would not be
// atomic, so a batch that cannot fit fails whole, before anything is sent.
func (k *Kernel) growBuffers(batch int) error {
	need := batch + 64<<10
	if need > k.bufLimit {
		return fmt.Errorf("batch of %d bytes is larger than one netlink send may be (%d bytes): %w", batch, k.bufLimit, ErrInvalid)
	}
	size := k.bufSize
	for size < need {
		size *= 2
	}
	size = min(size, k.bufLimit)
	if err := sizeBuffers(k.batches, size); err != nil {
		return fmt.Errorf("grow netlink socket buffers to %d bytes: %w", size, err)
	}
	// Without CAP_NET_ADMIN in the initial user namespace (a container's
	// own user namespace) the kernel ignores SO_SNDBUFFORCE and silently
	// caps SO_SNDBUF at net.core.wmem_max: check what it granted. Netlink
	// refuses a message longer than the send buffer less 32 bytes.
	granted, err := sendBuffer(k.batches)
	if err != nil {
		return fmt.Errorf("grow netlink socket buffers: %w", err)
	}
	if granted-32 < batch {
		return fmt.Errorf("batch of %d bytes does not fit the %d-byte netlink send buffer the kernel grants "+
			"(a larger one needs CAP_NET_ADMIN in the initial user namespace, or a larger net.core.wmem_max): %w",
			batch, granted, ErrInvalid)
	}
	k.bufSize = size
	return nil
}

// sendBuffer returns the socket's send buffer size as the kernel accounts it
// (twice what was asked, for bookkeeping overhead).
func sendBuffer(c *netlink.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("netlink socket: %w", err)
	}
	var size int
	var serr error
	if err := rc.Control(func(fd uintptr) { size, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) }); err != nil {
		return 0, fmt.Errorf("netlink socket: %w", err)
	}
	if serr != nil {
		return 0, fmt.Errorf("netlink send buffer size: %w", serr)
	}
	return size, nil
}
