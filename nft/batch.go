package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Batches are sent by Kernel itself. The messages of rules, chains,
// elements (rulemsgs.go, elementmsgs.go) and objects are marshalled by Kernel
// too; google/nftables marshals the rest (the table, sets), which is rare.
//
// google/nftables (v0.3.0) asks the kernel to acknowledge every message of a
// batch, and to echo every rule back, and then reads those answers one
// receive call at a time. For a node program of 30,000 messages that reading
// costs more than the kernel's work. nf_tables does not need either: a batch
// is atomic, the kernel answers only the messages that fail when no
// acknowledgement is requested, and it answers them before sendmsg returns.
//
// So the library marshals its messages into a capturing test connection (its
// nltest hook, which never touches a socket), Kernel clears the
// acknowledge/echo flags (its own messages never set them but for the rules
// whose handles it asks for), wraps all of them in one BATCH_BEGIN/BATCH_END pair
// and sends them in one sendmsg on its own socket, then sends a GETGEN
// request outside the batch. Netlink answers requests of one socket in order,
// so every error of the batch arrives before the GETGEN answer; reading up to
// that answer collects all of them and leaves the socket clean.

// pendingBatch is one batch being built: the messages and, for each, the index
// of the transaction operation it comes from (-1: the table itself).
type pendingBatch struct {
	msgs  []netlink.Message
	op    []int
	bytes int
	// echoGen asks the kernel to tell this socket the generation the batch
	// committed, if it changed anything (mute.go); send sets gen and
	// committed from that answer.
	echoGen   bool
	gen       uint32
	committed bool
	// ruleEchoes are the rules the kernel echoed (kernel_rules.go), in
	// batch order.
	ruleEchoes []ruleEcho
}

// newBuilder returns a google/nftables connection that only marshals: every
// batch it flushes lands in *captured.
func newBuilder(captured *[]netlink.Message) (*nftables.Conn, error) {
	// Lasting: one test connection for the builder's life, because dialing
	// one per flush seeds a random source each time.
	return nftables.New(nftables.AsLasting(), nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		*captured = append(*captured, req...)
		// io.EOF makes the test connection answer every receive with no
		// messages, which the library's acknowledgement reader accepts.
		return nil, io.EOF
	}))
}

// queue marshals one step (the library calls of one operation) into b.
func (k *Kernel) queue(b *pendingBatch, s step) error {
	if err := s.fn(k.builder); err != nil {
		return err
	}
	k.captured = k.captured[:0]
	if err := k.builder.Flush(); err != nil {
		return err
	}
	if len(k.captured) < 2 {
		return nil // the step queued nothing
	}
	// Flush wrapped the step in its own batch begin and end; drop them.
	msgs := k.captured[1 : len(k.captured)-1]
	for i := range msgs {
		msgs[i].Header.Flags &^= netlink.Acknowledge | netlink.Echo
	}
	b.queueRaw(s.op, msgs)
	return nil
}

// queueRaw adds messages built without the library to b.
func (b *pendingBatch) queueRaw(op int, msgs []netlink.Message) {
	for _, m := range msgs {
		b.msgs = append(b.msgs, m)
		b.op = append(b.op, op)
		b.bytes += nlmsgAlign(16 + len(m.Data))
	}
}

func nlmsgAlign(n int) int { return (n + 3) &^ 3 }

// batchControl is a BATCH_BEGIN or BATCH_END message for nf_tables.
func batchControl(typ uint16) netlink.Message {
	data := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(data[2:], unix.NFNL_SUBSYS_NFTABLES)
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request}, Data: data}
}

// batchError is the kernel's answer for one failed message of a batch.
type batchError struct {
	index int // into pendingBatch.msgs; -1 when the batch itself was refused
	errno unix.Errno
}

// send sends b as one atomic batch and returns the kernel's errors for it.
// The element messages of sets the batch creates go by set ID (setid.go);
// if the kernel refuses one as not found, the set existed already, and b is
// sent again by name.
func (k *Kernel) send(b *pendingBatch) ([]batchError, error) {
	byID := elementsBySetID(b)
	errs, err := k.sendOnce(b)
	if byID.refused(errs) {
		byID.restore(b)
		return k.sendOnce(b)
	}
	return errs, err
}

// sendOnce sends b as one atomic batch and returns the kernel's errors for it.
func (k *Kernel) sendOnce(b *pendingBatch) ([]batchError, error) {
	begin, end := batchControl(unix.NFNL_MSG_BATCH_BEGIN), batchControl(unix.NFNL_MSG_BATCH_END)
	size := b.bytes + nlmsgAlign(16+len(begin.Data)) + nlmsgAlign(16+len(end.Data))
	if size+64<<10 > k.bufSize {
		if err := k.growBuffers(size); err != nil {
			return nil, err
		}
	}
	// Marshalled here into one buffer of the exact size: netlink.Conn's
	// SendMessages appends message by message, which for a whole node
	// (tens of MB) cost more than all the marshalling before it.
	first := k.seq + 1 // sequence number of b.msgs[0]; BATCH_BEGIN has first-1
	if b.echoGen && len(b.msgs) > 0 {
		// The kernel echoes its NEWGEN notification to the sender when the
		// first message of the batch after BATCH_BEGIN asks for echoes
		// (nf_tables_gen_notify; nfnetlink strips BATCH_BEGIN first). That
		// message is the table's, which is echoed only if it creates the
		// table; the answer loop ignores it.
		b.msgs[0].Header.Flags |= netlink.Echo
	}
	// Not kept for the next batch: a whole node's buffer (about 9 MB at
	// 100,000 pods) would stay in the daemon's memory for its life, and
	// reusing it saved no measurable CPU (BenchmarkKernelEngineProgram).
	buf := make([]byte, 0, size)
	buf = appendMessage(buf, begin, first-1)
	for i, m := range b.msgs {
		buf = appendMessage(buf, m, first+uint32(i))
	}
	buf = appendMessage(buf, end, first+uint32(len(b.msgs)))
	syncSeq := first + uint32(len(b.msgs)) + 1
	k.seq = syncSeq
	if err := k.sendRaw(buf); err != nil {
		return nil, fmt.Errorf("send batch of %d messages (%d bytes): %w", len(b.msgs), len(buf), err)
	}
	if err := k.sendRaw(appendMessage(nil, getgenRequest(), syncSeq)); err != nil {
		return nil, fmt.Errorf("send batch sync request: %w", err)
	}
	var errs []batchError
	overflowed := false
	for {
		answers, err := k.receiveRaw(!overflowed)
		switch {
		case errors.Is(err, unix.ENOBUFS):
			// The kernel dropped answers. Only failed messages are
			// answered, so it refused the batch; the sync answer may be
			// lost too, but everything is queued by now (the kernel
			// answers within sendmsg): collect what is, the first
			// failures, without waiting.
			overflowed = true
			continue
		case overflowed && errors.Is(err, unix.EAGAIN):
			return errs, errAnswersLost
		case err != nil:
			return errs, fmt.Errorf("read batch answers: %w", err)
		}
		for _, a := range answers {
			if a.Header.Seq == syncSeq {
				if overflowed {
					return errs, errAnswersLost
				}
				if len(errs) == 0 && a.Header.Type == unix.NLMSG_ERROR {
					return nil, fmt.Errorf("batch sync request: %w", errnoOf(a))
				}
				return errs, nil
			}
			switch a.Header.Type {
			case unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN:
				b.gen, b.committed = genIDOf(a.Data)
				continue
			case unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE:
				if chain, handle, err := ruleHandleOf(netlink.Message{Data: a.Data}); err == nil {
					b.ruleEchoes = append(b.ruleEchoes, ruleEcho{chain: chain, handle: handle})
				}
				continue
			}
			if a.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			errno := errnoOf(a)
			if errno == 0 {
				continue
			}
			i := -1
			if n := a.Header.Seq - first; n < uint32(len(b.msgs)) {
				i = int(n)
			}
			errs = append(errs, batchError{index: i, errno: errno})
		}
	}
}

// appendMessage appends m in netlink wire format with sequence number seq
// (port ID 0: the kernel fills in the socket's).
func appendMessage(buf []byte, m netlink.Message, seq uint32) []byte {
	var h [16]byte
	binary.NativeEndian.PutUint32(h[0:], uint32(16+len(m.Data)))
	binary.NativeEndian.PutUint16(h[4:], uint16(m.Header.Type))
	binary.NativeEndian.PutUint16(h[6:], uint16(m.Header.Flags))
	binary.NativeEndian.PutUint32(h[8:], seq)
	buf = append(buf, h[:]...)
	buf = append(buf, m.Data...)
	var pad [3]byte
	return append(buf, pad[:nlmsgAlign(len(m.Data))-len(m.Data)]...)
}

// sendRaw writes one datagram to the kernel on the batch socket.
func (k *Kernel) sendRaw(buf []byte) error { return sendTo(k.batches, buf) }

// errnoOf returns the error code of an NLMSG_ERROR answer (0: acknowledgement).
func errnoOf(m syscall.NetlinkMessage) unix.Errno {
	if len(m.Data) < 4 {
		return unix.EBADMSG
	}
	return unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data[:4])))
}

// errAnswersLost: the kernel refused a batch and its error answers
// overflowed the receive buffer of the batch socket.
var errAnswersLost = errors.New("the kernel refused the batch, and more error answers than the socket's receive buffer holds were dropped")

// receiveRaw reads one datagram from the batch socket, waiting for one if
// block is set (else EAGAIN when none is queued). mdlayher/netlink turns an
// error answer into a Go error and drops its header, which holds the
// sequence number that says which message failed, so this reads the socket
// directly.
func (k *Kernel) receiveRaw(block bool) ([]syscall.NetlinkMessage, error) {
	rc, err := k.batches.SyscallConn()
	if err != nil {
		return nil, err
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), k.recvBuf, 0)
		return !block || rerr != unix.EAGAIN
	}); err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, os.NewSyscallError("recvfrom", rerr)
	}
	return syscall.ParseNetlinkMessage(k.recvBuf[:n])
}

// describeMessage names what one message of a batch does, for errors and for
// the change monitor's reports.
func describeMessage(m netlink.Message) string {
	verb := map[uint16]string{
		unix.NFT_MSG_NEWTABLE: "add table", unix.NFT_MSG_DELTABLE: "delete table",
		unix.NFT_MSG_NEWCHAIN: "add chain", unix.NFT_MSG_DELCHAIN: "delete chain",
		unix.NFT_MSG_NEWRULE: "add rule to chain", unix.NFT_MSG_DELRULE: "delete rule of chain",
		unix.NFT_MSG_NEWSET: "add set", unix.NFT_MSG_DELSET: "delete set",
		unix.NFT_MSG_NEWSETELEM: "add elements to set", unix.NFT_MSG_DELSETELEM: "delete elements of set",
		unix.NFT_MSG_NEWOBJ: "add object", unix.NFT_MSG_DELOBJ: "delete object",
		unix.NFT_MSG_NEWFLOWTABLE: "add flowtable", unix.NFT_MSG_DELFLOWTABLE: "delete flowtable",
	}[uint16(m.Header.Type)&0xff]
	if verb == "" {
		verb = fmt.Sprintf("message type %#x", uint16(m.Header.Type))
	}
	// Every nf_tables object message names its table as attribute 1 and
	// the object (chain, set, object, flowtable) as attribute 2 or 3; rules
	// name their chain as attribute 2, element lists their set.
	var name string
	if len(m.Data) > 4 {
		if ad, err := netlink.NewAttributeDecoder(m.Data[4:]); err == nil {
			want := uint16(2)
			switch uint16(m.Header.Type) & 0xff {
			case unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN:
				want = unix.NFTA_CHAIN_NAME
			case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE:
				want = unix.NFTA_TABLE_NAME
			}
			for ad.Next() {
				if ad.Type() == want {
					name = ad.String()
				}
			}
		}
	}
	if name == "" {
		return verb
	}
	return fmt.Sprintf("%s %q", verb, name)
}

// batchErr turns the kernel's answers for a failed batch into one error: the
// first failure as an *OpError naming the transaction operation, the others
// counted; lost (errAnswersLost or nil) says that more answers were dropped.
func (k *Kernel) batchErr(tx *Transaction, b *pendingBatch, errs []batchError, lost error) error {
	first := errs[0]
	var err error = first.errno
	if first.index >= 0 {
		err = fmt.Errorf("%s: %w", describeMessage(b.msgs[first.index]), first.errno)
	}
	if s := sentinelOf(first.errno); s != nil {
		err = fmt.Errorf("%w: %w", s, err)
	}
	switch {
	case lost != nil:
		err = fmt.Errorf("%w (and %d more failed messages, then more whose answers were dropped)", err, len(errs)-1)
	case len(errs) > 1:
		err = fmt.Errorf("%w (and %d more failed messages)", err, len(errs)-1)
	}
	if first.index >= 0 {
		if i := b.op[first.index]; i >= 0 && tx != nil && i < len(tx.Ops) {
			err = &OpError{Index: i, Op: tx.Ops[i], Err: err}
		}
	}
	return fmt.Errorf("nft: batch of %d messages refused by the kernel, nothing changed in table inet %s: %w",
		len(b.msgs), k.table.Name, err)
}
