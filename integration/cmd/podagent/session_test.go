package main

import (
	"strings"
	"testing"
)

func TestPongLine(t *testing.T) {
	for _, tc := range []struct {
		line    string
		seq     uint64
		name    string
		wantErr bool
	}{
		{pongLine(strings.TrimSpace(strings.TrimPrefix(pingLine(42), "ping ")), "x/a"), 42, "x/a", false},
		{"pong 7 ns/pod\n", 7, "ns/pod", false},
		{"podagent x/a\n", 0, "", true},
		{"pong x x/a\n", 0, "", true},
		{"pong 7\n", 0, "", true},
		{"", 0, "", true},
	} {
		seq, name, err := parsePong(tc.line)
		if (err != nil) != tc.wantErr || seq != tc.seq || name != tc.name {
			t.Errorf("parsePong(%q) = %d, %q, %v; want %d, %q, error %v", tc.line, seq, name, err, tc.seq, tc.name, tc.wantErr)
		}
	}
}
