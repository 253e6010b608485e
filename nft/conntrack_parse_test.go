package nft

// Entries are built as ctnetlink sends them (nested attributes under an
// nfgenmsg). Addresses: client 198.18.0.10 / 2001:db8::10, Service
// 198.19.0.80, backend 198.18.0.11 / 2001:db8::11.

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

type testTuple struct {
	src, dst     string
	proto        uint8
	sport, dport uint16
	// cut shortens the source "addr" or "port" by one byte (malformed
	// entries).
	cut string
}

// tupleAttr is a CTA_TUPLE_ORIG or CTA_TUPLE_REPLY attribute; a zero port is
// left out (as for ICMP).
func tupleAttr(typ int, t testTuple) *nl.RtAttr {
	src, dst := netip.MustParseAddr(t.src), netip.MustParseAddr(t.dst)
	srcType, dstType := nl.CTA_IP_V4_SRC, nl.CTA_IP_V4_DST
	if src.Is6() {
		srcType, dstType = nl.CTA_IP_V6_SRC, nl.CTA_IP_V6_DST
	}
	srcData, sportData := src.AsSlice(), nl.BEUint16Attr(t.sport)
	switch t.cut {
	case "addr":
		srcData = srcData[1:]
	case "port":
		sportData = sportData[1:]
	}
	ip := nl.NewRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_IP, nil)
	ip.AddRtAttr(srcType, srcData)
	ip.AddRtAttr(dstType, dst.AsSlice())
	proto := nl.NewRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_PROTO, nil)
	proto.AddRtAttr(nl.CTA_PROTO_NUM, []byte{t.proto})
	if t.sport != 0 {
		proto.AddRtAttr(nl.CTA_PROTO_SRC_PORT, sportData)
		proto.AddRtAttr(nl.CTA_PROTO_DST_PORT, nl.BEUint16Attr(t.dport))
	}
	a := nl.NewRtAttr(unix.NLA_F_NESTED|typ, nil)
	a.AddChild(ip)
	a.AddChild(proto)
	a.AddRtAttr(3, nl.BEUint16Attr(0)) // CTA_TUPLE_ZONE, skipped
	return a
}

// entry is a dump message: nfgenmsg, then the attributes.
func entry(attrs ...*nl.RtAttr) []byte {
	b := []byte{unix.AF_INET, nl.NFNETLINK_V0, 0, 0}
	for _, a := range attrs {
		b = append(b, a.Serialize()...)
	}
	return b
}

// dnatTCP is a client's connection to a Service, DNATed to the backend.
func dnatTCP() []byte {
	return entry(
		tupleAttr(nl.CTA_TUPLE_ORIG, testTuple{"198.18.0.10", "198.19.0.80", ProtoTCP, 40000, 80, ""}),
		tupleAttr(nl.CTA_TUPLE_REPLY, testTuple{"198.18.0.11", "198.18.0.10", ProtoTCP, 8080, 40000, ""}),
		nl.NewRtAttr(nl.CTA_STATUS, nl.BEUint32Attr(0x18e)),
		nl.NewRtAttr(nl.CTA_ID, nl.BEUint32Attr(7)),
	)
}

func TestParseFlow(t *testing.T) {
	truncated := dnatTCP()
	binary.NativeEndian.PutUint16(truncated[4:], uint16(len(truncated))) // the first attribute claims more than the message
	for _, tc := range []struct {
		name    string
		msg     []byte
		want    Flow
		ok, bad bool
	}{
		{name: "tcp through a Service: destination from the reply", msg: dnatTCP(), ok: true,
			want: Flow{Protocol: ProtoTCP, Src: netip.MustParseAddr("198.18.0.10"), SrcPort: 40000, Dst: netip.MustParseAddr("198.18.0.11"), DstPort: 8080}},
		{name: "udp ipv6", ok: true, msg: entry(
			tupleAttr(nl.CTA_TUPLE_ORIG, testTuple{"2001:db8::10", "2001:db8::11", ProtoUDP, 5353, 53, ""}),
			tupleAttr(nl.CTA_TUPLE_REPLY, testTuple{"2001:db8::11", "2001:db8::10", ProtoUDP, 53, 5353, ""})),
			want: Flow{Protocol: ProtoUDP, Src: netip.MustParseAddr("2001:db8::10"), SrcPort: 5353, Dst: netip.MustParseAddr("2001:db8::11"), DstPort: 53}},
		{name: "sctp", ok: true, msg: entry(
			tupleAttr(nl.CTA_TUPLE_ORIG, testTuple{"198.18.0.10", "198.18.0.11", ProtoSCTP, 40000, 3868, ""}),
			tupleAttr(nl.CTA_TUPLE_REPLY, testTuple{"198.18.0.11", "198.18.0.10", ProtoSCTP, 3868, 40000, ""})),
			want: Flow{Protocol: ProtoSCTP, Src: netip.MustParseAddr("198.18.0.10"), SrcPort: 40000, Dst: netip.MustParseAddr("198.18.0.11"), DstPort: 3868}},
		{name: "icmp is skipped", msg: entry(
			tupleAttr(nl.CTA_TUPLE_ORIG, testTuple{"198.18.0.10", "198.18.0.11", 1, 0, 0, ""}),
			tupleAttr(nl.CTA_TUPLE_REPLY, testTuple{"198.18.0.11", "198.18.0.10", 1, 0, 0, ""}))},
		{name: "no reply tuple", bad: true, msg: entry(
			tupleAttr(nl.CTA_TUPLE_ORIG, testTuple{"198.18.0.10", "198.18.0.11", ProtoTCP, 1, 2, ""}))},
		{name: "3-byte address", bad: true, msg: entry(
			tupleAttr(nl.CTA_TUPLE_ORIG, testTuple{"198.18.0.10", "198.18.0.11", ProtoUDP, 40000, 53, ""}),
			tupleAttr(nl.CTA_TUPLE_REPLY, testTuple{"198.18.0.11", "198.18.0.10", ProtoUDP, 53, 40000, "addr"}))},
		{name: "1-byte port", bad: true, msg: entry(
			tupleAttr(nl.CTA_TUPLE_ORIG, testTuple{"198.18.0.10", "198.18.0.11", ProtoUDP, 40000, 53, "port"}),
			tupleAttr(nl.CTA_TUPLE_REPLY, testTuple{"198.18.0.11", "198.18.0.10", ProtoUDP, 53, 40000, ""}))},
		{name: "attribute longer than the message", bad: true, msg: truncated},
		{name: "cut inside an attribute header", bad: true, msg: dnatTCP()[:6]},
		{name: "shorter than nfgenmsg", bad: true, msg: []byte{2, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := parseFlow(tc.msg)
			if (err != nil) != tc.bad {
				t.Fatalf("error %v, want error: %v", err, tc.bad)
			}
			if ok != tc.ok || got != tc.want {
				t.Errorf("got %+v ok=%v, want %+v ok=%v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// The parser reads what the kernel sends, but it must never panic on any
// input.
func FuzzParseFlow(f *testing.F) {
	f.Add(dnatTCP())
	f.Add(dnatTCP()[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		flow, ok, err := parseFlow(msg)
		if ok && (err != nil || !flow.Src.IsValid() || !flow.Dst.IsValid()) {
			t.Errorf("ok with error %v or invalid addresses %+v", err, flow)
		}
	})
}

func BenchmarkConntrackParse(b *testing.B) {
	msg := dnatTCP()
	b.ReportAllocs()
	for range b.N {
		if _, ok, err := parseFlow(msg); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
