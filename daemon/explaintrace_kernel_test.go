package daemon

// explain --trace for real: the daemon of a kernelNode (kernelnode_test.go)
// programs the node namespace's kernel (api admits web on TCP 8080); explain
// traces flows through the table it reads back, beside the model, and the
// packets that follow get the verdict the kernel's trace said.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft/nfttest"
	"github.com/nftwarden/nftwarden/podwatch"
)

func TestPrivilegedExplainTrace(t *testing.T) {
	n := startKernelNode(t, func(api *nfttest.Pod) { nfttest.Serve(t, api, []int{8080, 9090}, 0) },
		portOf(corev1.ProtocolTCP, 8080))
	ctx := context.Background()
	// The model of explain: the cluster as the fake API server lists it,
	// compiled for the node.
	model, err := enforcer.New(enforcer.Config{NodeName: "node-a", Logger: slog.New(slog.DiscardHandler)})
	must(t, err)
	must(t, podwatch.Sync(ctx, n.client, model, podwatch.Options{Logger: slog.New(slog.DiscardHandler)}))

	explainTraced := func(port, output string) string {
		t.Helper()
		tables, err := readTraceTables(ctx, n.kernel, "node-a", kernelNodeTable, model.Desired())
		must(t, err)
		q, err := explainQueryFrom("backend/web", "backend/api", port)
		must(t, err)
		var out bytes.Buffer
		must(t, explain(model, q, tables, output, &out))
		return out.String()
	}
	probe := func(port uint16) bool {
		t.Helper()
		ok, err := nfttest.Probe(n.web, "tcp", netip.AddrPortFrom(n.api.V4, port))
		must(t, err)
		return ok
	}

	for _, tc := range []struct {
		port    uint16
		verdict string
	}{{8080, "ACCEPT"}, {9090, "DROP"}} {
		text := explainTraced(fmt.Sprint(tc.port), outputText)
		for _, want := range []string{"kernel:   " + tc.verdict + "\n", "model:    " + tc.verdict + " ", "forward: base chain forward", ": goto ingress\n"} {
			if !strings.Contains(text, want) {
				t.Errorf("port %d: output lacks %q:\n%s", tc.port, want, text)
			}
		}
		if strings.Contains(text, "DISAGREEMENT") {
			t.Errorf("port %d: kernel and model disagree:\n%s", tc.port, text)
		}
		if got := probe(tc.port); got != (tc.verdict == "ACCEPT") {
			t.Errorf("port %d: the trace said %s, a real connection got through: %v", tc.port, tc.verdict, got)
		}
	}

	// The probe of 9090 was dropped by a rule with a counter: the trace
	// shows what that rule counted.
	var counted explainJSON
	must(t, json.Unmarshal([]byte(explainTraced("9090", outputJSON)), &counted))
	var packets uint64
	for _, s := range counted.Flows[0].Trace.Kernel.Path {
		for _, c := range s.Counters {
			packets += c.Packets
		}
	}
	if packets == 0 {
		t.Errorf("no counter on the kernel's path of 9090 counted the dropped probe: %+v", counted.Flows[0].Trace.Kernel.Path)
	}

	// The model changes (the policy deleted) and the kernel does not: the
	// kernel still drops 9090, the model would accept it.
	model.DeleteNetworkPolicy("backend", "allow-web")
	text := explainTraced("9090", outputText)
	t.Logf("explain --trace after the model changed:\n%s", text)
	for _, want := range []string{"kernel:   DROP\n", "model:    ACCEPT ", "!!! DISAGREEMENT: the kernel's table DROPS this flow, the model compiled for node node-a ACCEPTS it."} {
		if !strings.Contains(text, want) {
			t.Errorf("after the model changed: output lacks %q:\n%s", want, text)
		}
	}
	var doc explainJSON
	must(t, json.Unmarshal([]byte(explainTraced("9090", outputJSON)), &doc))
	if len(doc.Flows) != 1 || doc.Flows[0].Trace == nil {
		t.Fatalf("JSON: %+v", doc)
	}
	tr := doc.Flows[0].Trace
	if tr.Agree || tr.Kernel.Verdict != "drop" || tr.Expected.Verdict != "accept" || tr.KernelTableMissing {
		t.Errorf("JSON trace = agree %v, kernel %s, expected %s, missing %v; want a disagreement: drop vs accept",
			tr.Agree, tr.Kernel.Verdict, tr.Expected.Verdict, tr.KernelTableMissing)
	}
	rules := 0
	for _, s := range tr.Kernel.Path {
		if s.Rule >= 0 {
			rules++
			if s.Chain == "" || !strings.HasPrefix(s.Text, s.Chain+"[") {
				t.Errorf("rule step %+v does not name its chain", s)
			}
		}
	}
	if rules == 0 {
		t.Errorf("the kernel's path passes no rule: %+v", tr.Kernel.Path)
	}
}
