package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// apiFloor is what the API server alone takes for a burst of writes, with
// no daemon running: the floor under "a burst of changes fully in the
// kernel", measured on the same machine and cluster.
type apiFloor struct {
	Kind string `json:"kind"`
	N    int    `json:"writes"`
	// From the first request to the last response, and to the last event
	// of the benchmark's own watch.
	AcceptedMS  float64 `json:"accepted_ms"`
	DeliveredMS float64 `json:"delivered_ms"`
	// Each write from its request to its response.
	AfterRequest quantiles `json:"response_after_request_ms"`
}

// measureFloor sends the writes at once from clients clients, as a burst
// does, and times the API server's answers and its watch events.
func measureFloor(ctx context.Context, api *apiWatch, kind string, writes []write, clients int, limit time.Duration) (apiFloor, error) {
	samples := make([]*sample, len(writes))
	errs := make([]error, len(writes))
	concurrently(len(writes), clients, func(k int) {
		s := &sample{what: writes[k].what, sent: time.Now()}
		if err := writes[k].do(ctx); err != nil {
			errs[k] = fmt.Errorf("%s: %w", writes[k].what, err)
			return
		}
		s.answered = time.Now()
		samples[k] = s
	})
	if err := errors.Join(errs...); err != nil {
		return apiFloor{}, err
	}
	if err := stamp(ctx, api, nil, writes, samples, limit); err != nil {
		return apiFloor{}, err
	}
	f := apiFloor{Kind: kind, N: len(writes)}
	var first, lastResp, lastEvent time.Time
	var afterReq []time.Duration
	for _, s := range samples {
		if first.IsZero() || s.sent.Before(first) {
			first = s.sent
		}
		lastResp = later(lastResp, s.answered)
		lastEvent = later(lastEvent, s.delivered)
		afterReq = append(afterReq, s.answered.Sub(s.sent))
	}
	f.AcceptedMS, f.DeliveredMS = ms(lastResp.Sub(first)), ms(lastEvent.Sub(first))
	f.AfterRequest = quantilesOf(afterReq, ms)
	return f, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// printFloors writes the floors as a Markdown table.
func printFloors(out io.Writer, floors []apiFloor) {
	fmt.Fprintln(out, "| kind (burst, no daemon) | writes | accepted: first request to last response (ms) | delivered: to the last watch event (ms) | response after request p50 / p90 / p99 (ms) |")
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: |")
	for _, f := range floors {
		fmt.Fprintf(out, "| %s | %d | %.0f | %.0f | %s |\n", f.Kind, f.N, f.AcceptedMS, f.DeliveredMS, f.AfterRequest)
	}
}
