package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The kernel announces every committed nf_tables change of a network
// namespace on the multicast group NFNLGRP_NFTABLES: one message per table,
// chain, rule, set, set element or object added or deleted, with the name of
// its table as attribute 1, then one NFT_MSG_NEWGEN that ends the batch (the
// daemon's own change monitor, nft/monitor.go, reads the same group). An
// NFTBatchWatch opens its own socket on that group in a node's namespace and
// hands over each batch that touched one table, so that a benchmark can tell
// when a change of the API server has reached the kernel without sleeping or
// polling: the batch that carries it ends when its NEWGEN is read.

// NFTMessage is one notification of a batch about the watched table.
type NFTMessage struct {
	// Type is the NFT_MSG_* type (NEWSETELEM, DELRULE, ...).
	Type uint8
	// Attrs are the message's attributes (after the nfgenmsg header), as the
	// kernel sent them: table and object names, element keys, expressions.
	Attrs []byte
}

// Deletes reports whether the message removes something (DEL*, DESTROY*).
func (m NFTMessage) Deletes() bool {
	switch m.Type {
	case unix.NFT_MSG_DELTABLE, unix.NFT_MSG_DELCHAIN, unix.NFT_MSG_DELRULE, unix.NFT_MSG_DELSET,
		unix.NFT_MSG_DELSETELEM, unix.NFT_MSG_DELOBJ, unix.NFT_MSG_DELFLOWTABLE:
		return true
	}
	return false
}

// Element reports whether the message adds or deletes set (or map) elements.
func (m NFTMessage) Element() bool {
	return m.Type == unix.NFT_MSG_NEWSETELEM || m.Type == unix.NFT_MSG_DELSETELEM
}

// NFTBatch is one committed transaction that touched the watched table.
type NFTBatch struct {
	// End is when the watch read the batch's NEWGEN message, the last of its
	// notifications: the batch was committed before.
	End time.Time
	// Gen is the generation the batch made; PID and Process name the process
	// that committed it, as the kernel reports them.
	Gen     uint32
	PID     uint32
	Process string
	// Messages are the batch's notifications about the watched table, in
	// order (NEWGEN not counted); each set element is one message.
	Messages []NFTMessage
}

// NFTOp says which messages an NFTChange looks for.
type NFTOp int

// The ops of an NFTChange.
const (
	// NFTAny: additions and deletions.
	NFTAny NFTOp = iota
	// NFTAdd: NEW* messages only.
	NFTAdd
	// NFTDelete: DEL* messages only.
	NFTDelete
)

// NFTChange describes the kernel messages that show one expected change:
// messages of elements (Elements) or of anything else (rules, chains, sets)
// whose attributes contain Needle, added (NFTAdd), deleted (NFTDelete) or
// either. An address is an element's key bytes (4 for IPv4, in network
// order); a chain's name is a string with its terminating NUL, which a rule
// in the chain and a rule that jumps to it carry too.
type NFTChange struct {
	Elements bool
	Op       NFTOp
	Needle   []byte
}

// Carries reports whether the batch made change c: it holds a message of c
// of c's op, and, for NFTAdd or NFTDelete, none of the other op. A batch that
// rewrites a chain deletes and adds the rules it keeps, so a rule deleted and
// added again is not a deletion (nor an addition).
func (b *NFTBatch) Carries(c NFTChange) bool {
	var added, deleted bool
	for _, m := range b.Messages {
		if m.Element() != c.Elements || !bytes.Contains(m.Attrs, c.Needle) {
			continue
		}
		if m.Deletes() {
			deleted = true
		} else {
			added = true
		}
	}
	switch c.Op {
	case NFTAdd:
		return added && !deleted
	case NFTDelete:
		return deleted && !added
	}
	return added || deleted
}

// ErrNFTNotificationsLost means the kernel dropped notifications of the
// watched namespace (the watch's socket buffer was full, or a datagram did
// not fit its buffer): batches are missing or incomplete.
var ErrNFTNotificationsLost = errors.New("nf_tables notifications lost")

// nftWatchBuffer is the watch's socket buffer: a batch of 100,000 elements
// queues some 10-16 MB of notifications at once.
const nftWatchBuffer = 64 << 20

// NFTBatchWatch reads the nf_tables batches of one table in one network
// namespace. Create it with WatchNFTBatches (or Node.WatchNFTBatches), read
// with Next, end with Close.
type NFTBatchWatch struct {
	conn    *netlink.Conn
	table   string
	batches chan NFTBatch
	done    chan struct{}

	mu  sync.Mutex
	err error // why reading stopped
}

// WatchNFTBatches subscribes to the nf_tables notifications of network
// namespace netnsName (a name of `ip netns`) and reports, in order, each
// batch committed from then on that touched table (of any family).
func WatchNFTBatches(netnsName, table string) (*NFTBatchWatch, error) {
	ns, err := netns.GetFromName(netnsName)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", netnsName, err)
	}
	defer ns.Close()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns)})
	if err != nil {
		return nil, fmt.Errorf("nf_tables monitor in %s: %w", netnsName, err)
	}
	if err := forceReadBuffer(c, nftWatchBuffer); err != nil {
		c.Close()
		return nil, fmt.Errorf("nf_tables monitor in %s: %w", netnsName, err)
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		c.Close()
		return nil, fmt.Errorf("nf_tables monitor in %s: subscribe: %w", netnsName, err)
	}
	w := &NFTBatchWatch{conn: c, table: table, batches: make(chan NFTBatch, 1<<16), done: make(chan struct{})}
	go w.read()
	return w, nil
}

// WatchNFTBatches watches the batches of table in the node's namespace (the
// daemon's table is "nftwarden" unless --table says otherwise).
func (n *Node) WatchNFTBatches(table string) (*NFTBatchWatch, error) {
	return WatchNFTBatches(n.Netns, table)
}

// forceReadBuffer sets the socket's receive buffer beyond net.core.rmem_max
// (root may).
func forceReadBuffer(c *netlink.Conn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_RCVBUFFORCE: %w", serr)
	}
	return nil
}

// Next returns the next batch, or an error when ctx ends first or the watch
// stopped (Close, a failed socket, ErrNFTNotificationsLost). Batches read
// before a loss are returned first.
func (w *NFTBatchWatch) Next(ctx context.Context) (NFTBatch, error) {
	select {
	case b, ok := <-w.batches:
		if ok {
			return b, nil
		}
		return NFTBatch{}, w.stopped()
	case <-ctx.Done():
		return NFTBatch{}, ctx.Err()
	}
}

func (w *NFTBatchWatch) stopped() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close stops the watch and waits for its reader.
func (w *NFTBatchWatch) Close() {
	_ = w.conn.SetReadDeadline(time.Unix(1, 0))
	<-w.done
	w.conn.Close()
}

// read receives datagrams until the socket fails or Close, collecting each
// batch's messages about the table until its NEWGEN.
func (w *NFTBatchWatch) read() {
	defer close(w.done)
	defer close(w.batches)
	buf := make([]byte, 1<<16)
	var cur NFTBatch
	for {
		n, err := receive(w.conn, buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.fail(errors.New("nf_tables batch watch closed"))
			return
		case errors.Is(err, unix.ENOBUFS):
			w.fail(fmt.Errorf("%w: the socket buffer overflowed", ErrNFTNotificationsLost))
			return
		case err != nil:
			w.fail(fmt.Errorf("nf_tables batch watch: %w", err))
			return
		case n > len(buf):
			w.fail(fmt.Errorf("%w: a datagram of %d bytes was truncated", ErrNFTNotificationsLost, n))
			return
		}
		now := time.Now()
		for _, m := range splitMessages(buf[:n]) {
			if m.Type != unix.NFT_MSG_NEWGEN {
				if tableOf(m.Attrs) == w.table {
					m.Attrs = bytes.Clone(m.Attrs)
					cur.Messages = append(cur.Messages, m)
				}
				continue
			}
			if len(cur.Messages) == 0 {
				continue // a batch of other tables
			}
			cur.End = now
			cur.Gen, cur.PID, cur.Process = genInfo(m.Attrs)
			select {
			case w.batches <- cur:
			default:
				w.fail(fmt.Errorf("%w: %d batches were not read", ErrNFTNotificationsLost, cap(w.batches)))
				return
			}
			cur = NFTBatch{}
		}
	}
}

func (w *NFTBatchWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

// receive reads one datagram; n is its full length (MSG_TRUNC), which may
// exceed buf.
func receive(c *netlink.Conn, buf []byte) (int, error) {
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

// splitMessages returns the nf_tables messages of a datagram; Attrs alias b.
func splitMessages(b []byte) []NFTMessage {
	var out []NFTMessage
	for len(b) >= unix.NLMSG_HDRLEN {
		size := int(binary.NativeEndian.Uint32(b[0:4]))
		if size < unix.NLMSG_HDRLEN || size > len(b) {
			return out // malformed: the kernel never sends this
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		data := b[unix.NLMSG_HDRLEN:size]
		b = b[min((size+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
		// After the nfgenmsg header (family, version, resource id).
		if typ>>8 == unix.NFNL_SUBSYS_NFTABLES && len(data) >= 4 {
			out = append(out, NFTMessage{Type: uint8(typ), Attrs: data[4:]})
		}
	}
	return out
}

// tableOf returns attribute 1 of an object message: its table's name (the
// table's own name for a table).
func tableOf(attrs []byte) string {
	ad, err := netlink.NewAttributeDecoder(attrs)
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == 1 {
			return ad.String()
		}
	}
	return ""
}

// genInfo decodes a NEWGEN message (big-endian numbers).
func genInfo(attrs []byte) (gen, pid uint32, process string) {
	ad, err := netlink.NewAttributeDecoder(attrs)
	if err != nil {
		return 0, 0, ""
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_GEN_ID:
			gen = ad.Uint32()
		case unix.NFTA_GEN_PROC_PID:
			pid = ad.Uint32()
		case unix.NFTA_GEN_PROC_NAME:
			process = ad.String()
		}
	}
	return gen, pid, process
}
