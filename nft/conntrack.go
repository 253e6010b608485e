package nft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Flow is one entry of the kernel's connection tracking table, seen as a
// filter on the forward hook saw the connection's packets in its original
// direction. The base chains accept `ct state established,related` before
// any policy, so a connection that a policy change denies lives on until its
// entry goes; deleting the entry makes its next packet `ct state new` again
// (TCP is picked up mid-stream while nf_conntrack_tcp_loose is 1, the
// default; with 0 that packet is invalid and dropped), and the policy chains
// judge it.
//
// Why the destination comes from the reply tuple: Service DNAT happens at
// prerouting (priority -100), before the filter chains, so they see the
// backend, not the Service address. The kernel keeps the original tuple as
// the client sent it (client -> ClusterIP:port) and the reply tuple as the
// backend answers (backend:targetPort -> client), so the address and port
// the filter saw as destination are the reply's source. The source is the
// original source: source NAT (masquerade) happens at postrouting, after the
// filter.
type Flow struct {
	// Protocol is ProtoTCP, ProtoUDP or ProtoSCTP; other protocols are not
	// given to the matcher.
	Protocol uint8
	// Src and SrcPort are the original source.
	Src     netip.Addr
	SrcPort uint16
	// Dst and DstPort are the destination after DNAT (the reply's source).
	Dst     netip.Addr
	DstPort uint16
	// Local reports that Src or Dst is an address of the network namespace
	// itself: such a connection starts or ends on the node (a kubelet probe,
	// a pod talking to its node) and crosses the input and output hooks,
	// never forward.
	Local bool
}

func (f Flow) String() string {
	return fmt.Sprintf("proto %d %s -> %s", f.Protocol,
		netip.AddrPortFrom(f.Src, f.SrcPort), netip.AddrPortFrom(f.Dst, f.DstPort))
}

// Conntrack deletes entries of the connection tracking table of one network
// namespace, over netlink (github.com/vishvananda/netlink): one dump of the
// table, read as a stream, and one delete per entry that the caller's
// matcher selects, sent on a second socket while the dump goes on (as
// `conntrack -D` does). It never flushes the table.
//
// A delete names the entry as the dump returned it, including its conntrack
// ID, so an entry that was replaced meanwhile by a new connection with the
// same addresses and ports is not touched (the kernel answers ENOENT).
//
// vishvananda/netlink's ConntrackDeleteFilters does the same in one call, but
// its parser drops the ports of SCTP entries, and it holds the whole dump in
// memory before deleting; Conntrack uses the library's sockets and requests
// and reads the tuples itself.
//
// Methods are safe for concurrent use; sweeps run one at a time.
type Conntrack struct {
	mu     sync.Mutex
	dump   *nl.SocketHandle // streams the table
	del    *nl.SocketHandle // deletes entries while the dump is read
	routes *netlink.Handle  // lists the namespace's addresses (Flow.Local)
}

// ConntrackOption configures NewConntrack.
type ConntrackOption func(*conntrackConfig)

type conntrackConfig struct {
	netns   int
	timeout time.Duration
}

// ConntrackNetNS works on the network namespace behind fd instead of the
// current one. The caller keeps ownership of fd; the sockets are opened at
// once, so fd may be closed after NewConntrack returns.
func ConntrackNetNS(fd int) ConntrackOption { return func(c *conntrackConfig) { c.netns = fd } }

// ConntrackTimeout bounds each wait for the kernel's answer (default 30s), so
// that a sweep cannot hang.
func ConntrackTimeout(d time.Duration) ConntrackOption {
	return func(c *conntrackConfig) { c.timeout = d }
}

const defaultConntrackTimeout = 30 * time.Second

// NewConntrack opens the netlink sockets. It needs CAP_NET_ADMIN in the
// namespace (for the deletes; dumps need it too).
func NewConntrack(opts ...ConntrackOption) (*Conntrack, error) {
	cfg := conntrackConfig{timeout: defaultConntrackTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	ns := netns.None()
	if cfg.netns > 0 {
		ns = netns.NsHandle(cfg.netns)
	}
	c := &Conntrack{}
	tv := unix.NsecToTimeval(cfg.timeout.Nanoseconds())
	for _, sh := range []**nl.SocketHandle{&c.dump, &c.del} {
		s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_NETFILTER)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("nft: open conntrack netlink socket: %w", err)
		}
		*sh = &nl.SocketHandle{Socket: s}
		// Both setters only store the value; they cannot fail.
		_ = s.SetSendTimeout(&tv)
		_ = s.SetReceiveTimeout(&tv)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("nft: open route netlink socket: %w", err)
	}
	if err := h.SetSocketTimeout(cfg.timeout); err != nil {
		h.Close()
		_ = c.Close()
		return nil, fmt.Errorf("nft: route netlink socket: %w", err)
	}
	c.routes = h
	return c, nil
}

// Close releases the sockets. DeleteFlows on a closed Conntrack returns an
// error wrapping net.ErrClosed.
func (c *Conntrack) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sh := range []**nl.SocketHandle{&c.dump, &c.del} {
		if *sh != nil {
			(*sh).Close()
			*sh = nil
		}
	}
	if c.routes != nil {
		c.routes.Close()
		c.routes = nil
	}
	return nil
}

// DeleteFlows reads the whole table once and deletes every TCP, UDP and SCTP
// entry for which match returns true. match runs on the dump's goroutine,
// once per such entry (an entry can come twice if the table changes under the
// dump; its second delete finds nothing and is not counted), and must not
// call DeleteFlows. A match that always returns false lists the table.
//
// examined counts the entries read (all protocols), deleted the entries the
// kernel removed. An entry that vanished before its delete (expired, or
// replaced by a new connection with the same tuple) is neither an error nor
// counted. Other failures do not stop the sweep: DeleteFlows goes on and
// returns the counts with an error that says how many deletes failed. When
// ctx ends, it stops deleting and returns ctx's error.
func (c *Conntrack) DeleteFlows(ctx context.Context, match func(Flow) bool) (deleted, examined int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dump == nil {
		return 0, 0, fmt.Errorf("nft: conntrack: %w", net.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	local, err := c.localAddrs()
	if err != nil {
		return 0, 0, err
	}
	var (
		failed            int
		failure, badEntry error
		stopped           error
	)
	req := c.request(c.dump, nl.IPCTNL_MSG_CT_GET, unix.NLM_F_DUMP, unix.AF_UNSPEC)
	dumpErr := req.ExecuteIter(unix.NETLINK_NETFILTER, ctMsgType(nl.IPCTNL_MSG_CT_NEW), func(msg []byte) bool {
		if stopped = ctx.Err(); stopped != nil {
			return false // the rest of the dump is read and discarded
		}
		examined++
		f, ok, perr := parseFlow(msg)
		if perr != nil {
			badEntry = firstErr(badEntry, perr)
			return true
		}
		if !ok {
			return true
		}
		_, srcLocal := local[f.Src]
		_, dstLocal := local[f.Dst]
		f.Local = srcLocal || dstLocal
		if !match(f) {
			return true
		}
		switch err := c.deleteEntry(msg); {
		case err == nil:
			deleted++
		case errors.Is(err, unix.ENOENT):
		default:
			failed++
			failure = firstErr(failure, fmt.Errorf("delete %v: %w", f, err))
		}
		return true
	})
	var errs []error
	switch {
	case errors.Is(dumpErr, nl.ErrDumpInterrupted):
		// The kernel says the table changed under the dump; what was read
		// was handled, the caller may sweep again.
		errs = append(errs, fmt.Errorf("nft: conntrack dump interrupted after %d entries: %w", examined, dumpErr))
	case dumpErr != nil:
		errs = append(errs, fmt.Errorf("nft: dump conntrack table (after %d entries): %w", examined, dumpErr))
	}
	if stopped != nil {
		errs = append(errs, fmt.Errorf("nft: conntrack sweep stopped after %d entries: %w", examined, stopped))
	}
	if failed > 0 {
		errs = append(errs, fmt.Errorf("nft: %d of %d conntrack deletes failed, first: %w", failed, failed+deleted, failure))
	}
	if badEntry != nil {
		errs = append(errs, fmt.Errorf("nft: conntrack entry skipped: %w", badEntry))
	}
	return deleted, examined, errors.Join(errs...)
}

// firstErr keeps the first error.
func firstErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// ctMsgType is the netlink message type of a ctnetlink message.
func ctMsgType(msg int) uint16 { return uint16(unix.NFNL_SUBSYS_CTNETLINK<<8 | msg) }

// request builds a ctnetlink request for family on socket sh.
func (c *Conntrack) request(sh *nl.SocketHandle, msg, flags int, family uint8) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(int(ctMsgType(msg)), flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: sh}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: family, Version: nl.NFNETLINK_V0})
	return req
}

// deleteEntry deletes the entry of a dump message: its attributes as the
// kernel sent them name it by original tuple, zone and ID.
func (c *Conntrack) deleteEntry(msg []byte) error {
	req := c.request(c.del, nl.IPCTNL_MSG_CT_DELETE, unix.NLM_F_ACK, msg[0])
	req.AddRawData(msg[nl.SizeofNfgenmsg:])
	_, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	return err
}

// localAddrs lists the addresses of the namespace's interfaces.
func (c *Conntrack) localAddrs() (map[netip.Addr]struct{}, error) {
	addrs, err := c.routes.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("nft: list local addresses: %w", err)
	}
	out := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out[ip.Unmap()] = struct{}{}
		}
	}
	return out, nil
}
