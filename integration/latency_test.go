package integration

// Programming latency and explain --trace against a real API server: a policy
// created, changed and deleted is counted once per change in each daemon's
// nftwarden_policy_programming_duration_seconds, within the time the test saw
// it take (plus the API's one-second resolution); client-go's metrics are
// served; and explain --trace, run in node 0's namespace, finds the kernel's
// table in agreement with the model, resolving a port name.
//
// Topology of helpers_test.go: a policy isolates x/a (node 0), then x/b (last
// node) instead, admitting x/b on any port, and is deleted; explain traces
// x/b -> x/a (allowed) and y/c -> x/a (denied) while x/a is isolated.

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nftwarden/nftwarden/integration/cluster"
)

const policyLatencyCount = `nftwarden_policy_programming_duration_seconds_count{kind="networkpolicy"}`

// latencySample reads the count and sum of a programming histogram of kind
// networkpolicy from the node's daemon.
func latencySample(t *testing.T, ctx context.Context, n *cluster.Node, histogram string) (count, sum float64) {
	t.Helper()
	body, err := n.DaemonGet(ctx, "/metrics")
	must(t, err)
	count, err = metricValue(body, histogram+`_count{kind="networkpolicy"}`)
	must(t, err)
	sum, err = metricValue(body, histogram+`_sum{kind="networkpolicy"}`)
	must(t, err)
	return count, sum
}

func TestIntegrationProgrammingLatency(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	env := tp.env
	type sample struct{ count, sum, eventSum float64 }
	read := func(n *cluster.Node) sample {
		c, s := latencySample(t, ctx, n, "nftwarden_policy_programming_duration_seconds")
		_, e := latencySample(t, ctx, n, "nftwarden_event_programming_duration_seconds")
		return sample{c, s, e}
	}
	last := map[*cluster.Node]sample{}
	for _, n := range env.Nodes {
		last[n] = read(n)
	}

	np := policy(tp.x, "isolate", selecting(app("a")), ingress(from(peers(podPeer(app("b"))))))
	// isolated: target admits only x/b.
	isolated := func(target *cluster.Pod) *cluster.Reachability {
		r := cluster.NewReachability(tp.all, true)
		r.ExpectIngress(target, false)
		r.Expect(tp.b, target, true)
		return r
	}
	steps := []struct {
		name   string
		change func() error
		want   *cluster.Reachability
	}{
		{"create", func() error { return env.ApplyPolicy(ctx, np) }, isolated(tp.a)},
		{"update (isolate x/b instead)", func() error {
			selecting(app("b"))(np)
			return env.ApplyPolicy(ctx, np)
		}, isolated(tp.b)},
		{"delete", func() error { return env.DeletePolicy(ctx, tp.x, np.Name) }, cluster.NewReachability(tp.all, true)},
	}
	for _, step := range steps {
		start := time.Now()
		must(t, step.change())
		tp.expect(t, step.want, tcp80v4)
		for _, n := range env.Nodes {
			waitDaemonMetricAtLeast(t, ctx, n, policyLatencyCount, last[n].count+1)
		}
		took := time.Since(start)
		time.Sleep(200 * time.Millisecond) // a second observation would show by now
		for _, n := range env.Nodes {
			now := read(n)
			count, latency, eventLatency := now.count-last[n].count, now.sum-last[n].sum, now.eventSum-last[n].eventSum
			last[n] = now
			if count != 1 {
				t.Errorf("%s: %s counted %v changes of the policy, want 1", step.name, n.Name, count)
				continue
			}
			// The API stamps whole seconds: a change reads up to 1 s long.
			if latency < 0 || latency > took.Seconds()+1 {
				t.Errorf("%s: %s: API change to kernel %.3fs, want within the %v the step took plus 1 s", step.name, n.Name, latency, took)
			}
			// A deletion of an object that is gone starts when the informer saw
			// it: both latencies are then one (up to the sums' rounding).
			if eventLatency < 0 || eventLatency > took.Seconds() || eventLatency > latency+1e-6 {
				t.Errorf("%s: %s: informer to kernel %.3fs, want within the step (%v) and the API latency (%.3fs)", step.name, n.Name, eventLatency, took, latency)
			}
			t.Logf("%s on %s: API change to kernel %.3fs, informer to kernel %.1fms (enforced with packets %v after the request)",
				step.name, n.Name, latency, eventLatency*1000, took.Round(time.Millisecond))
		}
	}

	// client-go's metrics: the daemon's requests and its work queue.
	body, err := env.Nodes[0].DaemonGet(ctx, "/metrics")
	must(t, err)
	for _, prefix := range []string{`rest_client_requests_total{code="200",host=`, `rest_client_request_duration_seconds_count{host=`,
		`workqueue_adds_total{name="nftwarden"}`, `workqueue_depth{name="nftwarden"}`} {
		if !strings.Contains(string(body), "\n"+prefix) {
			t.Errorf("/metrics of %s has no %s... series", env.Nodes[0].Name, prefix)
		}
	}
}

// waitDaemonMetricAtLeast waits until the node's daemon exports sample with a
// value of at least want.
func waitDaemonMetricAtLeast(t *testing.T, ctx context.Context, n *cluster.Node, sample string, want float64) {
	t.Helper()
	deadline := time.Now().Add(converge)
	for {
		body, err := n.DaemonGet(ctx, "/metrics")
		if err == nil {
			if v, err := metricValue(body, sample); err == nil && v >= want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon of %s: %s below %v after %s; log:\n%s", n.Name, sample, want, converge, tailLog(n))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationExplainTrace runs explain --trace in node 0's namespace: the
// kernel's table and the model agree on an allowed and a denied flow, and the
// port name resolves on the destination pod.
func TestIntegrationExplainTrace(t *testing.T) {
	tp := started(t, cluster.Options{})
	ctx := testCtx(t)
	must(t, tp.env.ApplyPolicy(ctx, policy(tp.x, "a-from-b", selecting(app("a")), ingress(from(peers(podPeer(app("b"))))))))
	want := cluster.NewReachability(tp.all, true)
	want.ExpectIngress(tp.a, false)
	want.Expect(tp.b, tp.a, true)
	tp.expect(t, want, tcp80v4)
	node := tp.a.Node
	for _, tc := range []struct {
		from    *cluster.Pod
		verdict string
		kernel  string
	}{{tp.b, "allowed", "accept"}, {tp.c, "denied", "drop"}} {
		out, err := node.Explain(ctx, "--from", tc.from.Namespace+"/"+tc.from.Name, "--to", tp.a.Namespace+"/"+tp.a.Name,
			"--port", "http/tcp", "--trace", "-o", "json")
		must(t, err)
		var doc struct {
			Flows []struct {
				Port     uint16 `json:"port"`
				PortName string `json:"portName"`
				Verdict  string `json:"verdict"`
				Trace    struct {
					Agree  bool `json:"agree"`
					Kernel struct {
						Verdict string `json:"verdict"`
					} `json:"kernel"`
				} `json:"trace"`
			} `json:"flows"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("explain -o json: %v\n%s", err, out)
		}
		if len(doc.Flows) != 2 { // dual stack
			t.Fatalf("%s -> a: %d flows, want one per family:\n%s", tc.from.Name, len(doc.Flows), out)
		}
		for _, f := range doc.Flows {
			if f.Port != 80 || f.PortName != "http" || f.Verdict != tc.verdict || f.Trace.Kernel.Verdict != tc.kernel || !f.Trace.Agree {
				t.Errorf("%s -> a: port %d (%s), verdict %s, kernel %s, agree %v; want 80 (http), %s, %s, agree",
					tc.from.Name, f.Port, f.PortName, f.Verdict, f.Trace.Kernel.Verdict, f.Trace.Agree, tc.verdict, tc.kernel)
			}
		}
	}
}
