package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// sample is what one write took.
type sample struct {
	// sent: just before the request; answered: when its response was read;
	// inKernel: when the watch read the NEWGEN of the batch that carried it.
	sent, answered, inKernel time.Time
	// delivered: when the benchmark's own watch of the object (apiWatch)
	// received the write's event.
	delivered time.Time
	// deliveredViaNode: likewise, by a watch that reaches the API server
	// the daemon's way (from the node's namespace, through its relay).
	deliveredViaNode time.Time
	// messages in the carrying batch (about the table), and its number.
	messages, batch int
	what            string // the write, as errors name it
}

// tracker matches the node's batches to the writes in flight. A batch
// carries a write when it is the first batch, of those whose NEWGEN was read
// after the write's request was sent, with a message that shows the
// write's change (cluster.NFTChange: the pod's address as an element key
// added or deleted, the policy's chain added or deleted). Batches that
// carry no write in flight are counted as others.
type tracker struct {
	watch *cluster.NFTBatchWatch

	mu      sync.Mutex
	pending []*inFlight
	seq     int       // batches seen
	lastEnd time.Time // of the last batch
	others  []int     // messages of each batch that carried no write, since takeOthers
	failed  error
	stop    chan struct{} // closed when the watch fails
}

type inFlight struct {
	change cluster.NFTChange
	s      *sample
	done   chan struct{}
}

func newTracker(w *cluster.NFTBatchWatch) *tracker {
	return &tracker{watch: w, stop: make(chan struct{}), lastEnd: time.Now()}
}

// run reads batches until ctx ends or the watch fails.
func (t *tracker) run(ctx context.Context) {
	for {
		b, err := t.watch.Next(ctx)
		if err != nil {
			t.mu.Lock()
			t.failed = err
			t.mu.Unlock()
			close(t.stop)
			return
		}
		t.batch(&b)
	}
}

func (t *tracker) batch(b *cluster.NFTBatch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	t.lastEnd = b.End
	carried := false
	kept := t.pending[:0]
	for _, f := range t.pending {
		if !b.End.Before(f.s.sent) && b.Carries(f.change) {
			f.s.inKernel, f.s.messages, f.s.batch = b.End, len(b.Messages), t.seq
			close(f.done)
			carried = true
			continue
		}
		kept = append(kept, f)
	}
	clear(t.pending[len(kept):])
	t.pending = kept
	if !carried {
		t.others = append(t.others, len(b.Messages))
	}
}

// send makes the write, measured, and returns its sample and what to wait for.
func (t *tracker) send(ctx context.Context, w write) (*sample, *inFlight, error) {
	f := &inFlight{change: w.change, s: &sample{what: w.what}, done: make(chan struct{})}
	t.mu.Lock()
	f.s.sent = time.Now()
	t.pending = append(t.pending, f)
	t.mu.Unlock()
	err := w.do(ctx)
	f.s.answered = time.Now()
	if err != nil {
		t.forget(f)
		return nil, nil, fmt.Errorf("%s: %w", w.what, err)
	}
	return f.s, f, nil
}

func (t *tracker) forget(f *inFlight) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, p := range t.pending {
		if p == f {
			t.pending = append(t.pending[:k], t.pending[k+1:]...)
			return
		}
	}
}

// errNotCarried: no batch carried a write within the bound; the kind's
// change did not reach the node's table (or took longer).
var errNotCarried = errors.New("no kernel batch carried the write")

// wait waits until a batch carried f, bounded by limit.
func (t *tracker) wait(f *inFlight, what string, limit *time.Timer) error {
	select {
	case <-f.done:
		return nil
	case <-t.stop:
		t.mu.Lock()
		defer t.mu.Unlock()
		return fmt.Errorf("%s: watching the node's batches: %w", what, t.failed)
	case <-limit.C:
		t.forget(f)
		return fmt.Errorf("%s: %w", what, errNotCarried)
	}
}

// quietLimit bounds a wait for a quiet gap: a daemon that sends batches
// all the time cannot be measured this way.
const quietLimit = time.Minute

// quiet returns once no batch has ended for gap: the daemon is idle, the
// previous write's batches are all in.
func (t *tracker) quiet(ctx context.Context, gap time.Duration) error {
	start := time.Now()
	for {
		t.mu.Lock()
		left := gap - time.Since(t.lastEnd)
		t.mu.Unlock()
		if left <= 0 {
			return nil
		}
		if time.Since(start) > quietLimit {
			return fmt.Errorf("the node's table never stayed unchanged for %v within %v", gap, quietLimit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(left):
		}
	}
}

// takeOthers returns the sizes of the batches that carried no write since
// the last call.
func (t *tracker) takeOthers() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.others
	t.others = nil
	return out
}

// modes of sending writes.
const (
	modeIsolated = "isolated"
	modeSpaced   = "spaced"
	modeBurst    = "burst"
)

// runMode sends the writes as the mode says and returns their samples in
// order: isolated, one at a time, each after the previous one's batches and
// a quiet gap; spaced, one every spacing whatever the answers; burst, all at
// once from clients concurrent clients.
func (t *tracker) runMode(ctx context.Context, mode string, writes []write, o modeOptions) ([]*sample, error) {
	samples := make([]*sample, len(writes))
	if mode == modeIsolated {
		for k, w := range writes {
			s, f, err := t.send(ctx, w)
			if err != nil {
				return nil, err
			}
			if err := t.wait(f, w.what, time.NewTimer(o.timeout)); err != nil {
				return nil, err
			}
			samples[k] = s
			if err := t.quiet(ctx, o.gap); err != nil {
				return nil, err
			}
		}
		return samples, nil
	}
	flights := make([]*inFlight, len(writes))
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	sendOne := func(k int) {
		samples[k], flights[k], errs[k] = t.send(ctx, writes[k])
	}
	switch mode {
	case modeSpaced:
		tick := time.NewTicker(o.spacing)
		for k := range writes {
			if k > 0 {
				<-tick.C
			}
			wg.Go(func() { sendOne(k) })
		}
		tick.Stop()
	case modeBurst:
		concurrently(len(writes), o.clients, sendOne)
	default:
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, f := range flights {
			if f != nil {
				t.forget(f)
			}
		}
		return nil, err
	}
	limit := time.NewTimer(o.timeout)
	defer limit.Stop()
	for k, f := range flights {
		if err := t.wait(f, writes[k].what, limit); err != nil {
			for _, g := range flights[k:] {
				t.forget(g)
			}
			return nil, err
		}
	}
	return samples, t.quiet(ctx, o.gap)
}

type modeOptions struct {
	gap, spacing, timeout time.Duration
	clients               int
}

// concurrently calls f(0..n-1) from clients goroutines, each taking the
// next k when it is done with its last, and returns when all are done.
func concurrently(n, clients int, f func(k int)) {
	next := make(chan int, n)
	for k := range n {
		next <- k
	}
	close(next)
	var wg sync.WaitGroup
	for range min(clients, n) {
		wg.Go(func() {
			for k := range next {
				f(k)
			}
		})
	}
	wg.Wait()
}
