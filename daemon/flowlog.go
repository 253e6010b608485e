package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nftwarden/nftwarden/nft/nflog"
)

// The deny/flow log: the daemon reads the NFLOG group its program's log
// rules copy packets to (--log-group), names the pods and the policies
// behind each packet with the engine's Decide, and writes one line per packet
// (flowlog_format.go). The kernel rate-limits the copies (--log-rate,
// --log-burst), so the daemon's share of CPU is bounded too.

// eventSource is the NFLOG reader (*nflog.Reader) as the flow log uses it.
type eventSource interface {
	Events() <-chan nflog.Event
	// Run reads until ctx ends and closes Events when it returns.
	Run(ctx context.Context) error
	Stats() nflog.Stats
}

var _ eventSource = (*nflog.Reader)(nil)

// flowLog turns the events of a source into lines.
type flowLog struct {
	eng flowDecider
	out *flowLogWriter
	src eventSource
	log *slog.Logger

	lines                      *prometheus.CounterVec // by verdict
	unknownPrefix, writeErrors atomic.Uint64
	// writeFailing is set while writes fail, so that a full disk is said
	// once, not once per packet.
	writeFailing atomic.Bool
}

func newFlowLog(eng flowDecider, out *flowLogWriter, src eventSource, log *slog.Logger) *flowLog {
	fl := &flowLog{eng: eng, out: out, src: src, log: log,
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "log_events_total",
			Help: "Lines written to the deny/flow log, by verdict: denied (dropped by policy), would-deny (audit mode: accepted) " +
				"and allowed (a new connection, --log-allowed).",
		}, []string{"verdict"}),
	}
	for _, v := range []string{verdictDenied, verdictWouldDeny, verdictAllowed} {
		fl.lines.WithLabelValues(v)
	}
	return fl
}

// run reads the source until ctx ends and writes its events; it returns
// the source's error, if it failed.
func (fl *flowLog) run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- fl.src.Run(ctx) }()
	for ev := range fl.src.Events() {
		fl.handle(ev)
	}
	return <-errc
}

// handle writes the line of one event; events of prefixes that are not the
// program's are counted and left out.
func (fl *flowLog) handle(ev nflog.Event) {
	p, ok := parseLogPrefix(ev.Prefix)
	if !ok {
		fl.unknownPrefix.Add(1)
		return
	}
	r := buildRecord(fl.eng, ev, p)
	if err := fl.out.write(r); err != nil {
		fl.writeErrors.Add(1)
		if !fl.writeFailing.Swap(true) {
			fl.log.Error("cannot write the deny/flow log; lines are dropped until it works again", "error", err)
		}
		return
	}
	if fl.writeFailing.Swap(false) {
		fl.log.Info("the deny/flow log is written again")
	}
	fl.lines.WithLabelValues(r.Verdict).Inc()
}

// Reasons of nftwarden_log_events_dropped_total.
const (
	dropQueueFull     = "queue_full"
	dropENOBUFS       = "enobufs"
	dropUnknownPrefix = "unknown_prefix"
	dropMalformed     = "malformed"
	dropWriteError    = "write_error"
)

const logDroppedHelp = "Logged packets that got no line, by reason: queue_full (the daemon was behind: its queue of events was full), " +
	"enobufs (lost in the kernel: the NFLOG socket's buffer was full; counted from gaps in the group's sequence numbers), " +
	"unknown_prefix (a log rule that is not nftwarden's writes to the group), malformed (a packet copy that could not be parsed), " +
	"write_error (the log file could not be written). Packets over the kernel's rate limit (--log-rate) are never copied and not counted here."

var logDroppedDesc = prometheus.NewDesc(metricsNamespace+"_log_events_dropped_total", logDroppedHelp, []string{"reason"}, nil)

// Describe and Collect export the flow log's metrics: the lines by verdict
// and the drops, read from the source's counts and the log's own.
func (fl *flowLog) Describe(ch chan<- *prometheus.Desc) {
	fl.lines.Describe(ch)
	ch <- logDroppedDesc
}

func (fl *flowLog) Collect(ch chan<- prometheus.Metric) {
	fl.lines.Collect(ch)
	s := fl.src.Stats()
	for reason, n := range map[string]uint64{
		dropQueueFull:     s.QueueFull,
		dropENOBUFS:       s.Lost,
		dropUnknownPrefix: fl.unknownPrefix.Load(),
		dropMalformed:     s.Malformed,
		dropWriteError:    fl.writeErrors.Load(),
	} {
		ch <- prometheus.MustNewConstMetric(logDroppedDesc, prometheus.CounterValue, float64(n), reason)
	}
}

// openVerdictLog opens the NFLOG group of the program's log rules in the
// daemon's (the node's) network namespace, and the log's output. It is
// opened even without --log-denied, --log-allowed and --audit, because a
// policy annotated for audit logs what it would deny without any flag; then
// a group that cannot be read (taken by another program) is a warning, not
// a failure. It returns a nil reader only in that case.
func openVerdictLog(v verdictLogConfig, stdout io.Writer, log *slog.Logger) (*nflog.Reader, io.WriteCloser, error) {
	asked := v.LogDenied || v.LogAllowed || v.Audit
	r, err := nflog.Open(nflog.Config{Group: v.Group})
	if err != nil {
		if asked {
			return nil, nil, fmt.Errorf("deny/flow log (--%s %d): %w", flagLogGroup, v.Group, err)
		}
		log.Warn("cannot read the NFLOG group of the log rules: policies annotated for audit mode will not be logged", "group", v.Group, "error", err)
		return nil, nil, nil
	}
	out, err := openFlowLogOutput(v.File, v.FileMaxSize, v.FileMaxBacks, stdout)
	if err != nil {
		r.Close()
		return nil, nil, fmt.Errorf("deny/flow log: %w", err)
	}
	return r, out, nil
}
