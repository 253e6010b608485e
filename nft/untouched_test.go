package nft

import (
	"slices"
	"testing"
	"time"
)

// TestTamperLog walks the bookkeeping behind Kernel.Untouched through the
// orders of events that matter, with a clock the test moves.
func TestTamperLog(t *testing.T) {
	type step struct {
		do   string // watch, stop, read, start (a read starts), done (it ends), touch, wait=<duration>
		want bool   // Untouched afterwards
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"nothing read yet", []step{{"watch", false}}},
		{"read without a watch", []step{{"read", false}, {"watch", false}}},
		{"read with a watch", []step{{"watch", false}, {"read", true}}},
		{"foreign change, then the next read", []step{{"watch", false}, {"read", true}, {"touch", false}, {"read", true}}},
		{"a change during the read keeps the mark", []step{
			{"watch", false}, {"read", true}, {"start", true}, {"touch", false}, {"done", false}, {"read", true}}},
		{"a watch that starts during the read vouches only for the next", []step{
			{"start", false}, {"watch", false}, {"done", false}, {"read", true}}},
		{"a watch that stops during the read", []step{
			{"watch", false}, {"start", false}, {"stop", false}, {"done", false}, {"watch", false}, {"read", true}}},
		{"a stopped watch", []step{{"watch", false}, {"read", true}, {"stop", false}, {"watch", false}, {"read", true}}},
		{"one of two watches stops", []step{
			{"watch", false}, {"watch", false}, {"read", true}, {"stop", false}, {"read", true}}},
		{"age bound", []step{
			{"watch", false}, {"read", true}, {"wait=4m59s", true}, {"wait=1s", false}, {"read", true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1_000_000, 0)
			l := newTamperLog()
			l.now = func() time.Time { return now }
			var ticket readTicket
			var watches []*monitor
			for i, s := range tc.steps {
				switch s.do {
				case "watch":
					watches = append(watches, &monitor{})
					l.watchStarted(watches[len(watches)-1])
				case "stop":
					l.watchStopped(watches[0])
					watches = watches[1:]
				case "read":
					l.readDone(l.readStarting())
				case "start":
					ticket = l.readStarting()
				case "done":
					l.readDone(ticket)
				case "touch":
					l.touch()
				default:
					d, err := time.ParseDuration(s.do[len("wait="):])
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					now = now.Add(d)
				}
				if got := l.untouched(); got != s.want {
					t.Fatalf("after step %d (%s): untouched = %v, want %v", i, s.do, got, s.want)
				}
			}
		})
	}
}

// TestTamperLogPorts checks that the newest batch ports are remembered and
// the oldest forgotten.
func TestTamperLogPorts(t *testing.T) {
	l := newTamperLog()
	for p := uint32(1); p <= maxOwnPorts+4; p++ {
		l.addPort(p)
	}
	own := l.ownPorts()
	if len(own) != maxOwnPorts || slices.Contains(own, 4) || !slices.Contains(own, 5) || !slices.Contains(own, maxOwnPorts+4) {
		t.Errorf("own ports %v: want the last %d of 1..%d", own, maxOwnPorts, maxOwnPorts+4)
	}
}
