package daemon

import (
	"encoding/json"
	"io"
	"net/netip"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// The JSON form of explain (-o json). Its shape is stable: fields are added,
// never renamed or removed, and every field is always present (empty lists
// as [], absent values as "" or null as noted), so scripts can read it
// without guarding each step.
//
//	{"flows": [{
//	  "from": {"pod": "ns/name" or "", "ip": "198.18.0.10"},
//	  "to":   {"pod": ..., "ip": ...},
//	  "protocol": "TCP" | "UDP" | "SCTP",
//	  "port": 8080,           first port of the range
//	  "endPort": 8080,        last port (= port for one port)
//	  "portName": "http" | "",
//	  "verdict": "allowed" | "denied",
//	  "reason": "one sentence",
//	  "egress":  direction,   of the source pod
//	  "ingress": direction,   of the destination pod
//	  "trace": null | trace   (with --trace)
//	}]}
//
// direction is enforcer.DirectionDecision, plus the text line explain prints:
//
//	{"pod": "ns/name" or "", "isolated": bool, "allowed": bool,
//	 "policies": [...], "claimants": [...], "conflict": bool,
//	 "tier": "admin" | "networkpolicy" | "baseline" | "", "rule": "",
//	 "passes": [...], "description": "allowed (...)",
//	 "audit": null | direction}   what policies in audit mode would decide
//	                              when they would deny (its own audit null)
//
// trace is the flow's first packet through the forward hook:
//
//	{"node": "node-a", "table": "nftwarden", "hook": "forward",
//	 "kernelTableMissing": bool,
//	 "kernel":   {"verdict": "accept" | "drop", "path": [step]},
//	 "expected": {"verdict": ..., "path": [step]},   the table compiled for node
//	 "agree": bool}
//	step: {"text": "...", "chain": "" | name, "rule": -1 | index,
//	       "counters": [{"name": "" (the rule's own) | object name, "packets": n, "bytes": n}]}
type explainJSON struct {
	Flows []flowJSON `json:"flows"`
}

type flowJSON struct {
	From     endpointJSON  `json:"from"`
	To       endpointJSON  `json:"to"`
	Protocol string        `json:"protocol"`
	Port     uint16        `json:"port"`
	EndPort  uint16        `json:"endPort"`
	PortName string        `json:"portName"`
	Verdict  string        `json:"verdict"`
	Reason   string        `json:"reason"`
	Egress   directionJSON `json:"egress"`
	Ingress  directionJSON `json:"ingress"`
	Trace    *traceJSON    `json:"trace"`
}

type endpointJSON struct {
	Pod string `json:"pod"`
	IP  string `json:"ip"`
}

type directionJSON struct {
	Pod         string         `json:"pod"`
	Isolated    bool           `json:"isolated"`
	Allowed     bool           `json:"allowed"`
	Policies    []string       `json:"policies"`
	Claimants   []string       `json:"claimants"`
	Conflict    bool           `json:"conflict"`
	Tier        string         `json:"tier"`
	Rule        string         `json:"rule"`
	Passes      []string       `json:"passes"`
	Description string         `json:"description"`
	Audit       *directionJSON `json:"audit"`
}

type traceJSON struct {
	Node               string          `json:"node"`
	Table              string          `json:"table"`
	Hook               string          `json:"hook"`
	KernelTableMissing bool            `json:"kernelTableMissing"`
	Kernel             traceResultJSON `json:"kernel"`
	Expected           traceResultJSON `json:"expected"`
	Agree              bool            `json:"agree"`
}

type traceResultJSON struct {
	Verdict string     `json:"verdict"`
	Path    []stepJSON `json:"path"`
}

type stepJSON struct {
	Text     string        `json:"text"`
	Chain    string        `json:"chain"`
	Rule     int           `json:"rule"`
	Counters []counterJSON `json:"counters"`
}

type counterJSON struct {
	Name    string `json:"name"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// writeExplainJSON writes flows as one indented JSON document.
func writeExplainJSON(w io.Writer, flows []explainedFlow) error {
	doc := explainJSON{Flows: make([]flowJSON, 0, len(flows))}
	for _, f := range flows {
		verdict := "denied"
		if f.Decision.Allowed {
			verdict = "allowed"
		}
		doc.Flows = append(doc.Flows, flowJSON{
			From:     endpointJSON{Pod: podOf(f.From), IP: f.Flow.Src.String()},
			To:       endpointJSON{Pod: podOf(f.To), IP: f.Flow.Dst.String()},
			Protocol: string(f.Flow.Protocol),
			Port:     f.Flow.Port,
			EndPort:  f.EndPort,
			PortName: f.PortName,
			Verdict:  verdict,
			Reason:   f.Decision.Reason,
			Egress:   directionOf(f.Decision.Egress, "source", "egress", f.Flow.Src),
			Ingress:  directionOf(f.Decision.Ingress, "destination", "ingress", f.Flow.Dst),
			Trace:    traceOf(f.Trace),
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func podOf(e endpoint) string {
	if e.isPod() {
		return e.String()
	}
	return ""
}

// directionOf is the JSON of one direction (end and dir name it in the
// description, addr is the address of its end).
func directionOf(dd enforcer.DirectionDecision, end, dir string, addr netip.Addr) directionJSON {
	out := directionJSON{
		Pod: dd.Pod, Isolated: dd.Isolated, Allowed: dd.Allowed,
		Policies: nonNil(dd.Policies), Claimants: nonNil(dd.Claimants), Conflict: dd.Conflict,
		Tier: dd.Tier, Rule: dd.Rule, Passes: nonNil(dd.Passes), Description: describeDirection(dd, end, dir, addr),
	}
	if dd.Audit != nil {
		audit := directionOf(*dd.Audit, end, dir, addr)
		out.Audit = &audit
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func traceOf(t *flowTrace) *traceJSON {
	if t == nil {
		return nil
	}
	return &traceJSON{
		Node: t.tables.Node, Table: t.tables.Table, Hook: string(nft.HookForward),
		KernelTableMissing: t.tables.KernelMissing,
		Kernel:             traceResultOf(t.Kernel, t.KernelSteps),
		Expected:           traceResultOf(t.Expected, stepsOf(t.tables.Expected, t.Expected.Path)),
		Agree:              t.Agree(),
	}
}

func traceResultOf(r nft.TraceResult, steps []traceStep) traceResultJSON {
	out := traceResultJSON{Verdict: "drop", Path: make([]stepJSON, 0, len(steps))}
	if r.Accepted() {
		out.Verdict = "accept"
	}
	for _, s := range steps {
		cs := make([]counterJSON, 0, len(s.Counters))
		for _, c := range s.Counters {
			cs = append(cs, counterJSON(c))
		}
		out.Path = append(out.Path, stepJSON{Text: s.Text, Chain: s.Chain, Rule: s.Rule, Counters: cs})
	}
	return out
}
