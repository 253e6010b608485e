package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nftwarden/nftwarden/nft"
)

// fakeCounters serves set values and meanings and counts its reads.
type fakeCounters struct {
	values   map[string]nft.CounterObject
	meanings map[string][]counterTerm
	err      error
	reads    int
}

func (f *fakeCounters) Counters(context.Context) (map[string]nft.CounterObject, error) {
	f.reads++
	return f.values, f.err
}

// np is the series of NetworkPolicy ns/name.
func np(ns, name, dir, verdict string) policySeries {
	return policySeries{Kind: "NetworkPolicy", Namespace: ns, Policy: name, Direction: dir, Verdict: verdict}
}

func other(dir, verdict string) policySeries {
	return policySeries{Policy: otherPolicy, Direction: dir, Verdict: verdict}
}

// scrapePolicyCounters collects the metrics and returns packets (and bytes, which the
// tests set to 100 × packets) by series.
func scrapePolicyCounters(t *testing.T, pc *policyCounters) map[policySeries]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(pc)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	packets, bytes := map[policySeries]float64{}, map[policySeries]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := seriesOf(m)
			switch mf.GetName() {
			case "nftwarden_policy_packets_total":
				packets[s] = m.GetCounter().GetValue()
			case "nftwarden_policy_bytes_total":
				bytes[s] = m.GetCounter().GetValue()
			}
		}
	}
	for s, p := range packets {
		if bytes[s] != 100*p {
			t.Errorf("%+v: %v bytes for %v packets, want 100 a packet", s, bytes[s], p)
		}
	}
	return packets
}

func seriesOf(m *dto.Metric) policySeries {
	l := map[string]string{}
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return policySeries{Kind: l["kind"], Namespace: l["namespace"], Policy: l["policy"], Direction: l["direction"], Verdict: l["verdict"]}
}

func packets(n uint64) nft.CounterObject { return nft.CounterObject{Packets: n, Bytes: 100 * n} }

// TestPolicyCounters follows the running totals through reads: each step
// sets the kernel's values (and meanings) and checks every exported series.
func TestPolicyCounters(t *testing.T) {
	web := func(verdict string, sign int) counterTerm {
		return counterTerm{Series: np("shop", "web", "ingress", verdict), Sign: sign}
	}
	api := counterTerm{Series: np("shop", "api", "ingress", counterAllowed), Sign: 1}
	baseMeanings := map[string][]counterTerm{
		"web-entered":  {web(counterAllowed, 1)},
		"web-notallow": {web(counterAllowed, -1)},
		"dd-pod1":      {web(counterDenied, 1), {Series: np("shop", "default-deny", "ingress", counterDenied), Sign: 1}},
		"api-entered":  {api},
	}
	steps := []struct {
		name     string
		values   map[string]nft.CounterObject
		meanings map[string][]counterTerm
		want     map[policySeries]float64
	}{
		{
			name:   "first read: the values as they are; allowed = entered - not allowed",
			values: map[string]nft.CounterObject{"web-entered": packets(10), "web-notallow": packets(4), "dd-pod1": packets(4), "api-entered": packets(1)},
			want: map[policySeries]float64{
				np("shop", "web", "ingress", counterAllowed): 6, np("shop", "web", "ingress", counterDenied): 4,
				np("shop", "default-deny", "ingress", counterDenied): 4,
				// api has the fewest packets: beyond the bound of 2.
				other("ingress", counterAllowed): 1,
			},
		},
		{
			name:   "differences accumulate",
			values: map[string]nft.CounterObject{"web-entered": packets(15), "web-notallow": packets(5), "dd-pod1": packets(5), "api-entered": packets(3)},
			want: map[policySeries]float64{
				np("shop", "web", "ingress", counterAllowed): 10, np("shop", "web", "ingress", counterDenied): 5,
				np("shop", "default-deny", "ingress", counterDenied): 5,
				other("ingress", counterAllowed):                     3,
			},
		},
		{
			name: "a recompiled chain resets its counters: the series go on",
			values: map[string]nft.CounterObject{"web-entered": packets(2), "web-notallow": packets(1), "dd-pod1": packets(5),
				"api-entered": packets(3)},
			want: map[policySeries]float64{
				np("shop", "web", "ingress", counterAllowed): 11, np("shop", "web", "ingress", counterDenied): 5,
				np("shop", "default-deny", "ingress", counterDenied): 5,
				other("ingress", counterAllowed):                     3,
			},
		},
		{
			name: "api overtakes default-deny: its series starts with its total, _other keeps what it had",
			values: map[string]nft.CounterObject{"web-entered": packets(2), "web-notallow": packets(1), "dd-pod1": packets(6),
				"api-entered": packets(13)},
			want: map[policySeries]float64{
				np("shop", "web", "ingress", counterAllowed): 11, np("shop", "web", "ingress", counterDenied): 6,
				np("shop", "api", "ingress", counterAllowed): 13,
				other("ingress", counterAllowed):             3,
				// default-deny left the top 2: its difference (1) goes to _other from now on.
				other("ingress", counterDenied): 1,
			},
		},
		{
			name: "a counter's meaning changes: its differences go to the new series",
			values: map[string]nft.CounterObject{"web-entered": packets(2), "web-notallow": packets(1), "dd-pod1": packets(16),
				"api-entered": packets(13)},
			meanings: map[string][]counterTerm{
				"web-entered": {web(counterAllowed, 1)}, "web-notallow": {web(counterAllowed, -1)},
				"dd-pod1":     {{Series: np("shop", "api", "ingress", counterDenied), Sign: 1}},
				"api-entered": {api},
			},
			want: map[policySeries]float64{
				// web's denied series is gone with its meaning; api gets the 10 new packets.
				np("shop", "web", "ingress", counterAllowed): 11,
				np("shop", "api", "ingress", counterAllowed): 13, np("shop", "api", "ingress", counterDenied): 10,
				other("ingress", counterAllowed): 3, other("ingress", counterDenied): 1,
			},
		},
		{
			name:     "a deleted policy's series and counters are forgotten",
			values:   map[string]nft.CounterObject{"api-entered": packets(14)},
			meanings: map[string][]counterTerm{"api-entered": {api}},
			want: map[policySeries]float64{
				np("shop", "api", "ingress", counterAllowed): 14,
				other("ingress", counterAllowed):             3, other("ingress", counterDenied): 1,
			},
		},
	}
	fc := &fakeCounters{meanings: baseMeanings}
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	pc := newPolicyCounters(fc, func() map[string][]counterTerm { return fc.meanings }, 2, slog.New(slog.DiscardHandler))
	pc.now = func() time.Time { return clock }
	var prev map[policySeries]float64
	for i, st := range steps {
		fc.values = st.values
		if st.meanings != nil {
			fc.meanings = st.meanings
		}
		clock = clock.Add(policyCountersTTL)
		got := scrapePolicyCounters(t, pc)
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("step %d (%s): series (-want +got):\n%s", i, st.name, diff)
		}
		for s, v := range got {
			if p, ok := prev[s]; ok && v < p {
				t.Errorf("step %d (%s): %+v went backwards: %v -> %v", i, st.name, s, p, v)
			}
		}
		prev = got
	}
	if fc.reads != len(steps) {
		t.Errorf("%d reads for %d scrapes a TTL apart", fc.reads, len(steps))
	}
}

// A scrape within the TTL reuses the last read; a failed read keeps the
// last metrics and is reported.
func TestPolicyCountersCacheAndErrors(t *testing.T) {
	fc := &fakeCounters{values: map[string]nft.CounterObject{"c": packets(5)},
		meanings: map[string][]counterTerm{"c": {{Series: np("a", "p", "egress", counterAllowed), Sign: 1}}}}
	var logs bytes.Buffer
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	pc := newPolicyCounters(fc, func() map[string][]counterTerm { return fc.meanings }, 10, slog.New(slog.NewTextHandler(&logs, nil)))
	pc.now = func() time.Time { return clock }
	want := map[policySeries]float64{np("a", "p", "egress", counterAllowed): 5}
	for range 3 {
		if got := scrapePolicyCounters(t, pc); !cmp.Equal(got, want) {
			t.Errorf("scrape %v, want %v", got, want)
		}
	}
	if fc.reads != 1 {
		t.Errorf("%d reads for 3 scrapes within the TTL, want 1", fc.reads)
	}
	fc.err = errors.New("netlink: no buffer space")
	for range 2 {
		clock = clock.Add(policyCountersTTL)
		if got := scrapePolicyCounters(t, pc); !cmp.Equal(got, want) {
			t.Errorf("after a failed read: %v, want the last metrics %v", got, want)
		}
	}
	if pc.readErrors != 2 {
		t.Errorf("%v read errors counted, want 2", pc.readErrors)
	}
	if n := strings.Count(logs.String(), "cannot read"); n != 1 {
		t.Errorf("the failure logged %d times, want once:\n%s", n, logs.String())
	}
}

// The number of series is bounded by (limit+1) × directions × verdicts.
func TestPolicyCountersBound(t *testing.T) {
	fc := &fakeCounters{values: map[string]nft.CounterObject{}, meanings: map[string][]counterTerm{}}
	const policies, limit = 500, 10
	for i := range policies {
		for _, dir := range []string{"ingress", "egress"} {
			for _, v := range []string{counterAllowed, counterDenied, counterPassed} {
				name := fmt.Sprintf("c-%d-%s-%s", i, dir, v)
				fc.values[name] = packets(uint64(i + 1))
				fc.meanings[name] = []counterTerm{{Series: policySeries{Kind: "ClusterNetworkPolicy", Policy: fmt.Sprint("p", i), Direction: dir, Verdict: v}, Sign: 1}}
			}
		}
	}
	pc := newPolicyCounters(fc, func() map[string][]counterTerm { return fc.meanings }, limit, slog.New(slog.DiscardHandler))
	got := scrapePolicyCounters(t, pc)
	if max := (limit + 1) * 2 * 3; len(got) != max {
		t.Errorf("%d series, want the bound %d", len(got), max)
	}
	var names []string
	for s := range got {
		names = append(names, s.Policy)
	}
	sort.Strings(names)
	for _, n := range names {
		if n != otherPolicy && n < "p490" {
			t.Errorf("policy %s exported, want only the %d with most packets (p490-p499)", n, limit)
		}
	}
	if o := got[policySeries{Policy: otherPolicy, Direction: "ingress", Verdict: counterDenied}]; o != float64((policies-limit)*(policies-limit+1)/2) {
		t.Errorf("_other ingress denied = %v, want the sum of the others", o)
	}
}
