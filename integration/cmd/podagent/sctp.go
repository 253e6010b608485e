package main

// SCTP over raw IP sockets.
//
// The kernel of this machine has SCTP conntrack and nftables matching but no SCTP
// sockets, so the agent speaks just enough SCTP by hand to prove that a packet crossed
// the policy and that the answer came back:
//
//   - the prober sends an INIT chunk (verification tag 0, a random initiate tag) from a
//     random source port, over a raw socket of protocol 132, and resends it every
//     300 ms until the deadline;
//   - the serving agent reads every SCTP packet of its namespace on its own raw socket
//     (a raw socket that receives the packet also stops the kernel from answering with
//     ICMP protocol-unreachable) and, for an INIT to one of its ports, answers with an
//     INIT-ACK whose verification tag is the INIT's initiate tag and whose state cookie
//     carries the agent's name;
//   - the prober accepts only an INIT-ACK from the probed address and port, addressed to
//     its source port and carrying its tag.
//
// On the node in between, conntrack tracks this as a real association (CLOSED ->
// COOKIE_WAIT -> COOKIE_ECHOED), so the INIT is a new flow that the policy judges and the
// INIT-ACK is the established reply. Both carry a correct CRC32c checksum because
// conntrack verifies it. No association is completed: that would test SCTP, not policy.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"slices"
	"time"
)

const (
	chunkInit    = 1
	chunkInitAck = 2
	paramCookie  = 7
	commonHeader = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpPacket builds a packet of one chunk and fills in the CRC32c checksum, which SCTP
// stores in little-endian byte order (RFC 9260, appendix A).
func sctpPacket(srcPort, dstPort uint16, vtag uint32, chunk []byte) []byte {
	pkt := make([]byte, commonHeader+len(chunk))
	binary.BigEndian.PutUint16(pkt[0:], srcPort)
	binary.BigEndian.PutUint16(pkt[2:], dstPort)
	binary.BigEndian.PutUint32(pkt[4:], vtag)
	copy(pkt[commonHeader:], chunk)
	binary.LittleEndian.PutUint32(pkt[8:], crc32.Checksum(pkt, castagnoli))
	return pkt
}

// initChunk builds an INIT or INIT-ACK chunk (same fixed layout), optionally with a
// state cookie parameter.
func initChunk(kind byte, initTag, tsn uint32, cookie []byte) []byte {
	n := 20
	if cookie != nil {
		n += 4 + len(cookie)
	}
	padded := (n + 3) &^ 3
	c := make([]byte, padded)
	c[0] = kind
	binary.BigEndian.PutUint16(c[2:], uint16(n))
	binary.BigEndian.PutUint32(c[4:], initTag)
	binary.BigEndian.PutUint32(c[8:], 65536) // advertised receiver window
	binary.BigEndian.PutUint16(c[12:], 1)    // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)    // inbound streams
	binary.BigEndian.PutUint32(c[16:], tsn)
	if cookie != nil {
		binary.BigEndian.PutUint16(c[20:], paramCookie)
		binary.BigEndian.PutUint16(c[22:], uint16(4+len(cookie)))
		copy(c[24:], cookie)
	}
	return c
}

// parsedPacket is the part of an SCTP packet the agent looks at: the common header and
// the first chunk.
type parsedPacket struct {
	srcPort, dstPort uint16
	vtag             uint32
	chunk            byte
	initTag          uint32 // INIT and INIT-ACK only
	cookie           []byte // INIT-ACK only
}

func parseSCTP(b []byte) (parsedPacket, bool) {
	var p parsedPacket
	if len(b) < commonHeader+4 {
		return p, false
	}
	p.srcPort = binary.BigEndian.Uint16(b[0:])
	p.dstPort = binary.BigEndian.Uint16(b[2:])
	p.vtag = binary.BigEndian.Uint32(b[4:])
	c := b[commonHeader:]
	p.chunk = c[0]
	clen := int(binary.BigEndian.Uint16(c[2:]))
	if clen > len(c) {
		return p, false
	}
	if (p.chunk == chunkInit || p.chunk == chunkInitAck) && clen >= 20 {
		p.initTag = binary.BigEndian.Uint32(c[4:])
		for params := c[20:clen]; len(params) >= 4; {
			typ := binary.BigEndian.Uint16(params[0:])
			plen := int(binary.BigEndian.Uint16(params[2:]))
			if plen < 4 || plen > len(params) {
				break
			}
			if typ == paramCookie {
				p.cookie = params[4:plen]
			}
			params = params[min((plen+3)&^3, len(params)):]
		}
	}
	return p, true
}

func random32() uint32 {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return uint32(time.Now().UnixNano())
		}
		if v := binary.BigEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}

// serveSCTP answers INITs to ports with INIT-ACKs until c is closed.
func serveSCTP(c *net.IPConn, ports []uint16, name string) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromIP(buf)
		if err != nil {
			return
		}
		p, ok := parseSCTP(buf[:n])
		if !ok || p.chunk != chunkInit || p.vtag != 0 || !slices.Contains(ports, p.dstPort) {
			continue
		}
		reply := sctpPacket(p.dstPort, p.srcPort, p.initTag,
			initChunk(chunkInitAck, random32(), random32(), []byte(name)))
		_, _ = c.WriteToIP(reply, from)
	}
}

func probeSCTP(ctx context.Context, addr netip.Addr, port uint16) (string, error) {
	network := "ip4:132"
	if addr.Is6() && !addr.Is4In6() {
		network = "ip6:132"
	}
	c, err := net.ListenIP(network, nil)
	if err != nil {
		return "", fmt.Errorf("raw SCTP socket: %w", err)
	}
	defer c.Close()
	srcPort := uint16(1024 + random32()%(65536-1024))
	tag := random32()
	initPkt := sctpPacket(srcPort, port, 0, initChunk(chunkInit, tag, random32(), nil))
	dst := &net.IPAddr{IP: addr.Unmap().AsSlice()}
	buf := make([]byte, 65536)
	for {
		if _, err := c.WriteToIP(initPkt, dst); err != nil {
			return "", fmt.Errorf("send INIT: %w", err)
		}
		resend := time.Now().Add(300 * time.Millisecond)
		if dl, ok := ctx.Deadline(); ok && dl.Before(resend) {
			resend = dl
		}
		_ = c.SetReadDeadline(resend)
		for {
			n, from, err := c.ReadFromIP(buf)
			if err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					return "", fmt.Errorf("read: %w", err)
				}
				break
			}
			fromAddr, ok := netip.AddrFromSlice(from.IP)
			if !ok || fromAddr.Unmap() != addr.Unmap() {
				continue
			}
			p, ok := parseSCTP(buf[:n])
			if ok && p.chunk == chunkInitAck && p.srcPort == port && p.dstPort == srcPort && p.vtag == tag {
				return string(p.cookie), nil
			}
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("no INIT-ACK: %w", ctx.Err())
		}
	}
}
