package daemon

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// cniMetrics count the CNI socket's requests.
type cniMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Results of a CNI request, the "result" label: the answer's status.
var cniResults = map[int]string{
	http.StatusOK:                  "success",
	http.StatusBadRequest:          "bad_request",
	http.StatusNotFound:            "not_found",
	http.StatusConflict:            "not_programmed",
	http.StatusUnprocessableEntity: "refused",
	http.StatusServiceUnavailable:  "unavailable",
}

// newCNIMetrics declares the CNI metrics in reg, every series at 0.
func newCNIMetrics(reg prometheus.Registerer) *cniMetrics {
	m := &cniMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "cni_requests_total",
			Help: "Requests of the chained CNI plugin by command (add, del, check) and result (success, bad_request, not_found, " +
				"not_programmed, refused, unavailable).",
		}, []string{"command", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "cni_request_duration_seconds",
			Help: "Time to answer a request of the chained CNI plugin (add: until the kernel batch that carried the pod ended).",
			// From a flush of one pod (about a millisecond) to the plugin's timeout.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"command"}),
	}
	for _, cmd := range []string{cniAdd, cniDel, cniCheck} {
		m.duration.WithLabelValues(cmd)
		for _, r := range cniResults {
			m.requests.WithLabelValues(cmd, r)
		}
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

func (m *cniMetrics) observe(cmd string, status int, took time.Duration) {
	result, ok := cniResults[status]
	if !ok {
		result = "error"
	}
	m.requests.WithLabelValues(cmd, result).Inc()
	m.duration.WithLabelValues(cmd).Observe(took.Seconds())
}
