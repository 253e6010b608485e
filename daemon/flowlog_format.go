package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/natefinch/lumberjack.v2"
)

// The deny/flow log's lines. One line per logged packet, in the format of
// --log-format: text (logfmt: key=value, values with blanks quoted) or JSON
// (one object per line). Fields, in this order, empty ones left out:
//
//	time       when the kernel logged the packet, RFC 3339, UTC, microseconds
//	verdict    denied | would-deny (audit mode) | allowed (flow log)
//	direction  ingress | egress: the side whose policy decided (not for allowed)
//	src, dst   namespace/pod, or the address of a non-pod
//	proto      tcp | udp | sctp | icmp | icmpv6 | the protocol number
//	sport, dport  ports (not for ICMP)
//	policies   the deciding policies, comma-separated: for a deny, the
//	           NetworkPolicies isolating the pod (its default deny); for an
//	           allow, those that allowed
//	rule       the ClusterNetworkPolicy rule that decided
//	reason     the decision in words: "default deny of ns/a, ns/b", or the
//	           tiers' path as explain says it
//	note       when the model now disagrees with the kernel (a change since)
//	site       where the kernel decided: np | admin | baseline | claimed | unknown | flow
//	src_ip, dst_ip  the addresses
//	len        the packet's IP length in bytes
//
// The line is written with log/slog's text and JSON handlers (their quoting
// and escaping), without level and message.

// Formats of --log-format.
const (
	formatText = "text"
	formatJSON = "json"
)

// flowTimeLayout is RFC 3339 with microseconds, fixed width.
const flowTimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// flowLogWriter writes flowRecords as lines; safe for concurrent use (the
// slog handlers serialise their writes).
type flowLogWriter struct {
	h slog.Handler
}

func newFlowLogWriter(w io.Writer, format string) (*flowLogWriter, error) {
	opts := &slog.HandlerOptions{ReplaceAttr: flowLogAttr}
	switch format {
	case formatText:
		return &flowLogWriter{h: slog.NewTextHandler(w, opts)}, nil
	case formatJSON:
		return &flowLogWriter{h: slog.NewJSONHandler(w, opts)}, nil
	}
	return nil, fmt.Errorf("log format %q: want %s or %s", format, formatText, formatJSON)
}

// flowLogAttr drops slog's level and message and writes the time as
// flowTimeLayout in UTC.
func flowLogAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey, slog.MessageKey:
		return slog.Attr{}
	case slog.TimeKey:
		return slog.String(slog.TimeKey, a.Value.Time().UTC().Format(flowTimeLayout))
	}
	return a
}

// write writes one line.
func (fw *flowLogWriter) write(r flowRecord) error {
	rec := slog.NewRecord(r.Time, slog.LevelInfo, "", 0)
	rec.AddAttrs(slog.String("verdict", r.Verdict))
	addString(&rec, "direction", r.Direction)
	rec.AddAttrs(slog.String("src", r.Src), slog.String("dst", r.Dst), slog.String("proto", r.Protocol))
	if r.SrcPort != 0 || r.DstPort != 0 {
		rec.AddAttrs(slog.Int("sport", int(r.SrcPort)), slog.Int("dport", int(r.DstPort)))
	}
	addString(&rec, "policies", strings.Join(r.Policies, ","))
	addString(&rec, "rule", r.Rule)
	addString(&rec, "reason", r.Reason)
	addString(&rec, "note", r.Note)
	rec.AddAttrs(slog.String("site", r.Site), slog.String("src_ip", r.SrcIP.String()), slog.String("dst_ip", r.DstIP.String()),
		slog.Int("len", r.Length))
	return fw.h.Handle(context.Background(), rec)
}

func addString(rec *slog.Record, key, value string) {
	if value != "" {
		rec.AddAttrs(slog.String(key, value))
	}
}

// openFlowLogOutput is where the lines go: standard output for an empty
// path, else the file, rotated by lumberjack when it reaches maxSizeMiB
// (maxBackups rotated files are kept, 0 keeps them all). The file is opened
// once here so that a path that cannot be written fails the start.
func openFlowLogOutput(path string, maxSizeMiB, maxBackups int, stdout io.Writer) (io.WriteCloser, error) {
	if path == "" {
		return nopWriteCloser{stdout}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("log file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("log file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("log file %s: %w", path, err)
	}
	return &lumberjack.Logger{Filename: path, MaxSize: maxSizeMiB, MaxBackups: maxBackups}, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
