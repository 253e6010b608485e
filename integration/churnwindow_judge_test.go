package integration

import (
	"testing"
	"time"
)

// TestJudgeDeniedProbe: a denied holder's probe that got through is a stale
// allow only if the server's node had removed the address before the probe
// started; the CI failures of TestIntegrationChurn (probe right after the
// status, removal later) are early allows.
func TestJudgeDeniedProbe(t *testing.T) {
	deleted := time.Date(2026, 12, 6, 16, 36, 32, 147e6, time.UTC)
	at := func(ms int) time.Time { return deleted.Add(time.Duration(ms) * time.Millisecond) }
	cases := []struct {
		name            string
		removed, probed time.Time
		reachable       bool
		want            churnVerdict
	}{
		{"denied before the removal", at(160), at(105), false, verdictDenied},
		{"denied after the removal", at(60), at(105), false, verdictDenied},
		{"through before the removal (the node could not know)", at(160), at(105), true, verdictAllowedBeforeRemoval},
		{"through as the removal ends", at(105), at(105), true, verdictAllowedBeforeRemoval},
		{"through after the removal", at(60), at(105), true, verdictStaleAllow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := judgeDeniedProbe(tc.removed, tc.probed, tc.reachable); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestProgrammingBound reads the bucket bound of a quantile of the daemon's
// programming histogram.
func TestProgrammingBound(t *testing.T) {
	const body = `# TYPE nftwarden_event_programming_duration_seconds histogram
nftwarden_event_programming_duration_seconds_bucket{kind="namespace",le="0.0001"} 7
nftwarden_event_programming_duration_seconds_bucket{kind="pod",le="0.0001"} 10
nftwarden_event_programming_duration_seconds_bucket{kind="pod",le="0.0002"} 60
nftwarden_event_programming_duration_seconds_bucket{kind="pod",le="0.0064"} 99
nftwarden_event_programming_duration_seconds_bucket{kind="pod",le="+Inf"} 100
`
	cases := []struct {
		q    float64
		want time.Duration
	}{
		{0.1, 100 * time.Microsecond},
		{0.5, 200 * time.Microsecond},
		{0.99, 6400 * time.Microsecond},
		{1, time.Duration(1<<63 - 1)},
	}
	for _, tc := range cases {
		got, err := programmingBound([]byte(body), tc.q)
		if err != nil || got != tc.want {
			t.Errorf("q %v: %v, %v; want %v", tc.q, got, err, tc.want)
		}
	}
	if _, err := programmingBound([]byte("# nothing\n"), 0.5); err == nil {
		t.Error("no histogram: no error")
	}
}
