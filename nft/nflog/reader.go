package nflog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Config says which group to read and how to size the path from the kernel.
// Zero values take the defaults below.
type Config struct {
	// Group is the NFLOG group of the rules (`log group N`).
	Group uint16
	// NetNS is a file descriptor of the network namespace to read in; 0 is
	// the current one.
	NetNS int
	// QueueSize bounds the events waiting for the consumer (default 4096).
	QueueSize int
	// ReadBuffer is the socket's receive buffer in bytes (default 4 MiB),
	// set beyond net.core.rmem_max when the process has CAP_NET_ADMIN. It
	// absorbs bursts while the reader is descheduled; past it the kernel
	// drops batches (counted in Stats.Overruns and Stats.Lost).
	ReadBuffer int
	// CopyRange is how many bytes of each packet the kernel copies (default
	// 128: headers and ports).
	CopyRange uint32
	// QueueThreshold and FlushTimeout say when the kernel sends its batch
	// of packets: after QueueThreshold packets (default 32) or FlushTimeout
	// (default 50 ms, in steps of 10 ms) after the first, whichever comes
	// first. KernelBatchBytes caps one batch (default 64 KiB).
	QueueThreshold   uint32
	FlushTimeout     time.Duration
	KernelBatchBytes uint32
}

// Defaults of Config.
const (
	DefaultQueueSize        = 4096
	DefaultReadBuffer       = 4 << 20
	DefaultCopyRange        = 128
	DefaultQueueThreshold   = 32
	DefaultFlushTimeout     = 50 * time.Millisecond
	DefaultKernelBatchBytes = 64 << 10
)

func (c Config) withDefaults() Config {
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	if c.CopyRange == 0 {
		c.CopyRange = DefaultCopyRange
	}
	if c.QueueThreshold == 0 {
		c.QueueThreshold = DefaultQueueThreshold
	}
	if c.FlushTimeout <= 0 {
		c.FlushTimeout = DefaultFlushTimeout
	}
	if c.KernelBatchBytes == 0 {
		c.KernelBatchBytes = DefaultKernelBatchBytes
	}
	return c
}

// Stats counts what the Reader saw since Open. Every packet the rules logged
// is in exactly one of Received, QueueFull and Lost, except the lost ones
// after the last packet received (a gap shows only when a later packet
// arrives).
type Stats struct {
	// Received events were parsed and queued for the consumer.
	Received uint64
	// QueueFull events were dropped because the consumer was behind.
	QueueFull uint64
	// Lost events never reached the socket: gaps in the group's sequence
	// numbers, left by the kernel when the receive buffer was full.
	Lost uint64
	// Overruns counts the reads that failed with ENOBUFS (each means one
	// or more lost batches).
	Overruns uint64
	// Malformed packet messages could not be parsed (a copy shorter than
	// the IP header, an unknown IP version); they are not in Received.
	Malformed uint64
}

// Reader reads one NFLOG group. Open it, call Run (which blocks) and take the
// events from Events.
type Reader struct {
	cfg    Config
	conn   *netlink.Conn
	events chan Event
	// pending are packet messages that arrived before the bind's ack.
	pending []netlink.Message

	received, queueFull, lost, overruns, malformed atomic.Uint64
	lastSeq                                        uint32
	seenSeq                                        bool
	closeOnce                                      sync.Once
}

// Open binds the group in the configured network namespace. The kernel
// starts copying packets to the socket at once; they wait in the socket
// buffer until Run reads them.
func Open(cfg Config) (*Reader, error) {
	cfg = cfg.withDefaults()
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("nflog: open a netfilter netlink socket: %w", err)
	}
	r := &Reader{cfg: cfg, conn: conn, events: make(chan Event, cfg.QueueSize)}
	if err := r.setReadBuffer(); err != nil {
		conn.Close()
		return nil, err
	}
	if err := r.bind(); err != nil {
		conn.Close()
		return nil, err
	}
	return r, nil
}

// bindTimeout bounds the wait for the kernel's answer to the bind.
const bindTimeout = 5 * time.Second

// bind sends the configuration and waits for its acknowledgement, keeping
// any packet message that the kernel sends before it.
func (r *Reader) bind() error {
	req, err := configMessage(r.cfg)
	if err != nil {
		return err
	}
	sent, err := r.conn.Send(req)
	if err != nil {
		return fmt.Errorf("nflog: bind group %d: %w", r.cfg.Group, err)
	}
	if err := r.conn.SetReadDeadline(time.Now().Add(bindTimeout)); err != nil {
		return fmt.Errorf("nflog: bind group %d: %w", r.cfg.Group, err)
	}
	defer func() { _ = r.conn.SetReadDeadline(time.Time{}) }()
	for {
		msgs, err := r.conn.Receive()
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("nflog: bind group %d: another socket reads it (another nftwarden, ulogd?), or CAP_NET_ADMIN is missing: %w", r.cfg.Group, err)
		}
		if err != nil {
			return fmt.Errorf("nflog: bind group %d: %w", r.cfg.Group, err)
		}
		for _, m := range msgs {
			if m.Header.Type == netlink.Error && m.Header.Sequence == sent.Header.Sequence {
				return nil
			}
			r.pending = append(r.pending, m)
		}
	}
}

// setReadBuffer sizes the receive buffer, beyond net.core.rmem_max when
// allowed (SO_RCVBUFFORCE needs CAP_NET_ADMIN, which reading NFLOG needs too).
func (r *Reader) setReadBuffer() error {
	rc, err := r.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("nflog: socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, r.cfg.ReadBuffer); serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, r.cfg.ReadBuffer)
		}
	}); err != nil {
		return fmt.Errorf("nflog: socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("nflog: set the receive buffer to %d bytes: %w", r.cfg.ReadBuffer, serr)
	}
	return nil
}

// Events delivers the events; it is closed when Run returns.
func (r *Reader) Events() <-chan Event { return r.events }

// Stats returns the counts so far; safe to call at any time.
func (r *Reader) Stats() Stats {
	return Stats{
		Received:  r.received.Load(),
		QueueFull: r.queueFull.Load(),
		Lost:      r.lost.Load(),
		Overruns:  r.overruns.Load(),
		Malformed: r.malformed.Load(),
	}
}

// Run reads the group until ctx ends (it then returns nil) or the socket
// fails, and closes Events when it returns. Call it once.
func (r *Reader) Run(ctx context.Context) error {
	defer close(r.events)
	stop := context.AfterFunc(ctx, func() { _ = r.conn.SetReadDeadline(time.Now()) })
	defer stop()
	r.handle(r.pending, time.Now())
	r.pending = nil
	for {
		msgs, err := r.conn.Receive()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, unix.ENOBUFS):
			// The kernel dropped batches for want of buffer space; the
			// sequence gap at the next packet says how many packets.
			r.overruns.Add(1)
			continue
		case err != nil:
			return fmt.Errorf("nflog: read group %d: %w", r.cfg.Group, err)
		}
		r.handle(msgs, time.Now())
	}
}

// handle turns packet messages into events and queues them without blocking.
func (r *Reader) handle(msgs []netlink.Message, received time.Time) {
	for _, m := range msgs {
		if m.Header.Type != msgPacket {
			continue
		}
		pm, err := decodePacketMessage(m.Data, received)
		if pm.hasSeq {
			r.countGap(pm.seq)
		}
		if err != nil {
			r.malformed.Add(1)
			continue
		}
		select {
		case r.events <- pm.event:
			r.received.Add(1)
		default:
			r.queueFull.Add(1)
		}
	}
}

// countGap adds the packets missing before seq to Lost. The group's
// sequence starts at 0 when it is bound and wraps at 2^32.
func (r *Reader) countGap(seq uint32) {
	expected := uint32(0)
	if r.seenSeq {
		expected = r.lastSeq + 1
	}
	r.lost.Add(uint64(seq - expected))
	r.lastSeq, r.seenSeq = seq, true
}

// Close unbinds the group (the kernel drops it with the socket). Call it
// after Run has returned, or instead of Run.
func (r *Reader) Close() error {
	var err error
	r.closeOnce.Do(func() { err = r.conn.Close() })
	return err
}
