package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink/nl"
)

// ctTuple is one direction of a conntrack entry (CTA_TUPLE_ORIG or
// CTA_TUPLE_REPLY): addresses, protocol and, for protocols with ports, the
// ports.
type ctTuple struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
}

var errBadEntry = errors.New("malformed conntrack entry")

// parseFlow reads a ctnetlink entry message (nfgenmsg, then attributes, as
// in linux/netfilter/nfnetlink_conntrack.h). ok is false for an entry of a
// protocol other than TCP, UDP and SCTP.
//
// It walks the attributes in place instead of through a general decoder
// (mdlayher/netlink's allocates one per nesting level): a sweep reads every
// entry of the table, and this keeps the parse at a small fraction of the
// kernel's own cost per entry (BenchmarkConntrackParse).
func parseFlow(msg []byte) (f Flow, ok bool, err error) {
	if len(msg) < nl.SizeofNfgenmsg {
		return Flow{}, false, fmt.Errorf("%w: %d bytes", errBadEntry, len(msg))
	}
	var orig, reply ctTuple
	var haveOrig, haveReply bool
	err = walkAttrs(msg[nl.SizeofNfgenmsg:], func(typ uint16, v []byte) error {
		switch typ {
		case nl.CTA_TUPLE_ORIG:
			haveOrig = true
			return orig.parse(v)
		case nl.CTA_TUPLE_REPLY:
			haveReply = true
			return reply.parse(v)
		}
		return nil
	})
	if err != nil {
		return Flow{}, false, fmt.Errorf("%w: %w", errBadEntry, err)
	}
	if !haveOrig || !haveReply {
		return Flow{}, false, fmt.Errorf("%w: a tuple is missing", errBadEntry)
	}
	switch orig.proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
	default:
		return Flow{}, false, nil
	}
	if !orig.src.IsValid() || !reply.src.IsValid() {
		return Flow{}, false, fmt.Errorf("%w: a tuple has no source address", errBadEntry)
	}
	return Flow{Protocol: orig.proto, Src: orig.src, SrcPort: orig.sport, Dst: reply.src, DstPort: reply.sport}, true, nil
}

// parse reads the attributes of a tuple: CTA_TUPLE_IP (addresses) and
// CTA_TUPLE_PROTO (protocol and ports); others (the zone) are skipped.
func (t *ctTuple) parse(b []byte) error {
	return walkAttrs(b, func(typ uint16, v []byte) error {
		switch typ {
		case nl.CTA_TUPLE_IP:
			return walkAttrs(v, t.parseAddr)
		case nl.CTA_TUPLE_PROTO:
			return walkAttrs(v, t.parseProto)
		}
		return nil
	})
}

func (t *ctTuple) parseAddr(typ uint16, v []byte) error {
	var to *netip.Addr
	switch typ {
	case nl.CTA_IP_V4_SRC, nl.CTA_IP_V6_SRC:
		to = &t.src
	case nl.CTA_IP_V4_DST, nl.CTA_IP_V6_DST:
		to = &t.dst
	default:
		return nil
	}
	ip, ok := netip.AddrFromSlice(v)
	if !ok {
		return fmt.Errorf("address of %d bytes", len(v))
	}
	*to = ip.Unmap()
	return nil
}

func (t *ctTuple) parseProto(typ uint16, v []byte) error {
	want := 2
	if typ == nl.CTA_PROTO_NUM {
		want = 1
	}
	switch typ {
	case nl.CTA_PROTO_NUM, nl.CTA_PROTO_SRC_PORT, nl.CTA_PROTO_DST_PORT:
		if len(v) != want {
			return fmt.Errorf("protocol attribute %d of %d bytes", typ, len(v))
		}
	}
	switch typ {
	case nl.CTA_PROTO_NUM:
		t.proto = v[0]
	case nl.CTA_PROTO_SRC_PORT:
		t.sport = binary.BigEndian.Uint16(v)
	case nl.CTA_PROTO_DST_PORT:
		t.dport = binary.BigEndian.Uint16(v)
	}
	return nil
}

// walkAttrs calls f with the type (flags masked off) and value of each
// netlink attribute in b, in order, and stops at f's first error or at an
// attribute whose length does not fit.
func walkAttrs(b []byte, f func(typ uint16, v []byte) error) error {
	const hdr = nl.SizeofNfattr
	for len(b) > 0 {
		if len(b) < hdr {
			return fmt.Errorf("%d bytes left after the last attribute", len(b))
		}
		n := int(binary.NativeEndian.Uint16(b))
		if n < hdr || n > len(b) {
			return fmt.Errorf("attribute of length %d in %d bytes", n, len(b))
		}
		if err := f(binary.NativeEndian.Uint16(b[2:])&nl.NLA_TYPE_MASK, b[hdr:n]); err != nil {
			return err
		}
		b = b[min(len(b), nlmsgAlign(n)):] // attributes align to 4 bytes, as messages do
	}
	return nil
}
