package nflog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Family is the address family of a logged packet.
type Family uint8

// Families, with the values of NFPROTO_IPV4 and NFPROTO_IPV6.
const (
	IPv4 Family = 2
	IPv6 Family = 10
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

// IP protocol numbers the parser knows the ports of, and the ICMPs.
const (
	ProtocolICMP   uint8 = 1
	ProtocolTCP    uint8 = 6
	ProtocolUDP    uint8 = 17
	ProtocolICMPv6 uint8 = 58
	ProtocolSCTP   uint8 = 132
)

// ProtocolName is the lower-case name of an IP protocol number ("tcp",
// "icmpv6"), or the number for others.
func ProtocolName(p uint8) string {
	switch p {
	case ProtocolTCP:
		return "tcp"
	case ProtocolUDP:
		return "udp"
	case ProtocolSCTP:
		return "sctp"
	case ProtocolICMP:
		return "icmp"
	case ProtocolICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}

// Event is one packet logged by a rule.
type Event struct {
	// Time is when the kernel logged the packet (its timestamp, when the
	// kernel sends one) or else when the Reader received it.
	Time time.Time
	// Prefix is the rule's log prefix.
	Prefix   string
	Family   Family
	Src, Dst netip.Addr
	// Protocol is the transport protocol (ProtocolTCP...); for IPv6 the
	// header after the extension headers.
	Protocol uint8
	// SrcPort and DstPort are set for TCP, UDP and SCTP, except in a
	// packet that is a non-first fragment or whose copy was cut before them.
	SrcPort, DstPort uint16
	// Length is the packet's length from its IP header (IPv4 total length,
	// IPv6 payload length plus its 40-byte header).
	Length int
}

// errShortPacket: the copy is shorter than the IP header.
var errShortPacket = errors.New("nflog: packet shorter than its IP header")

// parsePacket fills the packet fields of ev from the copy of the packet (it
// starts at the IP header). The IP version in the packet decides the family.
func parsePacket(b []byte, ev *Event) error {
	if len(b) < 1 {
		return errShortPacket
	}
	switch b[0] >> 4 {
	case 4:
		return parseIPv4(b, ev)
	case 6:
		return parseIPv6(b, ev)
	}
	return fmt.Errorf("nflog: IP version %d in the logged packet", b[0]>>4)
}

func parseIPv4(b []byte, ev *Event) error {
	const minHeader = 20
	ihl := int(b[0]&0x0f) * 4
	if len(b) < minHeader || ihl < minHeader || len(b) < ihl {
		return errShortPacket
	}
	ev.Family = IPv4
	ev.Length = int(binary.BigEndian.Uint16(b[2:4]))
	ev.Protocol = b[9]
	ev.Src = netip.AddrFrom4([4]byte(b[12:16]))
	ev.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	if fragmentOffset := binary.BigEndian.Uint16(b[6:8]) & 0x1fff; fragmentOffset == 0 {
		parsePorts(b[ihl:], ev)
	}
	return nil
}

// IPv6 extension headers (RFC 8200) that may stand before the transport header.
const (
	ipv6HopByHop    = 0
	ipv6Routing     = 43
	ipv6Fragment    = 44
	ipv6AuthHeader  = 51
	ipv6DestOptions = 60
	// maxExtensionHeaders bounds the walk of a crafted chain.
	maxExtensionHeaders = 8
)

func parseIPv6(b []byte, ev *Event) error {
	const header = 40
	if len(b) < header {
		return errShortPacket
	}
	ev.Family = IPv6
	ev.Length = header + int(binary.BigEndian.Uint16(b[4:6]))
	ev.Src = netip.AddrFrom16([16]byte(b[8:24]))
	ev.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	next, rest := b[6], b[header:]
	for range maxExtensionHeaders {
		var size int
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOptions:
			if len(rest) < 2 {
				ev.Protocol = next
				return nil
			}
			size = (int(rest[1]) + 1) * 8
		case ipv6AuthHeader:
			if len(rest) < 2 {
				ev.Protocol = next
				return nil
			}
			size = (int(rest[1]) + 2) * 4
		case ipv6Fragment:
			if len(rest) < 8 {
				ev.Protocol = next
				return nil
			}
			size = 8
			if binary.BigEndian.Uint16(rest[2:4])>>3 != 0 {
				// A later fragment: no transport header in it.
				ev.Protocol = rest[0]
				return nil
			}
		default:
			ev.Protocol = next
			parsePorts(rest, ev)
			return nil
		}
		if len(rest) < size {
			// The copy ends inside the extension headers: the transport
			// protocol is not known.
			ev.Protocol = next
			return nil
		}
		next, rest = rest[0], rest[size:]
	}
	ev.Protocol = next
	return nil
}

// parsePorts reads the ports of TCP, UDP and SCTP, which all begin with
// source and destination port.
func parsePorts(transport []byte, ev *Event) {
	switch ev.Protocol {
	case ProtocolTCP, ProtocolUDP, ProtocolSCTP:
		if len(transport) >= 4 {
			ev.SrcPort = binary.BigEndian.Uint16(transport[0:2])
			ev.DstPort = binary.BigEndian.Uint16(transport[2:4])
		}
	}
}
