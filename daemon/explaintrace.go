package daemon

import (
	"context"
	"fmt"
	"regexp"
	"strconv"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// traceTables are the two tables explain --trace follows a flow through, on
// the forward hook (pod-to-pod traffic; a pod's traffic with its own node
// crosses input/output, where nftwarden has no rules): the table as the
// kernel holds it, and the table the cluster's objects compile to for the
// node (what the kernel should hold, the compiled form of the model's
// answer for the node's own pods).
type traceTables struct {
	Node, Table string
	Kernel      *nft.State
	// KernelMissing: the kernel has no such table (it accepts everything).
	KernelMissing bool
	Expected      *nft.State
}

// flowTrace is one flow traced through both tables.
type flowTrace struct {
	tables           *traceTables
	Kernel, Expected nft.TraceResult
	// KernelSteps is the kernel's path, each rule with its counters.
	KernelSteps []traceStep
}

// traceStep is one step of a path: a rule that matched (Chain, Rule) with
// the values of its counters, or a line about a base chain (Rule < 0).
type traceStep struct {
	Text     string
	Chain    string
	Rule     int
	Counters []ruleCounter
}

// ruleCounter is the value of a counter a rule passes: a named counter
// object (Name) or the rule's own counter (Name "").
type ruleCounter struct {
	Name           string
	Packets, Bytes uint64
}

// Agree reports whether the kernel decides the flow as the compiled model does.
func (t *flowTrace) Agree() bool { return t.Kernel.Verdict == t.Expected.Verdict }

// trace sends the first packet of f through both tables.
func (tt *traceTables) trace(f enforcer.Flow) *flowTrace {
	// explain's --port admits TCP, UDP and SCTP only, which all map.
	proto, _ := enforcer.ProtocolNumber(f.Protocol)
	p := nft.Packet{Hook: nft.HookForward, Src: f.Src, Dst: f.Dst, Proto: proto, Dport: f.Port}
	kernel := nft.Trace(tt.Kernel, p)
	return &flowTrace{
		tables:      tt,
		Kernel:      kernel,
		Expected:    nft.Trace(tt.Expected, p),
		KernelSteps: stepsOf(tt.Kernel, kernel.Path),
	}
}

// ruleStep matches the lines of nft.TraceResult.Path that name a matched
// rule: "chain[index]: rule text".
var ruleStep = regexp.MustCompile(`^([^\s\[\]]+)\[(\d+)\]: `)

// stepsOf annotates a path through st with the counters of each rule it passes.
func stepsOf(st *nft.State, path []string) []traceStep {
	steps := make([]traceStep, 0, len(path))
	for _, line := range path {
		s := traceStep{Text: line, Rule: -1}
		if m := ruleStep.FindStringSubmatch(line); m != nil {
			idx, _ := strconv.Atoi(m[2])
			if c := st.Chains[m[1]]; c != nil && idx < len(c.Rules) {
				s.Chain, s.Rule = m[1], idx
				s.Counters = countersOf(st, c.Rules[idx])
			}
		}
		steps = append(steps, s)
	}
	return steps
}

// countersOf returns the values of the counters in r as st holds them: the
// rule's own (nft.Counter, Name "") and the named counter objects it counts
// in (nft.CounterRef).
func countersOf(st *nft.State, r nft.Rule) []ruleCounter {
	var out []ruleCounter
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case nft.Counter:
			out = append(out, ruleCounter{Packets: e.Packets, Bytes: e.Bytes})
		case nft.CounterRef:
			c := ruleCounter{Name: e.Name}
			if o := st.Objects[e.Name]; o != nil && o.Counter != nil {
				c.Packets, c.Bytes = o.Counter.Packets, o.Counter.Bytes
			}
			out = append(out, c)
		}
	}
	return out
}

// tableReader reads a table (nft.Kernel).
type tableReader interface {
	Read(ctx context.Context) (*nft.State, error)
}

// readTraceTables reads the kernel's table and pairs it with expected, the
// table compiled for node.
func readTraceTables(ctx context.Context, r tableReader, node, table string, expected *nft.State) (*traceTables, error) {
	tt := &traceTables{Node: node, Table: table, Expected: expected}
	st, err := r.Read(ctx)
	switch {
	case nft.IsNotFound(err):
		tt.Kernel, tt.KernelMissing = nft.NewState(), true
	case err != nil:
		return nil, fmt.Errorf("read table inet %s: %w", table, err)
	default:
		tt.Kernel = st
	}
	return tt, nil
}

func verdictWord(r nft.TraceResult) string {
	if r.Accepted() {
		return "ACCEPT"
	}
	return "DROP"
}
