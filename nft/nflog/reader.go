package nflog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	gonflog "github.com/florianl/go-nflog/v2"
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
	// (default 50 ms, in steps of 10 ms, at least 10 ms) after the first,
	// whichever comes first. A batch is also sent when it fills the
	// kernel's buffer for the group, which go-nflog leaves at the kernel's
	// default (about a page).
	QueueThreshold uint32
	FlushTimeout   time.Duration
}

// Defaults of Config.
const (
	DefaultQueueSize      = 4096
	DefaultReadBuffer     = 4 << 20
	DefaultCopyRange      = 128
	DefaultQueueThreshold = 32
	DefaultFlushTimeout   = 50 * time.Millisecond
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
	return c
}

// flushTimeoutUnit is the kernel's unit of the flush timeout (1/100 s).
const flushTimeoutUnit = 10 * time.Millisecond

// goNflogConfig is the group's configuration as go-nflog takes it.
func (c Config) goNflogConfig() *gonflog.Config {
	// go-nflog leaves a timeout of 0 unset, and the kernel's default is a
	// whole second: round up to the kernel's unit instead.
	timeout := max(uint32((c.FlushTimeout+flushTimeoutUnit-1)/flushTimeoutUnit), 1)
	return &gonflog.Config{
		Group:    c.Group,
		NetNS:    c.NetNS,
		Copymode: gonflog.CopyPacket,
		Bufsize:  c.CopyRange, // go-nflog's name for the copy range
		QThresh:  c.QueueThreshold,
		Timeout:  timeout,
		// Per-group sequence numbers: their gaps count the lost packets.
		Flags: gonflog.FlagSeq,
	}
}

// Stats counts what the Reader saw since Open. Every packet the rules logged
// is in exactly one of Received, QueueFull, Lost and Malformed, except the
// lost ones after the last packet received (a gap shows only when a later
// packet arrives).
type Stats struct {
	// Received events were parsed and queued for the consumer.
	Received uint64
	// QueueFull events were dropped because the consumer was behind.
	QueueFull uint64
	// Lost events never reached the consumer: gaps in the group's sequence
	// numbers, left by the kernel when the receive buffer was full (and by
	// the rare message that go-nflog could not decode and skipped).
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
	nf     *gonflog.Nflog
	events chan Event

	// ctx ends the reading: go-nflog stops its receiving goroutine when it
	// ends. Run cancels it when its own context ends or it returns, Close
	// when it is called.
	ctx    context.Context
	cancel context.CancelFunc
	// started is closed by Run: until then go-nflog's goroutine waits in
	// deliver with the first batch and the kernel's further packets wait
	// in the socket buffer (or are lost when it is full, as without a
	// reader).
	started chan struct{}
	// failed carries the error that stopped go-nflog's goroutine.
	failed chan error
	// mu orders deliver's sends with Run's closing of events (go-nflog's
	// goroutine may still be in deliver when Run returns).
	mu           sync.Mutex
	eventsClosed bool

	received, queueFull, lost, overruns, malformed atomic.Uint64
	// lastSeq and seenSeq belong to go-nflog's goroutine (deliver).
	lastSeq   uint32
	seenSeq   bool
	closeOnce sync.Once
}

// Open binds the group in the configured network namespace. The kernel
// starts copying packets to the socket at once; they wait in the socket
// buffer until Run reads them. A group of a network namespace has one
// reader: the kernel refuses a second one with EPERM ("operation not
// permitted", which is also what a missing CAP_NET_ADMIN gives).
func Open(cfg Config) (*Reader, error) {
	cfg = cfg.withDefaults()
	nf, err := gonflog.Open(cfg.goNflogConfig())
	if err != nil {
		return nil, fmt.Errorf("nflog: open a netfilter netlink socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reader{cfg: cfg, nf: nf, events: make(chan Event, cfg.QueueSize),
		ctx: ctx, cancel: cancel, started: make(chan struct{}), failed: make(chan error, 1)}
	if err := r.setReadBuffer(); err != nil {
		r.Close()
		return nil, err
	}
	// go-nflog binds the group and configures it here, then receives in
	// a goroutine of its own until ctx ends.
	if err := nf.RegisterWithErrorFunc(ctx, r.deliver, r.readFailed); err != nil {
		r.Close()
		return nil, fmt.Errorf("nflog: bind group %d (\"operation not permitted\": another socket reads it, e.g. another nftwarden or ulogd, or CAP_NET_ADMIN is missing): %w", cfg.Group, err)
	}
	return r, nil
}

// setReadBuffer sizes the receive buffer, beyond net.core.rmem_max when
// allowed (SO_RCVBUFFORCE needs CAP_NET_ADMIN, which reading NFLOG needs
// too). go-nflog has no setting for it; its socket is go-nflog's Con.
func (r *Reader) setReadBuffer() error {
	rc, err := r.nf.Con.SyscallConn()
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

// Run reads the group until ctx ends or Close is called (it then returns
// nil) or the socket fails, and closes Events when it returns. Call it once.
func (r *Reader) Run(ctx context.Context) error {
	defer r.closeEvents()
	defer r.cancel()
	stop := context.AfterFunc(ctx, r.cancel)
	defer stop()
	close(r.started)
	select {
	case <-r.ctx.Done():
		return nil
	case err := <-r.failed:
		return fmt.Errorf("nflog: read group %d: %w", r.cfg.Group, err)
	}
}

// closeEvents closes Events once no deliver can send to it any more.
func (r *Reader) closeEvents() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.eventsClosed = true
	close(r.events)
}

// deliver is go-nflog's hook, called on its goroutine for each packet
// message; a result other than 0 stops that goroutine.
func (r *Reader) deliver(a gonflog.Attribute) int {
	select {
	case <-r.started:
	case <-r.ctx.Done():
		return 1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.eventsClosed {
		return 1
	}
	r.handle(a, time.Now())
	return 0
}

// readFailed is go-nflog's error hook, called on its goroutine when a read
// of the socket fails; a result other than 0 stops that goroutine.
func (r *Reader) readFailed(err error) int {
	if r.ctx.Err() != nil {
		// go-nflog stops a read with a deadline in the past when ctx ends.
		return 1
	}
	if errors.Is(err, unix.ENOBUFS) {
		// The kernel dropped batches for want of buffer space; the
		// sequence gap at the next packet says how many packets. The
		// socket stays good: read on.
		r.overruns.Add(1)
		return 0
	}
	select {
	case r.failed <- err:
	default:
	}
	return 1
}

// handle turns one packet message into an event and queues it without
// blocking. Only one goroutine at a time may call it.
func (r *Reader) handle(a gonflog.Attribute, received time.Time) {
	if a.Seq != nil {
		r.countGap(*a.Seq)
	}
	ev, err := eventOf(a, received)
	if err != nil {
		r.malformed.Add(1)
		return
	}
	// Count before the send, so that the consumer never holds an event
	// that Stats does not count yet. handle is the only sender (go-nflog
	// calls deliver from one goroutine), so room seen here stays.
	if len(r.events) == cap(r.events) {
		r.queueFull.Add(1)
		return
	}
	r.received.Add(1)
	r.events <- ev
}

// countGap adds the packets missing before seq to Lost. The group's
// sequence starts at 0 when it is configured and wraps at 2^32.
func (r *Reader) countGap(seq uint32) {
	expected := uint32(0)
	if r.seenSeq {
		expected = r.lastSeq + 1
	}
	r.lost.Add(uint64(seq - expected))
	r.lastSeq, r.seenSeq = seq, true
}

// Close stops the reading and closes the socket, which unbinds the group.
// Call it after Run has returned, or instead of Run.
func (r *Reader) Close() error {
	var err error
	r.closeOnce.Do(func() {
		// Ending ctx ends go-nflog's goroutines; closing the socket makes
		// its receiving one return if it is in a read. go-nflog's own
		// Close would also wait for its goroutine watching ctx, but that
		// goroutine joins go-nflog's WaitGroup only once it runs, so a
		// Close soon after Open races with it (the race detector says
		// so): close the socket alone.
		r.cancel()
		err = r.nf.Con.Close()
	})
	return err
}
