package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The change monitor listens to the nf_tables multicast group
// (NFNLGRP_NFTABLES), where the kernel announces every committed change of
// every table in the network namespace (net/netfilter/nf_tables_api.c,
// checked against Linux 6.18):
//
//   - each object message (table, chain, rule, set, set element, object,
//     flowtable) carries in its netlink header the port ID of the socket
//     whose batch made the change, the family in its nfgenmsg header, and
//     its table's name as attribute 1;
//   - a set element message names one element: a batch that adds 100,000
//     elements produces 100,000 messages, packed about 50 to a datagram of at
//     most a page;
//   - deleting a table announces the deletion of every rule, chain and set
//     in it, then of the table;
//   - each batch ends with one NFT_MSG_NEWGEN (new generation) message from
//     the same port, with the committing process's pid and name.
//
// So the monitor drops what comes from this Kernel's batch sockets, keeps
// the messages of other sockets about our table, and reports them when the
// batch's NEWGEN arrives.

// ForeignChange is one batch that changed this Kernel's table and was not
// sent by this Kernel, or a gap in what the monitor saw.
type ForeignChange struct {
	// What the batch did to the table, in a few words: `delete table
	// "nftwarden"`, `add rule to chain "egress"`, `delete elements of set
	// "ingress-v4"`, ... (distinct actions in order, the first few of them).
	What string
	// PID and Process name the process that committed the batch, as the
	// kernel reports them (its pid in the kernel's initial pid namespace);
	// zero when unknown.
	PID     uint32
	Process string
	// Lost: notifications were dropped (the monitor's socket buffer
	// overflowed), so the table may have changed in ways not reported; What
	// says why.
	Lost bool
}

func (c ForeignChange) String() string {
	if c.Lost {
		return c.What + ": the table may have changed"
	}
	return fmt.Sprintf("%s (by %s, pid %d)", c.What, c.Process, c.PID)
}

// defaultMonitorBuffer holds the notifications of a foreign batch of 100,000
// elements (about 80 bytes each, some 50 to a datagram of a page: 10-16 MB
// as the kernel accounts them) queued at once while the monitor reads them.
// This Kernel's own are dropped before they are queued.
const defaultMonitorBuffer = 64 << 20

// whatLimit bounds the distinct actions one ForeignChange names.
const whatLimit = 3

// WatchChanges reports, until ctx ends, each batch that changed the table and
// was not sent by this Kernel, once per batch, and every loss of
// notifications (ForeignChange.Lost; the watch goes on). Changes to other
// tables are ignored. It returns nil when ctx ends (Close does not stop it),
// or an error when it cannot subscribe or its socket fails; then Untouched is
// false until it runs again and a full read follows.
//
// fn runs on WatchChanges' goroutine and should return quickly: while it
// runs, notifications queue in the socket (64 MiB), and an overflow is
// reported as Lost.
//
// While it runs it also feeds Untouched. The kernel builds a notification for
// every element, rule, chain and set of every batch while anyone listens, also
// for this Kernel's own, which the monitor drops (a socket filter drops them
// in the kernel). A batch of this Kernel of 1,000 operations or more is sent
// with the monitor unsubscribed, which saves the kernel that work; if the
// generation shows that another batch was committed meanwhile, that gap is
// reported as Lost (see mute.go).
func (k *Kernel) WatchChanges(ctx context.Context, fn func(ForeignChange)) error {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.netns})
	if err != nil {
		return fmt.Errorf("nft: open change monitor: %w", err)
	}
	defer c.Close()
	if err := sizeBuffers(c, k.monitorBuf); err != nil {
		return fmt.Errorf("nft: prepare change monitor: %w", err)
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return fmt.Errorf("nft: subscribe to nf_tables changes: %w", err)
	}
	m := &monitor{conn: c, table: k.table.Name, tamper: k.tamper, report: fn, buf: make([]byte, 64<<10)}
	// Registered first: from then on a new batch socket of the Kernel
	// updates the filter too (addPort).
	k.tamper.watchStarted(m)
	defer k.tamper.watchStopped(m)
	if err := m.filter(); err != nil {
		return fmt.Errorf("nft: prepare change monitor: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	for {
		// interrupt sets what it hands over before it wakes the receive, so
		// this sees it whichever comes first.
		gap, failed := m.interrupted()
		switch {
		case failed != nil:
			return fmt.Errorf("nft: change monitor of table inet %s: %w", k.table.Name, failed)
		case gap != "":
			m.lost(gap)
		}
		if ctx.Err() != nil {
			return nil
		}
		n, err := m.receive()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Woken by interrupt: clear the deadline, then look (above).
			_ = c.SetReadDeadline(time.Time{})
			continue
		case errors.Is(err, unix.ENOBUFS):
			m.lost("the kernel dropped change notifications (the monitor's socket buffer was full)")
			continue
		case err != nil:
			return fmt.Errorf("nft: change monitor of table inet %s: %w", k.table.Name, err)
		case n > len(m.buf):
			m.lost(fmt.Sprintf("a change notification of %d bytes was truncated", n))
			continue
		}
		m.datagram(m.buf[:n])
	}
}

// monitor is the state of one WatchChanges: the foreign batch being
// collected until its NEWGEN.
type monitor struct {
	conn   *netlink.Conn
	table  string
	tamper *tamperLog
	report func(ForeignChange)
	buf    []byte
	// what the current foreign batch did to our table, distinct, in order;
	// seen indexes it. dropped is set when the batch deleted the table.
	what    []string
	seen    map[string]bool
	dropped string
	// Set from the Kernel's goroutine too: a gap to report or a failure to
	// stop on, handed over by a muted batch (mute.go), and the ports the
	// socket filter drops.
	mu       sync.Mutex
	gap      string
	failed   error
	filtered []uint32
}

// interrupt hands the monitor a gap to report or a failure to stop on and
// wakes it from its receive.
func (m *monitor) interrupt(gap string, failed error) {
	m.mu.Lock()
	if gap != "" {
		m.gap = gap
	}
	if failed != nil {
		m.failed = failed
	}
	m.mu.Unlock()
	_ = m.conn.SetReadDeadline(time.Now())
}

// interrupted returns and clears what interrupt handed over.
func (m *monitor) interrupted() (gap string, failed error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	gap, m.gap = m.gap, ""
	return gap, m.failed
}

// filter makes the kernel drop the notifications of this Kernel's batches
// before they reach the socket: a datagram holds the notifications of one
// batch, so its first message's port says whose it is. The monitor calls it
// when it starts, the Kernel whenever it opens a batch socket (before it
// sends a batch on it); the ports are read under the lock, so the last call
// attaches the newest. What the filter misses, datagram drops.
func (m *monitor) filter() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	own := m.tamper.ownPorts()
	if len(own) == len(m.filtered) && (len(own) == 0 || &own[0] == &m.filtered[0]) {
		return nil // addPort replaces the slice on every change
	}
	prog := []bpf.Instruction{bpf.LoadAbsolute{Off: 12, Size: 4}}
	for i, p := range own {
		// BPF loads in network order; the header is in host order.
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], p)
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(b[:]), SkipTrue: uint8(len(own) - i)})
	}
	prog = append(prog, bpf.RetConstant{Val: 0xffffffff}, bpf.RetConstant{Val: 0})
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("assemble socket filter: %w", err)
	}
	if err := m.conn.SetBPF(raw); err != nil {
		return fmt.Errorf("attach socket filter: %w", err)
	}
	m.filtered = own
	return nil
}

// receive reads one datagram; n is its full length (MSG_TRUNC), which may
// exceed the buffer.
func (m *monitor) receive() (int, error) { return receiveFrom(m.conn, m.buf) }

// lost reports a gap: the batch being collected is incomplete and others may
// be missing entirely.
func (m *monitor) lost(why string) {
	m.tamper.touch()
	m.what, m.seen, m.dropped = nil, nil, ""
	m.report(ForeignChange{What: why, Lost: true})
}

// datagram handles the notifications of one datagram. It is on the path of
// every element this Kernel programs, so it reads each header in place and
// decodes nothing of this Kernel's own messages.
func (m *monitor) datagram(b []byte) {
	own := m.tamper.ownPorts() // after the receive: holds the port of any batch already sent
	for len(b) >= unix.NLMSG_HDRLEN {
		size := int(binary.NativeEndian.Uint32(b[0:4]))
		if size < unix.NLMSG_HDRLEN || size > len(b) {
			return // malformed: the kernel never sends this
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		port := binary.NativeEndian.Uint32(b[12:16])
		data := b[unix.NLMSG_HDRLEN:size]
		b = b[min(nlmsgAlign(size), len(b)):]
		if typ>>8 != unix.NFNL_SUBSYS_NFTABLES || len(data) < 4 || slices.Contains(own, port) {
			continue
		}
		if typ&0xff == unix.NFT_MSG_NEWGEN {
			m.endBatch(data)
			continue
		}
		if data[0] != unix.NFPROTO_INET || !m.ours(data[4:]) {
			continue
		}
		// Committed already: mark at once, not only when the batch ends.
		m.tamper.touch()
		d := describeMessage(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ)}, Data: data})
		if typ&0xff == unix.NFT_MSG_DELTABLE {
			m.dropped = d
		}
		if !m.seen[d] {
			if m.seen == nil {
				m.seen = map[string]bool{}
			}
			m.seen[d] = true
			m.what = append(m.what, d)
		}
	}
}

// ours reports whether the attributes of an object message name our table
// (attribute 1).
func (m *monitor) ours(attrs []byte) bool {
	ad, err := netlink.NewAttributeDecoder(attrs)
	if err != nil {
		return false
	}
	for ad.Next() {
		if ad.Type() == 1 {
			return ad.String() == m.table
		}
	}
	return false
}

// endBatch reports the batch collected so far, if it touched our table, with
// the committing process named in the NEWGEN message.
func (m *monitor) endBatch(gen []byte) {
	if len(m.what) == 0 {
		return
	}
	fc := ForeignChange{What: m.summary()}
	if ad, err := netlink.NewAttributeDecoder(gen[4:]); err == nil {
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_GEN_PROC_PID:
				fc.PID = ad.Uint32()
			case unix.NFTA_GEN_PROC_NAME:
				fc.Process = ad.String()
			}
		}
	}
	m.what, m.seen, m.dropped = nil, nil, ""
	m.report(fc)
}

// summary joins the first whatLimit actions of the batch and counts the
// others. A deleted table says it all: the kernel announces the deletion of
// each of its objects first.
func (m *monitor) summary() string {
	if m.dropped != "" {
		return m.dropped
	}
	what := m.what
	if len(what) <= whatLimit {
		return strings.Join(what, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(what[:whatLimit], "; "), len(what)-whatLimit)
}
