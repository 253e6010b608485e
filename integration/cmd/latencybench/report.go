package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// quantiles of a set of values (durations in milliseconds).
type quantiles struct {
	P50, P90, P99, Max float64
}

// quantilesOf returns the nearest-rank quantiles of xs (which it sorts), each
// as unit makes it a number.
func quantilesOf[T cmp.Ordered](xs []T, unit func(T) float64) quantiles {
	if len(xs) == 0 {
		return quantiles{}
	}
	slices.Sort(xs)
	at := func(q float64) float64 {
		k := int(math.Ceil(q*float64(len(xs)))) - 1
		return unit(xs[max(k, 0)])
	}
	return quantiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: unit(xs[len(xs)-1])}
}

// String is "p50 / p90 / p99", in the unit of the values.
func (q quantiles) String() string { return fmt.Sprintf("%.2f / %.2f / %.2f", q.P50, q.P90, q.P99) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// phase is the result of one kind in one mode.
type phase struct {
	Mode string `json:"mode"`
	Kind string `json:"kind"`
	N    int    `json:"writes"`
	// From the write's response (negative: the batch ended before the
	// response was read) and from its request to the end of the batch
	// that carried it.
	AfterResponse quantiles `json:"after_response_ms"`
	AfterRequest  quantiles `json:"after_request_ms"`
	// The API server's part: from the response to the event of the
	// benchmark's own watch; the rest: from that event to the end of the
	// carrying batch (the daemon's informer, engine and kernel, and the
	// scheduling of both watchers).
	WatchAfterResponse quantiles `json:"watch_event_after_response_ms"`
	KernelAfterWatch   quantiles `json:"kernel_after_watch_event_ms"`
	// Messages of the carrying batches (one per batch).
	Messages quantiles `json:"batch_messages"`
	Batches  int       `json:"batches"`
	// Other batches of the phase (carrying none of its writes): count and
	// messages.
	OtherBatches  int `json:"other_batches"`
	OtherMessages int `json:"other_messages"`
	// The daemon's informer notifications queued (nftwarden_events_total)
	// and syncs (nftwarden_syncs_total: flushes and reconciles, also those
	// that changed nothing in the kernel) per write during the phase.
	EventsPerWrite  float64 `json:"events_per_write"`
	FlushesPerWrite float64 `json:"syncs_per_write"`
	// Burst: from the first request to the end of the last carrying batch,
	// and from the last response to it.
	AllInKernelMS   float64 `json:"all_in_kernel_ms,omitempty"`
	AfterLastRespMS float64 `json:"after_last_response_ms,omitempty"`
	// Samples are the writes one by one (JSON only), to be matched with
	// what the daemon did at the time (its log, a trace).
	Samples []sampleJSON `json:"samples"`
}

// sampleJSON is one write's sample: wall-clock times in Unix nanoseconds.
type sampleJSON struct {
	What     string `json:"what"`
	Sent     int64  `json:"sent_unix_ns"`
	Answered int64  `json:"answered_unix_ns"`
	InKernel int64  `json:"in_kernel_unix_ns"`
	Watched  int64  `json:"watch_event_unix_ns"`
	ViaNode  int64  `json:"watch_event_via_node_unix_ns"`
	Batch    int    `json:"batch"`
	Messages int    `json:"messages"`
}

// summarize makes the phase of the samples.
func summarize(mode, kind string, samples []*sample, others []int) phase {
	p := phase{Mode: mode, Kind: kind, N: len(samples), OtherBatches: len(others)}
	for _, n := range others {
		p.OtherMessages += n
	}
	var afterResp, afterReq, watchAfterResp, kernelAfterWatch []time.Duration
	batchSize := map[int]int{}
	var first, lastResp, lastKernel time.Time
	for _, s := range samples {
		p.Samples = append(p.Samples, sampleJSON{What: s.what, Sent: s.sent.UnixNano(), Answered: s.answered.UnixNano(),
			InKernel: s.inKernel.UnixNano(), Watched: s.delivered.UnixNano(), ViaNode: s.deliveredViaNode.UnixNano(), Batch: s.batch, Messages: s.messages})
		afterResp = append(afterResp, s.inKernel.Sub(s.answered))
		afterReq = append(afterReq, s.inKernel.Sub(s.sent))
		watchAfterResp = append(watchAfterResp, s.delivered.Sub(s.answered))
		kernelAfterWatch = append(kernelAfterWatch, s.inKernel.Sub(s.delivered))
		batchSize[s.batch] = s.messages
		if first.IsZero() || s.sent.Before(first) {
			first = s.sent
		}
		lastResp, lastKernel = later(lastResp, s.answered), later(lastKernel, s.inKernel)
	}
	p.AfterResponse, p.AfterRequest = quantilesOf(afterResp, ms), quantilesOf(afterReq, ms)
	p.WatchAfterResponse, p.KernelAfterWatch = quantilesOf(watchAfterResp, ms), quantilesOf(kernelAfterWatch, ms)
	p.Batches = len(batchSize)
	p.Messages = quantilesOf(slices.Collect(maps.Values(batchSize)), func(n int) float64 { return float64(n) })
	if mode == modeBurst && len(samples) > 0 {
		p.AllInKernelMS, p.AfterLastRespMS = ms(lastKernel.Sub(first)), ms(lastKernel.Sub(lastResp))
	}
	return p
}

// printTable writes the phases as a Markdown table.
func printTable(out io.Writer, phases []phase) {
	fmt.Fprintln(out, "| mode | kind | writes | after response p50 / p90 / p99 (ms) | after request p50 / p90 / p99 (ms) | API watch event after response p50 / p90 / p99 (ms) | kernel after watch event p50 / p90 / p99 (ms) | batches | messages per batch p50 / max | other batches | daemon events / syncs per write | burst: all in kernel (ms) | burst: after last response (ms) |")
	fmt.Fprintln(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, p := range phases {
		burst, lag := "", ""
		if p.Mode == modeBurst {
			burst, lag = fmt.Sprintf("%.0f", p.AllInKernelMS), fmt.Sprintf("%.0f", p.AfterLastRespMS)
		}
		fmt.Fprintf(out, "| %s | %s | %d | %s | %s | %s | %s | %d | %.0f / %.0f | %d | %.2f / %.2f | %s | %s |\n",
			p.Mode, p.Kind, p.N, p.AfterResponse, p.AfterRequest, p.WatchAfterResponse, p.KernelAfterWatch,
			p.Batches, p.Messages.P50, p.Messages.Max, p.OtherBatches, p.EventsPerWrite, p.FlushesPerWrite, burst, lag)
	}
}

// daemonCounts are counters of the daemon's /metrics, summed over their
// labels.
type daemonCounts struct{ events, syncs float64 }

// countsOf reads them from a /metrics body (Prometheus text format).
func countsOf(body []byte) (daemonCounts, error) {
	var c daemonCounts
	found := map[string]bool{}
	for line := range strings.Lines(string(body)) {
		var dst *float64
		switch {
		case strings.HasPrefix(line, "nftwarden_events_total{"):
			dst = &c.events
		case strings.HasPrefix(line, "nftwarden_syncs_total{"):
			dst = &c.syncs
		default:
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return c, fmt.Errorf("metrics line %q: %w", strings.TrimSpace(line), err)
		}
		*dst += v
		found[line[:strings.IndexByte(line, '{')]] = true
	}
	if len(found) != 2 {
		return c, fmt.Errorf("/metrics lacks nftwarden_events_total or nftwarden_syncs_total")
	}
	return c, nil
}

// perWrite sets the phase's counts per write from the counters before and
// after it.
func (p *phase) perWrite(before, after daemonCounts) {
	if p.N == 0 {
		return
	}
	p.EventsPerWrite = (after.events - before.events) / float64(p.N)
	p.FlushesPerWrite = (after.syncs - before.syncs) / float64(p.N)
}
