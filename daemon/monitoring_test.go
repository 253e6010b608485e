package daemon

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	clientmetrics "k8s.io/client-go/tools/metrics"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/yaml"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/podwatch"
)

// policyMetricNames are the per-policy counters the daemon exports from the
// table's named counters (issue 14, stream D), which the dashboard and the
// alerts read.
// TODO(i14): collect them from stream D's collector once it is merged.
var policyMetricNames = []string{"nftwarden_policy_packets_total", "nftwarden_policy_bytes_total"}

// exportedMetricNames returns every series name the daemon's /metrics can
// hold (a histogram's _bucket, _sum and _count), gathered from a registry
// with every source and with a series of each client-go metric.
func exportedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	gate := podwatch.NewAPIGate(podwatch.APIGateOptions{})
	defer gate.Close()
	m := newMetrics(metricSources{
		stats: func() enforcer.Stats { return enforcer.Stats{} }, ready: func() bool { return true },
		queueLen: func() int { return 0 }, api: gate,
	})
	// client-go's metrics have series once used.
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "monitoring-test"})
	defer q.ShutDown()
	q.AddRateLimited("x")
	ctx := context.Background()
	u := url.URL{Host: "api.example:6443"}
	clientmetrics.RequestResult.Increment(ctx, "200", "GET", u.Host)
	clientmetrics.RequestLatency.Observe(ctx, "GET", u, time.Millisecond)
	clientmetrics.RateLimiterLatency.Observe(ctx, "GET", u, time.Millisecond)
	clientmetrics.RequestRetry.IncrementRetry(ctx, "500", "GET", u.Host)

	mfs, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+suffix] = true
			}
		}
	}
	for _, n := range policyMetricNames {
		names[n] = true
	}
	for _, want := range []string{"workqueue_depth", "rest_client_requests_total", "nftwarden_policy_programming_duration_seconds_bucket"} {
		if !names[want] {
			t.Fatalf("%s is not gathered: the list of exported names is incomplete", want)
		}
	}
	return names
}

// promqlWords are PromQL's functions, aggregations and keywords that the
// dashboard and the alerts use: every other identifier outside label
// matchers, ranges and groupings is a metric name.
var promqlWords = map[string]bool{
	"sum": true, "max": true, "min": true, "count": true, "avg": true, "topk": true, "rate": true, "irate": true,
	"increase": true, "histogram_quantile": true, "and": true, "or": true, "unless": true, "offset": true,
}

var (
	promqlStrings  = regexp.MustCompile(`"(\\.|[^"\\])*"`)
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlNumbers  = regexp.MustCompile(`\b\d+(\.\d+)?[a-z]*\b`)
	promqlIdents   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// metricNames returns the metric names a PromQL expression reads.
func metricNames(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRanges.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	s = promqlNumbers.ReplaceAllString(s, " ")
	var out []string
	for _, id := range promqlIdents.FindAllString(s, -1) {
		if !promqlWords[id] {
			out = append(out, id)
		}
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`nftwarden_ready == 0`, []string{"nftwarden_ready"}},
		{`histogram_quantile(0.99, sum by (le, kind) (rate(nftwarden_policy_programming_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval]))) > 10`,
			[]string{"nftwarden_policy_programming_duration_seconds_bucket"}},
		{`sum(rate(a_total{code!~"2.."}[5m])) / sum(rate(b_total[1h] offset 10m)) > 0.1 and up`, []string{"a_total", "b_total", "up"}},
		{`topk(10, sum without (pod) (c{x="a{b}"}))`, []string{"c"}},
	} {
		if got := metricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%s) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// checkExpressions fails the test for each expression that reads no metric or
// one the daemon does not export.
func checkExpressions(t *testing.T, file string, exprs []string) {
	t.Helper()
	exported := exportedMetricNames(t)
	if len(exprs) == 0 {
		t.Fatalf("%s: no expressions", file)
	}
	for _, e := range exprs {
		names := metricNames(e)
		if len(names) == 0 {
			t.Errorf("%s: %q reads no metric", file, e)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s: %q reads %s, which the daemon does not export", file, e, n)
			}
		}
	}
}

// TestGrafanaDashboard: deploy/grafana-dashboard.json is a dashboard whose
// panels all query the data source variable, and every metric it reads is
// one the daemon exports.
func TestGrafanaDashboard(t *testing.T) {
	const path = "deploy/grafana-dashboard.json"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("%s: no title or uid", path)
	}
	var exprs []string
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: want targets on the ${datasource} variable", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*),`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(METRIC, LABEL)", v.Name, v.Definition)
			continue
		}
		exprs = append(exprs, m[1])
	}
	checkExpressions(t, path, exprs)
	// The panels the issue asks for.
	var all strings.Builder
	for _, e := range exprs {
		all.WriteString(e + "\n")
	}
	for _, want := range []string{`nftwarden_policy_packets_total{verdict="denied"`, `nftwarden_policy_packets_total{verdict="allowed"`,
		"nftwarden_policy_programming_duration_seconds_bucket", "nftwarden_errors_total", "nftwarden_ready", "nftwarden_api_reachable",
		`rest_client_requests_total{code!~"2.."`, "workqueue_depth"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("%s: no panel reads %s", path, want)
		}
	}
}

// prometheusRule is the part of monitoring.coreos.com/v1 PrometheusRule the
// file uses (decoded strictly: a misspelt field fails).
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// TestPrometheusRule: deploy/prometheus-rules.yaml is a PrometheusRule whose
// alerts have a severity, a summary and a description, and read only metrics
// the daemon exports; it alerts on what the issue names.
func TestPrometheusRule(t *testing.T) {
	const path = "deploy/prometheus-rules.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(data, &pr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name == "" {
		t.Errorf("%s: %s %s %q, want a monitoring.coreos.com/v1 PrometheusRule with a name", path, pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}
	var exprs, alerts []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			exprs = append(exprs, r.Expr)
			if r.Alert == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: rule %q lacks a name, summary or description", path, r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: %s: severity %q, want warning or critical", path, r.Alert, s)
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: %s: for %q: %v", path, r.Alert, r.For, err)
			}
		}
	}
	checkExpressions(t, path, exprs)
	sort.Strings(alerts)
	for _, want := range []string{"NftwardenPolicyDropsRising", "NftwardenProgrammingLatencyHigh", "NftwardenSyncErrors",
		"NftwardenNotReady", "NftwardenAPIServerUnreachable"} {
		if _, found := slices.BinarySearch(alerts, want); !found {
			t.Errorf("%s: no alert %s (have %q)", path, want, alerts)
		}
	}
}
