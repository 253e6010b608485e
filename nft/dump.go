package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Listings (Read, Reconcile, set definitions, handles, counters) go through
// dumper rather than netlink.Conn.Execute, and their attributes through
// attrs rather than netlink.AttributeDecoder. A full read of a node of
// 10,000 policies is some 2,000 set dumps and a rule dump of several MB:
// Execute peeks at every datagram before reading it into a new buffer and
// copies each message, and an AttributeDecoder unmarshals all attributes of
// a level into a new slice before the first is looked at (at every nesting
// level of every expression). That was two thirds of a no-op Reconcile's
// user CPU and most of its garbage (pprof, BenchmarkKernelReconcileNoop).
// dumper reads each datagram into one reused buffer and hands out the
// messages in place; attrs walks attributes without allocating.

// dumper sends requests on one netlink socket and walks the answers in place.
// It is not safe for concurrent use.
type dumper struct {
	conn *netlink.Conn
	buf  []byte
	seq  uint32
}

// dumpBuffer holds the largest datagram the kernel sends to a listing: dump
// parts are at most 32 KiB (the kernel caps them so), answers to single
// requests are smaller.
const dumpBuffer = 64 << 10

func newDumper(c *netlink.Conn) *dumper { return &dumper{conn: c, buf: make([]byte, dumpBuffer)} }

// errDumpInterrupted: the kernel flagged a dump as inconsistent (the ruleset
// changed while it ran); the caller reads again.
var errDumpInterrupted = errors.New("the ruleset changed during the listing")

// request sends an nf_tables request of type msg with family fam and the
// given attributes, as a dump if dump is set, and calls fn for every answer
// message with its type and its data after the nfgenmsg header. That data
// lives in the receive buffer: fn must copy what it keeps. An error answer
// ends the request with its errno (wrapped); an error of fn ends it after the
// rest of the answer has been read, so that the socket stays clean.
func (d *dumper) request(msg uint16, fam byte, dump bool, attrs []netlink.Attribute, fn func(typ uint16, data []byte) error) error {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return fmt.Errorf("marshal request: %w", err)
	}
	flags := netlink.Request
	if dump {
		flags |= netlink.Dump
	}
	d.seq++
	seq := d.seq
	req := appendMessage(make([]byte, 0, 20+len(data)), netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg), Flags: flags},
		Data:   append([]byte{fam, unix.NFNETLINK_V0, 0, 0}, data...),
	}, seq)
	if err := sendTo(d.conn, req); err != nil {
		return err
	}
	var fnErr, interrupted error
	for {
		n, err := d.receive()
		if err != nil {
			return err
		}
		for b := d.buf[:n]; len(b) > 0; {
			if len(b) < unix.NLMSG_HDRLEN {
				return fmt.Errorf("short netlink message (%d bytes)", len(b))
			}
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return fmt.Errorf("netlink message of length %d in %d bytes", l, len(b))
			}
			typ := binary.NativeEndian.Uint16(b[4:6])
			mflags := binary.NativeEndian.Uint16(b[6:8])
			mseq := binary.NativeEndian.Uint32(b[8:12])
			body := b[unix.NLMSG_HDRLEN:l]
			b = b[min(nlmsgAlign(l), len(b)):]
			if mseq != seq {
				continue // the rest of an earlier, abandoned answer
			}
			switch typ {
			case unix.NLMSG_DONE:
				if len(body) >= 4 {
					if errno := unix.Errno(-int32(binary.NativeEndian.Uint32(body))); errno != 0 {
						return errno
					}
				}
				return errors.Join(fnErr, interrupted)
			case unix.NLMSG_ERROR:
				if len(body) < 4 {
					return unix.EBADMSG
				}
				if errno := unix.Errno(-int32(binary.NativeEndian.Uint32(body))); errno != 0 {
					return errno
				}
				continue // an acknowledgement
			}
			if mflags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = errDumpInterrupted
			}
			if fnErr == nil {
				if len(body) < 4 {
					fnErr = fmt.Errorf("short nf_tables message")
				} else {
					fnErr = fn(typ&0xff, body[4:])
				}
			}
			if !dump {
				return errors.Join(fnErr, interrupted)
			}
		}
	}
}

// receive reads one datagram into d.buf, waiting for it.
func (d *dumper) receive() (int, error) {
	n, err := receiveFrom(d.conn, d.buf)
	if err != nil {
		return 0, err
	}
	if n > len(d.buf) {
		// Cannot happen with the kernel's dump part size; the datagram
		// is lost, so the answer is incomplete.
		return 0, fmt.Errorf("netlink datagram of %d bytes truncated to %d", n, len(d.buf))
	}
	return n, nil
}

// receiveFrom reads one datagram from c into buf, waiting for one; n is its
// full length (MSG_TRUNC), which may exceed the buffer.
func receiveFrom(c *netlink.Conn, buf []byte) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_TRUNC)
		return rerr != unix.EAGAIN
	}); err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, os.NewSyscallError("recvfrom", rerr)
	}
	return n, nil
}

// sendTo writes one datagram to the kernel on c.
func sendTo(c *netlink.Conn, buf []byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	}); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("sendto", serr)
	}
	return nil
}

// attrs walks the netlink attributes of b in place:
//
//	for a := (attrs{b: data}); a.next(); { switch a.typ { ... a.u32() ... } }
//	if a.err != nil { ... }
//
// Values are big-endian, as nf_tables sends them. A malformed attribute or a
// value of the wrong size sets err and ends the walk.
type attrs struct {
	b   []byte
	typ uint16 // without the nested and byte-order flags
	val []byte
	err error
}

func (a *attrs) next() bool {
	if a.err != nil || len(a.b) == 0 {
		return false
	}
	if len(a.b) < 4 {
		a.err = fmt.Errorf("truncated netlink attribute (%d bytes)", len(a.b))
		return false
	}
	l := int(binary.NativeEndian.Uint16(a.b[0:2]))
	if l < 4 || l > len(a.b) {
		a.err = fmt.Errorf("netlink attribute of length %d in %d bytes", l, len(a.b))
		return false
	}
	a.typ = binary.NativeEndian.Uint16(a.b[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
	a.val = a.b[4:l]
	a.b = a.b[min(nlmsgAlign(l), len(a.b)):]
	return true
}

func (a *attrs) u32() uint32 {
	if len(a.val) != 4 {
		a.fail(4)
		return 0
	}
	return binary.BigEndian.Uint32(a.val)
}

func (a *attrs) u64() uint64 {
	if len(a.val) != 8 {
		a.fail(8)
		return 0
	}
	return binary.BigEndian.Uint64(a.val)
}

// str is a NUL-terminated string value.
func (a *attrs) str() string {
	v := a.val
	for len(v) > 0 && v[len(v)-1] == 0 {
		v = v[:len(v)-1]
	}
	return string(v)
}

// nested returns a walk of the attributes inside this one.
func (a *attrs) nested() attrs { return attrs{b: a.val} }

func (a *attrs) fail(want int) {
	a.err = fmt.Errorf("attribute %d has %d bytes, want %d", a.typ, len(a.val), want)
	a.b = nil
}

// dataValue returns NFTA_DATA_VALUE from inside an nft_data attribute (the
// value of a comparison, range bound, mask or set key), nil if it has none.
func dataValue(b []byte) ([]byte, error) {
	var v []byte
	a := attrs{b: b}
	for a.next() {
		if a.typ == unix.NFTA_DATA_VALUE {
			v = a.val
		}
	}
	return v, a.err
}
