package daemon

// IP plan: node "node-a" is this node; backend/api (local) 198.18.0.20, which
// a policy created during the test isolates.

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/podwatch"
)

// histogram returns the sample count and sum of the series of name with
// label kind in reg (0, 0 if absent).
func histogram(t *testing.T, reg prometheus.Gatherer, name, kind string) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelValue(m, "kind") == kind {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestProgrammingLatencyObservesEachChange(t *testing.T) {
	m := newMetrics(metricSources{})
	end := time.Date(2026, 12, 6, 11, 0, 10, 0, time.UTC)
	m.hooks(nil).Programmed(end, []podwatch.Change{
		{Kind: podwatch.KindPod, Changed: end.Add(-2 * time.Second), Seen: end.Add(-10 * time.Millisecond)},
		{Kind: podwatch.KindPod, Changed: end.Add(-1 * time.Second), Seen: end.Add(-30 * time.Millisecond)},
		{Kind: podwatch.KindClusterNetworkPolicy, Changed: end.Add(-5 * time.Second), Seen: end.Add(-time.Second)},
	})
	tests := []struct {
		metric, kind string
		count        uint64
		sum          float64
	}{
		{"nftwarden_policy_programming_duration_seconds", "pod", 2, 3},
		{"nftwarden_event_programming_duration_seconds", "pod", 2, 0.04},
		{"nftwarden_policy_programming_duration_seconds", "clusternetworkpolicy", 1, 5},
		{"nftwarden_event_programming_duration_seconds", "clusternetworkpolicy", 1, 1},
		{"nftwarden_policy_programming_duration_seconds", "networkpolicy", 0, 0},
		{"nftwarden_policy_programming_duration_seconds", "namespace", 0, 0},
	}
	for _, tc := range tests {
		count, sum := histogram(t, m.registry, tc.metric, tc.kind)
		if count != tc.count || (sum-tc.sum) > 1e-9 || (tc.sum-sum) > 1e-9 {
			t.Errorf("%s{kind=%q}: count %d sum %g, want %d, %g", tc.metric, tc.kind, count, sum, tc.count, tc.sum)
		}
	}
}

// flakyDataplane fails the next n Apply and Reconcile calls.
type flakyDataplane struct {
	nft.Dataplane
	fail atomic.Int32
}

func (f *flakyDataplane) failing() bool {
	for {
		n := f.fail.Load()
		if n <= 0 {
			return false
		}
		if f.fail.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func (f *flakyDataplane) Apply(ctx context.Context, tx *nft.Transaction) error {
	if f.failing() {
		return errors.New("test: netlink said no")
	}
	return f.Dataplane.Apply(ctx, tx)
}

func (f *flakyDataplane) Reconcile(ctx context.Context, desired *nft.State) (*nft.Transaction, error) {
	if f.failing() {
		return nil, errors.New("test: netlink said no")
	}
	return f.Dataplane.Reconcile(ctx, desired)
}

// TestDaemonProgrammingLatency runs the daemon over a fake API server and a
// dataplane that fails once: a policy created after the start is observed once
// in each latency histogram, after the retry that programmed it; the initial
// list is not; the work queue's metrics are served.
func TestDaemonProgrammingLatency(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	client := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "backend"}},
		testPod("backend", "api", "node-a", "198.18.0.20"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	dp := &flakyDataplane{Dataplane: nft.NewFake("nftwarden")}
	d := &daemon{
		cfg:       runConfig{NodeName: "node-a", Table: "nftwarden", MetricsAddress: ln.Addr().String(), ResyncPeriod: time.Hour},
		log:       slog.New(slog.DiscardHandler),
		client:    client,
		apiHost:   "fake",
		dataplane: dp,
		notifier:  notifierFromEnv(),
		listener:  ln,
	}
	runUntilCleanup(t, d)
	waitMetrics(t, base, "\nnftwarden_ready 1\n")
	for _, want := range []string{
		`nftwarden_policy_programming_duration_seconds_count{kind="pod"} 0`,
		`nftwarden_event_programming_duration_seconds_count{kind="namespace"} 0`,
	} {
		waitMetrics(t, base, want)
	}

	dp.fail.Store(1)
	created := time.Now()
	isolate := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "backend", Name: "deny-api"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	if _, err := client.NetworkingV1().NetworkPolicies("backend").Create(context.Background(), isolate, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	metrics := waitMetrics(t, base, `nftwarden_policy_programming_duration_seconds_count{kind="networkpolicy"} 1`)
	for _, want := range []string{
		`nftwarden_syncs_total{mode="delta",result="error"} 1`,
		`nftwarden_event_programming_duration_seconds_count{kind="networkpolicy"} 1`,
		`nftwarden_policy_programming_duration_seconds_count{kind="pod"} 0`,
		`workqueue_adds_total{name="nftwarden"}`,
		`workqueue_depth{name="nftwarden"}`,
		`workqueue_queue_duration_seconds_count{name="nftwarden"}`,
		`workqueue_work_duration_seconds_count{name="nftwarden"}`,
		`workqueue_retries_total{name="nftwarden"} `,
		`workqueue_unfinished_work_seconds{name="nftwarden"}`,
		`workqueue_longest_running_processor_seconds{name="nftwarden"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// client-go's workqueue metrics are the process's (one provider, by
	// queue name): other daemons of this test binary may have retried too.
	if m := regexp.MustCompile(`workqueue_retries_total\{name="nftwarden"\} (\d+)`).FindStringSubmatch(metrics); m == nil || m[1] == "0" {
		t.Errorf("workqueue_retries_total of nftwarden: %v, want the failed flush's retry counted", m)
	}
	// The retry waits the queue's backoff (200 ms): the event latency covers it.
	count, sum := histogram(t, scrape(t, base), "nftwarden_event_programming_duration_seconds", "networkpolicy")
	if elapsed := time.Since(created).Seconds(); count != 1 || sum < 0.2 || sum > elapsed {
		t.Errorf("event latency of the policy: count %d sum %gs, want 1 sample within [0.2 s, %gs]", count, sum, elapsed)
	}
	time.Sleep(100 * time.Millisecond) // no second observation follows
	if count, _ := histogram(t, scrape(t, base), "nftwarden_policy_programming_duration_seconds", "networkpolicy"); count != 1 {
		t.Errorf("the policy was observed %d times, want once", count)
	}
}

// waitMetrics polls /metrics until it contains want, and returns it.
func waitMetrics(t *testing.T, base, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := httpGet(t, base+"/metrics")
		if strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %q:\n%s", want, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scrape reads /metrics as a Gatherer.
func scrape(t *testing.T, base string) prometheus.Gatherer {
	t.Helper()
	_, body := httpGet(t, base+"/metrics")
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return parseText(body) })
}

// TestRestClientMetrics: a request of a real client-go client is counted in
// rest_client_requests_total and timed in rest_client_request_duration_seconds
// of every daemon registry.
func TestRestClientMetrics(t *testing.T) {
	m := newMetrics(metricSources{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/version" {
			_, _ = w.Write([]byte(`{"major":"1","minor":"37","gitVersion":"v1.37.0"}`))
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
	}))
	defer srv.Close()
	c, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	before := testutil.ToFloat64(clientGo().requests.WithLabelValues("200", "GET", host))
	if _, err := c.Discovery().ServerVersion(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Pods("x").Get(context.Background(), "y", metav1.GetOptions{}); err == nil {
		t.Fatal("want NotFound")
	}
	for _, tc := range []struct {
		code string
		want float64
	}{{"200", before + 1}, {"404", 1}} {
		if got := testutil.ToFloat64(clientGo().requests.WithLabelValues(tc.code, "GET", host)); got != tc.want {
			t.Errorf("rest_client_requests_total{code=%q} = %g, want %g", tc.code, got, tc.want)
		}
	}
	if n, err := testutil.GatherAndCount(m.registry, "rest_client_request_duration_seconds", "rest_client_requests_total"); err != nil || n < 3 {
		t.Errorf("rest client series on the registry: %d (error %v), want the requests and their latency", n, err)
	}
}

// parseText parses metrics in the Prometheus text format.
func parseText(body string) ([]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	out := make([]*dto.MetricFamily, 0, len(byName))
	for _, mf := range byName {
		out = append(out, mf)
	}
	return out, nil
}
