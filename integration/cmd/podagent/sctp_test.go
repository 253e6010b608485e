package main

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
)

func TestSCTPPacketRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   byte
		cookie []byte
	}{
		{"init", chunkInit, nil},
		{"init-ack with cookie", chunkInitAck, []byte("ns/pod")},
		{"init-ack with padded cookie", chunkInitAck, []byte("x/a")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := sctpPacket(40000, 9000, 0xdeadbeef, initChunk(tc.kind, 0x01020304, 7, tc.cookie))
			if len(pkt)%4 != 0 {
				t.Errorf("packet length %d is not a multiple of 4", len(pkt))
			}
			// The checksum covers the packet with the checksum field zeroed.
			sum := binary.LittleEndian.Uint32(pkt[8:])
			zeroed := append([]byte(nil), pkt...)
			binary.LittleEndian.PutUint32(zeroed[8:], 0)
			if want := crc32.Checksum(zeroed, crc32.MakeTable(crc32.Castagnoli)); sum != want {
				t.Errorf("checksum %#x, want %#x", sum, want)
			}
			p, ok := parseSCTP(pkt)
			if !ok {
				t.Fatal("parse failed")
			}
			if p.srcPort != 40000 || p.dstPort != 9000 || p.vtag != 0xdeadbeef || p.chunk != tc.kind || p.initTag != 0x01020304 {
				t.Errorf("parsed %+v", p)
			}
			if string(p.cookie) != string(tc.cookie) {
				t.Errorf("cookie %q, want %q", p.cookie, tc.cookie)
			}
		})
	}
}

func TestParseSCTPRejectsShortOrTruncated(t *testing.T) {
	pkt := sctpPacket(1, 2, 3, initChunk(chunkInit, 4, 5, nil))
	for _, b := range [][]byte{nil, pkt[:12], pkt[:15]} {
		if _, ok := parseSCTP(b); ok {
			t.Errorf("parseSCTP(%d bytes) accepted", len(b))
		}
	}
	// A chunk length beyond the packet is rejected.
	bad := append([]byte(nil), pkt...)
	binary.BigEndian.PutUint16(bad[14:], 400)
	if _, ok := parseSCTP(bad); ok {
		t.Error("chunk length beyond the packet accepted")
	}
}

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []uint16
		wantErr bool
	}{
		{"", nil, false},
		{"80", []uint16{80}, false},
		{"80, 81,", []uint16{80, 81}, false},
		{"0", nil, true},
		{"65536", nil, true},
		{"http", nil, true},
	} {
		got, err := parsePorts(tc.in)
		if (err != nil) != tc.wantErr || len(got) != len(tc.want) {
			t.Errorf("parsePorts(%q) = %v, %v", tc.in, got, err)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("parsePorts(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}
