package conformance

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Cluster is what a conformance case runs against. The in-process model
// cluster implements it over per-node engines and nft.Fake; the packet harness
// implements it over network namespaces and real connections.
//
// A Cluster is created for one case with the namespaces of a Model (default
// labels, see Model.DefaultNamespaceLabels) and the model's pods running with
// DefaultPodLabels and the named ports of ContainerPorts, spread over nodes by
// Model.Node, and no policy.
type Cluster interface {
	// PodIPs returns a pod's addresses, primary first. Probes go to the
	// primary address; ipBlock cases build their CIDRs from it.
	PodIPs(p PodRef) ([]netip.Addr, error)
	// Apply performs the actions in order and returns once the result is
	// enforced on every node (a probe right after must see it).
	Apply(ctx context.Context, actions []Action) error
	// Probe reports whether a new connection from one pod to another pod's
	// primary address on port/proto gets through. An error means the probe
	// could not be made or the cluster is inconsistent; it fails the case.
	Probe(ctx context.Context, from, to PodRef, port int, proto corev1.Protocol) (bool, error)
	// ProbeNode reports whether a new connection from a pod to node's address
	// of the pod's primary family gets through to the server that runs in the
	// node's own network namespace (NodePoke).
	ProbeNode(ctx context.Context, from PodRef, node, port int, proto corev1.Protocol) (bool, error)
}

// RunOptions tune RunCase.
type RunOptions struct {
	// Workers is the number of probes in flight (default 1).
	Workers int
	// Repro is printed with a failure, e.g. the command that reruns the case.
	Repro string
	// Attempts is how often a probe matrix with wrong results is probed again
	// (default 1, no retry), RetryDelay the pause before each retry. Clusters
	// that converge asynchronously (real daemons watching an API server) need
	// them, as upstream's ValidateOrFail probes twice with backoff.
	Attempts   int
	RetryDelay time.Duration
}

// Result is the outcome of one case.
type Result struct {
	Case     string
	Duration time.Duration
	// Failures describe each failed step/probe with its diff table, or the
	// error that stopped the case.
	Failures []string
}

// Passed reports whether the case passed.
func (r Result) Passed() bool { return len(r.Failures) == 0 }

// Report is the failure text: case, step, probe, diff table.
func (r Result) Report() string {
	return fmt.Sprintf("case %q failed:\n%s", r.Case, strings.Join(r.Failures, "\n"))
}

// RunCase runs c against cl. Probes without an expectation (generated cases)
// are expected to match oracle, which must then be non-nil and follows every
// action of the case.
func RunCase(ctx context.Context, cl Cluster, m *Model, c Case, oracle *Oracle, opts RunOptions) (res Result) {
	start := time.Now()
	res.Case = c.Name
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if opts.Repro != "" {
			msg += "\nreproduce: " + opts.Repro
		}
		res.Failures = append(res.Failures, msg)
	}
	defer func() { res.Duration = time.Since(start) }()

	primary := make(map[PodRef]netip.Addr, len(m.Pods))
	for _, p := range m.Pods {
		ips, err := cl.PodIPs(p)
		if err == nil && len(ips) == 0 {
			err = fmt.Errorf("no address")
		}
		if err != nil {
			fail("pod %s: %v", p, err)
			return res
		}
		primary[p] = ips[0]
	}
	env := NewEnv(m, func(p PodRef) netip.Addr { return primary[p] })
	for i, st := range c.Steps(env) {
		label := fmt.Sprintf("step %d", i+1)
		if st.Name != "" {
			label += fmt.Sprintf(" (%s)", st.Name)
		}
		if err := cl.Apply(ctx, st.Actions); err != nil {
			fail("%s: apply %v: %v", label, st.Actions, err)
			return res
		}
		for _, a := range st.Actions {
			if oracle == nil {
				break
			}
			if err := oracle.Apply(a); err != nil {
				fail("%s: %v", label, err)
				return res
			}
		}
		for _, pr := range st.Probes {
			r := pr.Reach
			if r == nil {
				if oracle == nil {
					fail("%s: probe %s has no expectation and there is no oracle", label, pr)
					return res
				}
				var err error
				if r, err = oracle.Expect(m.Pods, pr.Port, pr.Protocol); err != nil {
					fail("%s, actions %v: probe %s: oracle inconsistent:\n%v", label, st.Actions, pr, err)
				}
			}
			var errs []error
			for attempt := range max(opts.Attempts, 1) {
				if attempt > 0 {
					select {
					case <-ctx.Done():
						fail("%s: %v", label, ctx.Err())
						return res
					case <-time.After(opts.RetryDelay):
					}
					r.Observed = newTable(r.Expected.Pods(), -1)
				}
				errs = probeAll(ctx, cl, r, pr, max(opts.Workers, 1))
				if r.Wrong() == 0 && len(errs) == 0 {
					break
				}
			}
			if wrong := r.Wrong(); wrong > 0 || len(errs) > 0 {
				var b strings.Builder
				fmt.Fprintf(&b, "%s, actions %v: probe %s: %d wrong of %d\n%s", label, st.Actions, pr, wrong,
					r.Checked(), r.Diff())
				for _, e := range errs {
					fmt.Fprintf(&b, "  %v\n", e)
				}
				fail("%s", strings.TrimRight(b.String(), "\n"))
			}
		}
		for _, np := range st.NodePokes {
			if err := pokeNode(ctx, cl, np, opts); err != nil {
				fail("%s, actions %v: %v", label, st.Actions, err)
			}
		}
	}
	return res
}

// pokeNode makes one NodePoke, again after RetryDelay while the answer is
// wrong, up to Attempts times.
func pokeNode(ctx context.Context, cl Cluster, np NodePoke, opts RunOptions) error {
	var got bool
	var err error
	for attempt := range max(opts.Attempts, 1) {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: %w", np, ctx.Err())
			case <-time.After(opts.RetryDelay):
			}
		}
		got, err = cl.ProbeNode(ctx, np.From, np.Node, np.Port, np.Protocol)
		if err == nil && got == np.Allowed {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", np, err)
	}
	return fmt.Errorf("%s: allowed %v, want %v", np, got, np.Allowed)
}

// probeAll fills r.Observed for every flow between distinct pods.
func probeAll(ctx context.Context, cl Cluster, r *Reachability, pr Probe, workers int) []error {
	type job struct{ from, to PodRef }
	type result struct {
		job
		ok  bool
		err error
	}
	pods := r.Expected.Pods()
	jobs := make(chan job)
	results := make(chan result)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				ok, err := cl.Probe(ctx, j.from, j.to, pr.Port, pr.Protocol)
				results <- result{j, ok, err}
			}
		}()
	}
	go func() {
		for _, from := range pods {
			for _, to := range pods {
				if r.Probed(from, to) {
					jobs <- job{from, to}
				}
			}
		}
		close(jobs)
		wg.Wait()
		close(results)
	}()
	var errs []error
	for res := range results {
		r.Observe(res.from, res.to, res.ok)
		if res.err != nil {
			errs = append(errs, fmt.Errorf("%s -> %s %s: %w", res.from, res.to, pr, res.err))
		}
	}
	return errs
}

// Summary collects results and prints them the way conformance results are
// read: one line per case, then the totals.
type Summary struct {
	mu      sync.Mutex
	results []Result
}

// Add records a result.
func (s *Summary) Add(r Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results = append(s.results, r)
}

// Counts returns how many cases passed and failed.
func (s *Summary) Counts() (passed, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.results {
		if r.Passed() {
			passed++
		} else {
			failed++
		}
	}
	return passed, failed
}

// Write prints "PASS|FAIL <name> <duration>" per case and the closing line
// "N passed, M failed".
func (s *Summary) Write(w io.Writer) error {
	s.mu.Lock()
	var b strings.Builder
	for _, r := range s.results {
		status := "PASS"
		if !r.Passed() {
			status = "FAIL"
		}
		fmt.Fprintf(&b, "%s %s %s\n", status, r.Case, r.Duration.Round(time.Microsecond))
	}
	s.mu.Unlock()
	passed, failed := s.Counts()
	fmt.Fprintf(&b, "%d passed, %d failed\n", passed, failed)
	_, err := io.WriteString(w, b.String())
	return err
}
