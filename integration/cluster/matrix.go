package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Flow is what a probe tries: a destination port and protocol over one IP family.
type Flow struct {
	Port     uint16
	Protocol corev1.Protocol // TCP (default), UDP, SCTP
	Family   int             // 4 (default) or 6
}

func (f Flow) proto() corev1.Protocol {
	if f.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return f.Protocol
}

func (f Flow) family() int {
	if f.Family == 6 {
		return 6
	}
	return 4
}

func (f Flow) String() string {
	return fmt.Sprintf("%s/%d over IPv%d", f.proto(), f.Port, f.family())
}

// ProbeResult is the outcome of one probe. Reachable means the server's greeting came
// back; Peer names who answered; Err says why not (a timeout for a dropped flow).
type ProbeResult struct {
	Reachable bool
	Peer      string
	Err       string
}

// ProbeAddr asks the agent of from to reach addr:port over proto. Unreachable is a
// result, not an error; the error is for a broken harness.
func (e *Env) ProbeAddr(ctx context.Context, from *Pod, addr netip.Addr, port uint16, proto corev1.Protocol) (ProbeResult, error) {
	if from.agent == nil {
		return ProbeResult{}, fmt.Errorf("probe from %s: %w", from, errNoAgent)
	}
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	r, err := from.agent.probe(ctx, addr.String(), port, strings.ToLower(string(proto)), e.opts.ProbeTimeout)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("probe %s -> %s:%d/%s: %w", from, addr, port, proto, err)
	}
	return ProbeResult{Reachable: r.OK, Peer: r.Peer, Err: r.Error}, nil
}

// Probe reports whether from reaches to over f. An answer from another pod than to is
// an error (the harness misrouted), not a success.
func (e *Env) Probe(ctx context.Context, from, to *Pod, f Flow) (bool, error) {
	r, err := e.ProbeAddr(ctx, from, to.Addr(f.family()), f.Port, f.proto())
	if err != nil {
		return false, err
	}
	if r.Reachable && r.Peer != to.String() {
		return false, fmt.Errorf("probe %s -> %s (%s) answered by %q", from, to, f, r.Peer)
	}
	return r.Reachable, nil
}

// Reachability is a table of expected or observed reachability between pods: who
// reaches whom over one Flow. A pod's traffic to itself never leaves its namespace and
// is not part of the table.
type Reachability struct {
	Pods    []*Pod
	allowed map[[2]*Pod]bool
}

// NewReachability returns a table over pods with every pair set to allowed.
func NewReachability(pods []*Pod, allowed bool) *Reachability {
	r := &Reachability{Pods: pods, allowed: map[[2]*Pod]bool{}}
	for _, a := range pods {
		for _, b := range pods {
			if a != b {
				r.allowed[[2]*Pod{a, b}] = allowed
			}
		}
	}
	return r
}

// Expect sets one cell.
func (r *Reachability) Expect(from, to *Pod, allowed bool) {
	if from != to {
		r.allowed[[2]*Pod{from, to}] = allowed
	}
}

// ExpectIngress sets every cell whose destination is to.
func (r *Reachability) ExpectIngress(to *Pod, allowed bool) {
	for _, from := range r.Pods {
		r.Expect(from, to, allowed)
	}
}

// ExpectEgress sets every cell whose source is from.
func (r *Reachability) ExpectEgress(from *Pod, allowed bool) {
	for _, to := range r.Pods {
		r.Expect(from, to, allowed)
	}
}

// Allowed reads one cell.
func (r *Reachability) Allowed(from, to *Pod) bool { return r.allowed[[2]*Pod{from, to}] }

// Diff lists the cells where got differs from r, one line each.
func (r *Reachability) Diff(got *Reachability) []string {
	var out []string
	for _, a := range r.Pods {
		for _, b := range r.Pods {
			if a == b || r.Allowed(a, b) == got.Allowed(a, b) {
				continue
			}
			out = append(out, fmt.Sprintf("%s -> %s: want %s, got %s", a, b, word(r.Allowed(a, b)), word(got.Allowed(a, b))))
		}
	}
	return out
}

func word(ok bool) string {
	if ok {
		return "reachable"
	}
	return "blocked"
}

// Table renders r with rows as sources and columns as destinations: "ok" reachable,
// "--" blocked, "." the pod itself. Cells that differ from want (if not nil) carry a
// "X" so that they stand out.
func (r *Reachability) Table(want *Reachability) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "from \\ to")
	for _, p := range r.Pods {
		fmt.Fprintf(tw, "\t%s", p)
	}
	fmt.Fprintln(tw)
	for _, a := range r.Pods {
		fmt.Fprint(tw, a.String())
		for _, c := range r.Pods {
			cell := "."
			if a != c {
				cell = "--"
				if r.Allowed(a, c) {
					cell = "ok"
				}
				if want != nil && want.Allowed(a, c) != r.Allowed(a, c) {
					cell += " X"
				}
			}
			fmt.Fprintf(tw, "\t%s", cell)
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	return b.String()
}

// maxProbes bounds the probes in flight: each is a goroutine in an agent and, when
// blocked, a socket waiting for its timeout.
const maxProbes = 48

// ProbeMatrix probes every ordered pair of pods over f, concurrently, and returns what
// it saw.
func (e *Env) ProbeMatrix(ctx context.Context, pods []*Pod, f Flow) (*Reachability, error) {
	got := NewReachability(pods, false)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, maxProbes)
	)
	for _, a := range pods {
		for _, b := range pods {
			if a == b {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ok, err := e.Probe(ctx, a, b, f)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				got.Expect(a, b, ok)
			}()
		}
	}
	wg.Wait()
	return got, firstErr
}

// WaitMatrix probes the pods of want over f until what it sees equals want or bound
// passes (the daemon applies changes asynchronously). On a mismatch the error shows the
// observed table with the differing cells marked, and lists them.
func (e *Env) WaitMatrix(ctx context.Context, want *Reachability, f Flow, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	var got *Reachability
	for try := 1; ; try++ {
		var err error
		got, err = e.ProbeMatrix(ctx, want.Pods, f)
		if err != nil {
			return err
		}
		diff := want.Diff(got)
		if len(diff) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			for _, n := range e.Nodes {
				if err := n.DaemonExited(); err != nil {
					diff = append(diff, err.Error())
				}
			}
			return fmt.Errorf("%s: reachability still differs after %s (%d tries)\nobserved (rows: from, columns: to; ok = reachable, -- = blocked, X = differs from expected):\n%s\ndiffering cells:\n  %s",
				f, bound, try, got.Table(want), strings.Join(diff, "\n  "))
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
