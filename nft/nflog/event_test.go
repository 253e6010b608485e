package nflog

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	gonflog "github.com/florianl/go-nflog/v2"
	"github.com/google/go-cmp/cmp"
)

// Addresses of the crafted packets: documentation ranges only.
var (
	src4 = netip.MustParseAddr("198.18.0.2")
	dst4 = netip.MustParseAddr("198.18.1.3")
	src6 = netip.MustParseAddr("2001:db8::2")
	dst6 = netip.MustParseAddr("2001:db8:1::3")
)

// ipv4Packet builds an IPv4 header (with options words of 4 bytes, and a
// fragment offset in 8-byte units) followed by transport bytes.
func ipv4Packet(proto uint8, optionWords int, fragOffset uint16, transport []byte) []byte {
	ihl := 5 + optionWords
	b := make([]byte, ihl*4, ihl*4+len(transport))
	b[0] = 4<<4 | byte(ihl)
	binary.BigEndian.PutUint16(b[2:4], uint16(ihl*4+len(transport)+100)) // the copy is cut
	binary.BigEndian.PutUint16(b[6:8], fragOffset)
	b[8] = 64
	b[9] = proto
	copy(b[12:16], src4.AsSlice())
	copy(b[16:20], dst4.AsSlice())
	return append(b, transport...)
}

// ipv6Packet builds an IPv6 header whose first next header is next, then
// the given bytes (extension headers and transport).
func ipv6Packet(next uint8, rest []byte) []byte {
	b := make([]byte, 40, 40+len(rest))
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:6], uint16(len(rest)+60))
	b[6] = next
	b[7] = 64
	copy(b[8:24], src6.AsSlice())
	copy(b[24:40], dst6.AsSlice())
	return append(b, rest...)
}

// ports is the start of a TCP/UDP/SCTP header.
func ports(src, dst uint16) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:2], src)
	binary.BigEndian.PutUint16(b[2:4], dst)
	return b
}

// extension is an IPv6 extension header of 8 bytes (hop-by-hop, routing,
// destination options) in front of next.
func extension(next uint8) []byte { return []byte{next, 0, 0, 0, 0, 0, 0, 0} }

// fragmentHeader is an IPv6 fragment header in front of next.
func fragmentHeader(next uint8, offset uint16) []byte {
	b := []byte{next, 0, 0, 0, 0, 0, 0, 1}
	binary.BigEndian.PutUint16(b[2:4], offset<<3)
	return b
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestParsePacket(t *testing.T) {
	tests := []struct {
		name    string
		packet  []byte
		want    Event
		wantErr bool
	}{
		{
			name:   "ipv4 tcp",
			packet: ipv4Packet(ProtocolTCP, 0, 0, ports(40000, 8080)),
			want:   Event{Family: IPv4, Src: src4, Dst: dst4, Protocol: ProtocolTCP, SrcPort: 40000, DstPort: 8080, Length: 128},
		},
		{
			name:   "ipv4 udp behind options",
			packet: ipv4Packet(ProtocolUDP, 2, 0, ports(5353, 53)),
			want:   Event{Family: IPv4, Src: src4, Dst: dst4, Protocol: ProtocolUDP, SrcPort: 5353, DstPort: 53, Length: 136},
		},
		{
			name:   "ipv4 sctp",
			packet: ipv4Packet(ProtocolSCTP, 0, 0, ports(1, 2)),
			want:   Event{Family: IPv4, Src: src4, Dst: dst4, Protocol: ProtocolSCTP, SrcPort: 1, DstPort: 2, Length: 128},
		},
		{
			name:   "ipv4 icmp has no ports",
			packet: ipv4Packet(ProtocolICMP, 0, 0, []byte{8, 0, 0, 0, 0, 1, 0, 1}),
			want:   Event{Family: IPv4, Src: src4, Dst: dst4, Protocol: ProtocolICMP, Length: 128},
		},
		{
			name:   "ipv4 later fragment has no ports",
			packet: ipv4Packet(ProtocolUDP, 0, 185, ports(5353, 53)),
			want:   Event{Family: IPv4, Src: src4, Dst: dst4, Protocol: ProtocolUDP, Length: 128},
		},
		{
			name:   "ipv4 copy cut before the ports",
			packet: ipv4Packet(ProtocolTCP, 0, 0, []byte{1, 2}),
			want:   Event{Family: IPv4, Src: src4, Dst: dst4, Protocol: ProtocolTCP, Length: 122},
		},
		{
			name:   "ipv6 tcp",
			packet: ipv6Packet(ProtocolTCP, ports(40000, 443)),
			want:   Event{Family: IPv6, Src: src6, Dst: dst6, Protocol: ProtocolTCP, SrcPort: 40000, DstPort: 443, Length: 108},
		},
		{
			name:   "ipv6 udp behind hop-by-hop, routing and destination options",
			packet: ipv6Packet(ipv6HopByHop, concat(extension(ipv6Routing), extension(ipv6DestOptions), extension(ProtocolUDP), ports(1000, 2000))),
			want:   Event{Family: IPv6, Src: src6, Dst: dst6, Protocol: ProtocolUDP, SrcPort: 1000, DstPort: 2000, Length: 132},
		},
		{
			name:   "ipv6 first fragment has ports",
			packet: ipv6Packet(ipv6Fragment, concat(fragmentHeader(ProtocolUDP, 0), ports(1000, 2000))),
			want:   Event{Family: IPv6, Src: src6, Dst: dst6, Protocol: ProtocolUDP, SrcPort: 1000, DstPort: 2000, Length: 116},
		},
		{
			name:   "ipv6 later fragment has none",
			packet: ipv6Packet(ipv6Fragment, concat(fragmentHeader(ProtocolUDP, 100), ports(1000, 2000))),
			want:   Event{Family: IPv6, Src: src6, Dst: dst6, Protocol: ProtocolUDP, Length: 116},
		},
		{
			name:   "ipv6 icmpv6",
			packet: ipv6Packet(ProtocolICMPv6, []byte{128, 0, 0, 0, 0, 1, 0, 1}),
			want:   Event{Family: IPv6, Src: src6, Dst: dst6, Protocol: ProtocolICMPv6, Length: 108},
		},
		{
			name:   "ipv6 copy cut inside the extension headers",
			packet: ipv6Packet(ipv6HopByHop, []byte{ProtocolTCP, 0, 0}),
			want:   Event{Family: IPv6, Src: src6, Dst: dst6, Protocol: ipv6HopByHop, Length: 103},
		},
		{name: "empty", packet: nil, wantErr: true},
		{name: "short ipv4", packet: ipv4Packet(ProtocolTCP, 0, 0, nil)[:19], wantErr: true},
		{name: "ipv4 header length below 20", packet: append([]byte{0x44}, make([]byte, 30)...), wantErr: true},
		{name: "short ipv6", packet: ipv6Packet(ProtocolTCP, nil)[:39], wantErr: true},
		{name: "ip version 5", packet: append([]byte{0x50}, make([]byte, 40)...), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Event
			err := parsePacket(tt.packet, &got)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parsePacket: error %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("parsePacket (-want +got):\n%s", diff)
			}
		})
	}
}

// attribute is a packet message as go-nflog decodes it; a zero ts or a nil
// payload leaves the attribute out.
func attribute(prefix string, seq uint32, ts time.Time, payload []byte) gonflog.Attribute {
	a := gonflog.Attribute{Prefix: &prefix, Seq: &seq}
	if !ts.IsZero() {
		a.Timestamp = &ts
	}
	if payload != nil {
		a.Payload = &payload
	}
	return a
}

func TestEventOf(t *testing.T) {
	received := time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)
	stamped := time.Date(2026, 12, 6, 10, 59, 59, 123456000, time.UTC)
	tests := []struct {
		name    string
		attr    gonflog.Attribute
		want    Event
		wantErr bool
	}{
		{
			name: "with timestamp",
			attr: attribute("nftw deny in np", 7, stamped, ipv4Packet(ProtocolTCP, 0, 0, ports(40000, 80))),
			want: Event{Time: stamped, Prefix: "nftw deny in np", Family: IPv4, Src: src4, Dst: dst4, Protocol: ProtocolTCP, SrcPort: 40000, DstPort: 80, Length: 128},
		},
		{
			name: "without timestamp: the time of receipt",
			attr: attribute("nftw allow - flow", 8, time.Time{}, ipv6Packet(ProtocolUDP, ports(1, 53))),
			want: Event{Time: received, Prefix: "nftw allow - flow", Family: IPv6, Src: src6, Dst: dst6, Protocol: ProtocolUDP, SrcPort: 1, DstPort: 53, Length: 108},
		},
		{
			name: "without prefix",
			attr: gonflog.Attribute{Payload: &[]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, ProtocolICMP, 0, 0, 198, 18, 0, 2, 198, 18, 1, 3}},
			want: Event{Time: received, Family: IPv4, Src: src4, Dst: dst4, Protocol: ProtocolICMP, Length: 20},
		},
		{name: "no payload", attr: attribute("p", 9, time.Time{}, nil), wantErr: true},
		{name: "bad payload", attr: attribute("p", 10, time.Time{}, []byte{0x10}), wantErr: true},
		{name: "nothing", attr: gonflog.Attribute{}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := eventOf(tt.attr, received)
			if (err != nil) != tt.wantErr {
				t.Fatalf("eventOf: error %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCountGap(t *testing.T) {
	tests := []struct {
		name string
		seqs []uint32
		want uint64
	}{
		{"none lost", []uint32{0, 1, 2, 3}, 0},
		{"first ones lost", []uint32{3, 4}, 3},
		{"gaps", []uint32{0, 1, 5, 6, 10}, 6},
		{"wrap", []uint32{0xfffffffe, 0xffffffff, 0, 2}, 0xfffffffe + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Reader{}
			for _, s := range tt.seqs {
				r.countGap(s)
			}
			if got := r.lost.Load(); got != tt.want {
				t.Errorf("lost %d, want %d", got, tt.want)
			}
		})
	}
}

// A full queue drops and counts; a bad packet counts as malformed and its
// sequence number still closes the gap before it; a gap counts as lost.
func TestHandleQueueFull(t *testing.T) {
	r := &Reader{events: make(chan Event, 2)}
	for i := range 5 {
		r.handle(attribute("p", uint32(i), time.Time{}, ipv4Packet(ProtocolUDP, 0, 0, ports(1, 2))), time.Now())
	}
	r.handle(attribute("p", 5, time.Time{}, []byte{0x10}), time.Now())
	r.handle(attribute("p", 8, time.Time{}, ipv4Packet(ProtocolUDP, 0, 0, ports(1, 2))), time.Now())
	want := Stats{Received: 2, QueueFull: 4, Lost: 2, Malformed: 1}
	if got := r.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

func TestProtocolName(t *testing.T) {
	for p, want := range map[uint8]string{ProtocolTCP: "tcp", ProtocolUDP: "udp", ProtocolSCTP: "sctp", ProtocolICMP: "icmp", ProtocolICMPv6: "icmpv6", 47: "47"} {
		if got := ProtocolName(p); got != want {
			t.Errorf("ProtocolName(%d) = %q, want %q", p, got, want)
		}
	}
}
