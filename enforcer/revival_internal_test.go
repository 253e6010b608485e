package enforcer

// The schedule of the follow-up sweeps for revoked UDP flows. A client
// 198.18.1.20:40000 lost its flow to a server 198.18.1.10:5353.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/nft"
)

func TestRevivalWatch(t *testing.T) {
	flow := nft.Flow{Protocol: nft.ProtoUDP, Src: netip.MustParseAddr("198.18.1.20"), SrcPort: 40000,
		Dst: netip.MustParseAddr("198.18.1.10"), DstPort: 5353}
	revival := nft.Flow{Protocol: nft.ProtoUDP, Src: flow.Dst, SrcPort: flow.DstPort, Dst: flow.Src, DstPort: flow.SrcPort}
	if got := reversed(flow); got != revival {
		t.Fatalf("reversed(%v) = %v, want %v", flow, got, revival)
	}
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	// sweep is one sweep from start to end (milliseconds after t0).
	type sweep struct {
		start, end int
		revoked    bool // deleted flow
		revived    bool // deleted its reversal
		// next is when the next check is due (ms after t0), -1: none.
		next int
	}
	for _, tc := range []struct {
		name   string
		sweeps []sweep
	}{
		{"nothing revoked, nothing watched", []sweep{{0, 10, false, false, -1}}},
		{"two checks, then forgotten", []sweep{
			{0, 10, true, false, 110},
			{50, 60, false, false, 110},    // a sweep before the first check does not count as it
			{110, 120, false, false, 1010}, // the first check
			{1010, 1020, false, false, -1}, // the last: the flow is forgotten
		}},
		{"a late sweep does both checks", []sweep{
			{0, 10, true, false, 110},
			{2000, 2010, false, false, -1},
		}},
		{"a revival found is watched anew", []sweep{
			{0, 10, true, false, 110},
			{110, 120, false, true, 220},
			{220, 230, false, false, 1120},
			{1120, 1130, false, false, -1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w revivalWatch
			for i, s := range tc.sweeps {
				if _, ok := w.watched()[revival]; ok != (i > 0 && (tc.sweeps[i-1].next >= 0)) {
					t.Errorf("sweep %d: the revival watched=%v", i, ok)
				}
				var revoked, revived []nft.Flow
				if s.revoked {
					revoked = []nft.Flow{flow}
				}
				if s.revived {
					revived = []nft.Flow{revival}
				}
				next := w.update(ms(s.start), ms(s.end), revoked, revived)
				switch {
				case s.next < 0 && !next.IsZero():
					t.Errorf("sweep %d: next check at %v, want none", i, next.Sub(t0))
				case s.next >= 0 && !next.Equal(ms(s.next)):
					t.Errorf("sweep %d: next check at %v, want %v", i, next.Sub(t0), ms(s.next).Sub(t0))
				}
			}
		})
	}
}

// A flow revived again and again is S sending by itself: after maxRevivals
// deletes of its reversal it is no longer watched.
func TestRevivalWatchGivesUp(t *testing.T) {
	flow := nft.Flow{Protocol: nft.ProtoUDP, Src: netip.MustParseAddr("198.18.1.20"), SrcPort: 40000,
		Dst: netip.MustParseAddr("198.18.1.10"), DstPort: 5353}
	var w revivalWatch
	now := time.Unix(1000, 0)
	w.update(now, now, []nft.Flow{flow}, nil)
	for i := range maxRevivals + 1 {
		now = now.Add(100 * time.Millisecond)
		next := w.update(now, now, nil, []nft.Flow{reversed(flow)})
		if watched := len(w.watched()) == 1; watched != (i < maxRevivals) || next.IsZero() == watched {
			t.Fatalf("after %d revivals: watched=%v, next check %v", i+1, watched, next)
		}
	}
}
