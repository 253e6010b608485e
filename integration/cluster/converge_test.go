package cluster

import (
	"slices"
	"testing"
)

func TestProgramArgs(t *testing.T) {
	tests := []struct {
		name       string
		args, want []string
	}{
		{"none", nil, nil},
		{"run-only flags dropped", []string{"--log-file", "/x", "--metrics-address", "a:1"}, nil},
		{"switches and values", []string{"--log-denied", "--log-format", "json", "--log-rate", "20", "--log-burst=10", "--audit"},
			[]string{"--log-denied", "--log-rate", "20", "--log-burst=10", "--audit"}},
		{"counters off", []string{"--policy-counters=false", "--log-group", "7"}, []string{"--policy-counters=false", "--log-group", "7"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := programArgs(tc.args); !slices.Equal(got, tc.want) {
				t.Fatalf("programArgs(%q) = %q, want %q", tc.args, got, tc.want)
			}
		})
	}
}
