package integration

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

// probePair is a flow whose verdict does not change during a test: probed without
// pause, alternating IPv4 and IPv6, every answer is checked against allowed.
type probePair struct {
	name     string
	from, to *cluster.Pod
	flow     cluster.Flow
	allowed  bool
}

// prober probes its pairs continuously until stop, and counts wrong verdicts.
type prober struct {
	env    *cluster.Env
	pairs  []probePair
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	probes []int
	wrong  []int
	first  []string // first wrong verdicts, for the report
}

// startProber starts one goroutine per pair. A denied flow's probe lasts the probe
// timeout; an allowed one is followed by a 20 ms pause, which keeps the loops from
// eating the two cores.
func startProber(ctx context.Context, env *cluster.Env, pairs []probePair) *prober {
	ctx, cancel := context.WithCancel(ctx)
	p := &prober{env: env, pairs: pairs, cancel: cancel, probes: make([]int, len(pairs)), wrong: make([]int, len(pairs))}
	for i, pair := range pairs {
		p.wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				f := pair.flow
				f.Family = 4 + 2*(n%2)
				ok, err := env.Probe(ctx, pair.from, pair.to, f)
				if ctx.Err() != nil {
					return // cut by stop: no verdict
				}
				p.record(i, f, ok, err)
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
	return p
}

func (p *prober) record(i int, f cluster.Flow, ok bool, err error) {
	pair := p.pairs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probes[i]++
	if err == nil && ok == pair.allowed {
		return
	}
	p.wrong[i]++
	if len(p.first) < 10 {
		what := fmt.Sprintf("reachable=%v, want %v", ok, pair.allowed)
		if err != nil {
			what = err.Error()
		}
		p.first = append(p.first, fmt.Sprintf("%s %s (%s) at %s: %s", pair.name, f, pair.from.String()+" -> "+pair.to.String(),
			time.Now().Format("15:04:05.000"), what))
	}
}

// stop ends the probes and reports them: t fails on any wrong verdict.
func (p *prober) stop(t *testing.T) (total int) {
	t.Helper()
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	wrong := 0
	for i, pair := range p.pairs {
		t.Logf("probes %-28s %s -> %s: %5d, wrong %d", pair.name, pair.from, pair.to, p.probes[i], p.wrong[i])
		total += p.probes[i]
		wrong += p.wrong[i]
		if p.probes[i] == 0 {
			t.Errorf("no probe of %s ran", pair.name)
		}
	}
	if wrong > 0 {
		t.Errorf("%d wrong verdicts of %d probes; first ones:\n  %s", wrong, total, strings.Join(p.first, "\n  "))
	}
	return total
}

// durations summarises measured times.
type durations []time.Duration

func (d durations) median() time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func (d durations) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

func (d durations) String() string {
	return fmt.Sprintf("median %s, max %s (%d)", d.median().Round(time.Millisecond), d.max().Round(time.Millisecond), len(d))
}

// parallel runs f(0) ... f(n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// firstErr keeps the first error that concurrent goroutines report.
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// metricValue reads one sample of a Prometheus text exposition ("name" or
// `name{label="v"}`, exactly as exposed).
func metricValue(body []byte, sample string) (float64, error) {
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no sample %s", sample)
}

var addrInTable = regexp.MustCompile(`[0-9a-f:.]*[0-9a-f]`)

// addrsInTable counts the addresses of a listing that lie in prefix.
func addrsInTable(table string, prefix netip.Prefix) int {
	n := 0
	for _, s := range addrInTable.FindAllString(table, -1) {
		if a, err := netip.ParseAddr(s); err == nil && prefix.Contains(a) {
			n++
		}
	}
	return n
}
