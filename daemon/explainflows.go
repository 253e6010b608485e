package daemon

import (
	"fmt"
	"reflect"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/enforcer"
)

// explainQuery is a parsed `nftwarden explain`.
type explainQuery struct {
	From, To endpoint
	Port     portSpec
}

// explainedFlow is one answer of explain: a pair of addresses and a range of
// ports (often one port) that the model judges alike and, with --trace, that
// the kernel's table and the table compiled for this node each judge alike.
type explainedFlow struct {
	From, To endpoint
	Flow     enforcer.Flow // Port is the first port of the range
	EndPort  uint16        // the last port of the range (Flow.Port for one)
	PortName string        // the --port name Flow.Port was resolved from
	Decision enforcer.Decision
	Trace    *flowTrace // nil without --trace
}

// fromLabel and toLabel show the ends as "ns/pod (ip)" or the address.
func (f explainedFlow) fromLabel() string { return label(f.From, f.Flow.Src) }
func (f explainedFlow) toLabel() string   { return label(f.To, f.Flow.Dst) }

// portLabel is the flow's ports as explain prints them: 8080, 8080 (http),
// 8000-8079.
func (f explainedFlow) portLabel() string {
	switch {
	case f.EndPort != f.Flow.Port:
		return fmt.Sprintf("%d-%d", f.Flow.Port, f.EndPort)
	case f.PortName != "":
		return fmt.Sprintf("%d (%s)", f.Flow.Port, f.PortName)
	}
	return fmt.Sprint(f.Flow.Port)
}

// explainFlows evaluates q: once per address family the two ends share, and
// for a range of ports once per run of consecutive ports with the same
// answer (the same Decision and, with tr, the same verdicts of the kernel's
// table and of the table compiled for the node), which is reported with its
// first port's path. Every port of the range is evaluated: all 65535 ports
// take 0.3 s in a small model, 0.8 s with --trace (BenchmarkExplainRange),
// and grow with the cost of one Decide.
func explainFlows(eng decider, q explainQuery, tr *traceTables) ([]explainedFlow, error) {
	src, err := addresses(eng, q.From)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	dst, err := addresses(eng, q.To)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	pairs := addressPairs(src, dst)
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%s %v and %s %v have no address family in common", q.From, src, q.To, dst)
	}
	if q.Port.From == 0 {
		return nil, fmt.Errorf("port %s is not resolved", q.Port)
	}
	var out []explainedFlow
	for _, p := range pairs {
		var cur *explainedFlow
		for port := q.Port.From; ; port++ {
			f := enforcer.Flow{Src: p[0], Dst: p[1], Protocol: q.Port.Protocol, Port: port}
			next := explainedFlow{From: q.From, To: q.To, Flow: f, EndPort: port, PortName: q.Port.Name, Decision: eng.Decide(f)}
			if tr != nil {
				next.Trace = tr.trace(f)
			}
			if cur != nil && sameAnswer(cur, &next) {
				cur.EndPort = port
			} else {
				out = append(out, next)
				cur = &out[len(out)-1]
			}
			if port == q.Port.To {
				break
			}
		}
	}
	return out, nil
}

// sameAnswer reports whether two flows of one range are answered alike.
func sameAnswer(a, b *explainedFlow) bool {
	if !reflect.DeepEqual(a.Decision, b.Decision) {
		return false
	}
	if a.Trace == nil || b.Trace == nil {
		return a.Trace == b.Trace
	}
	return a.Trace.Kernel.Verdict == b.Trace.Kernel.Verdict && a.Trace.Expected.Verdict == b.Trace.Expected.Verdict
}

// resolveQueryPort resolves a port name of q on the destination pod (a pod:
// explainQueryFrom checks), which getPod reads from the API server.
func resolveQueryPort(q *explainQuery, getPod func(namespace, name string) (*corev1.Pod, error)) error {
	if q.Port.Name == "" || q.Port.From != 0 {
		return nil
	}
	pod, err := getPod(q.To.Namespace, q.To.Name)
	if err != nil {
		return fmt.Errorf("explain: --port %s: read pod %s: %w", q.Port, q.To, err)
	}
	n, err := resolvePortName(pod, q.Port.Name, q.Port.Protocol)
	if err != nil {
		return fmt.Errorf("explain: --port %s: %w", q.Port, err)
	}
	q.Port.From, q.Port.To = n, n
	return nil
}
