package enforcer_test

// IP plan: see helpers_test.go and semantics_test.go (the base world).

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// TestFuzzSeeds keeps the seed corpora in testdata/fuzz/<FuzzName>/ in step
// with the objects they come from (the odd cases of TestOddInput among
// them): with -update it writes them; otherwise it checks that each is there
// as it would be written. Go runs the seeds of each target as a test.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds() {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, args := range seeds {
			path := filepath.Join(dir, name)
			want := corpusFile(args...)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := os.ReadFile(path); err != nil || string(got) != want {
				t.Errorf("seed %s is missing or stale (go test ./enforcer -run TestFuzzSeeds -update): %v", path, err)
			}
		}
	}
}

// corpusFile is a seed in the format of go test's fuzz corpus files.
func corpusFile(args ...any) string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		case string:
			fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		default:
			panic(fmt.Sprintf("corpus value of type %T", a))
		}
	}
	return b.String()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// seedScript is a FuzzEngineObjects script that goes through every op:
// upsert the namespace, the policy and the pod as decoded; flush; decide;
// upsert the pod again as prod/fz1 with prod/cli's address through
// NewPod+UpsertParsedPod; reconcile; delete a pod, a policy and a
// namespace; flush.
var seedScript = []byte{
	opNamespace, 0,
	opPolicy, 0, 0,
	opPod, 0, 0, 0, 0,
	opFlush, 0,
	opDecide, 3, 7, 0, 0,
	opPodAgain, 1, 1, 1, 2, 1,
	opFlush, 1,
	opDeletePod, 0,
	opDeletePolicy, 1,
	opDeleteNamespace, 2,
	opFlush, 0,
}

// seedLists is the longest list of ports or except blocks in a seed: the
// fuzzer mutates small inputs quickly, and TestOddInput runs the full sizes.
const seedLists = 64

// shrunk returns np with its port and except lists cut to seedLists.
func shrunk(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	np = np.DeepCopy()
	cutPeers := func(ps []networkingv1.NetworkPolicyPeer) {
		for i := range ps {
			if b := ps[i].IPBlock; b != nil {
				b.Except = b.Except[:min(len(b.Except), seedLists)]
			}
		}
	}
	for i := range np.Spec.Ingress {
		r := &np.Spec.Ingress[i]
		r.Ports = r.Ports[:min(len(r.Ports), seedLists)]
		cutPeers(r.From)
	}
	for i := range np.Spec.Egress {
		r := &np.Spec.Egress[i]
		r.Ports = r.Ports[:min(len(r.Ports), seedLists)]
		cutPeers(r.To)
	}
	return np
}

// recordedChoices takes decisions from a PRNG and records each as the byte
// byteChoices reads back as the same decision.
type recordedChoices struct {
	r rngChoices
	b []byte
}

func (c *recordedChoices) intn(n int) int {
	if n <= 1 {
		return 0 // byteChoices reads no byte either
	}
	v := c.r.intn(n)
	c.b = append(c.b, byte(v))
	return v
}

// mixedSeed is a FuzzEngineAgreesWithEvaluator input whose first two thirds
// build a world with at least two ClusterNetworkPolicies among
// NetworkPolicies and pods (genMixedOp and the flush decisions, as the
// target reads them), and whose last third picks flows.
func mixedSeed(seed uint64) []byte {
	rec := &recordedChoices{r: rngChoices{rand.New(rand.NewPCG(seed, 5))}}
	w := newWorld()
	for len(rec.b) < 400 || len(w.cnps) < 2 && len(rec.b) < 600 {
		w.apply(genMixedOp(rec, w))
		rec.intn(4)
	}
	for range len(rec.b) / 2 {
		rec.intn(256)
	}
	return rec.b
}

// slug turns a case name into a file name.
func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

// fuzzSeeds returns, per fuzz target, the seeds by file name.
func fuzzSeeds() map[string]map[string][]any {
	seeds := map[string]map[string][]any{
		"FuzzEngineAgreesWithEvaluator": {},
		"FuzzEngineObjects":             {},
		"FuzzNewPod":                    {},
		"FuzzDecide":                    {},
	}
	for seed := range 16 {
		r := rand.New(rand.NewPCG(uint64(seed), 99))
		b := make([]byte, 200+seed*40)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		seeds["FuzzEngineAgreesWithEvaluator"][fmt.Sprintf("random-%02d", seed)] = []any{b}
	}
	for seed := range 8 {
		seeds["FuzzEngineAgreesWithEvaluator"][fmt.Sprintf("mixed-%02d", seed)] = []any{mixedSeed(uint64(seed))}
	}

	ns := mustJSON(mkNamespace("fz", "env", "dev"))
	cliLike := mustJSON(mkPod("prod", "fz", podLabels("app", "cli"), onNode("node-b"), podIPs("198.18.2.77"), containerPort("http", TCP, 8080)))
	objects := seeds["FuzzEngineObjects"]
	pods := seeds["FuzzNewPod"]
	for _, tc := range oddCases() {
		pod := cliLike
		if len(tc.pods) > 0 {
			pod = mustJSON(tc.pods[0])
		}
		for j, np := range tc.policies {
			objects[fmt.Sprintf("odd-%s-%d", slug(tc.name), j)] = []any{ns, pod, mustJSON(shrunk(np)), seedScript}
		}
		if len(tc.policies) == 0 {
			objects["odd-"+slug(tc.name)] = []any{ns, pod, []byte("null"), seedScript}
		}
		for j, p := range tc.pods {
			pods[fmt.Sprintf("odd-%s-%d", slug(tc.name), j)] = []any{mustJSON(p)}
		}
	}
	objects["nothing-decodes"] = []any{[]byte("null"), []byte("{}"), []byte(`{"spec":{"podSelector":{"matchLabels":{"":""}}}}`), seedScript}
	objects["ip-reuse"] = []any{ns, mustJSON(mkPod("prod", "intruder", podLabels("app", "other"), onNode("node-a"), podIPs("198.18.2.10"))),
		mustJSON(mkPolicy("prod", "fzp", selecting(sel("app", "other")), egress(nil, tcp(80)))), seedScript}

	_, base := baseWorld()
	for _, p := range base {
		pods["base-"+p.Namespace+"-"+p.Name] = []any{mustJSON(p)}
	}
	pods["null"] = []any{[]byte("null")}
	pods["empty"] = []any{[]byte("{}")}
	pods["odd-container-ports"] = []any{mustJSON(mkPod("prod", "ports", podIPs("::ffff:198.18.1.90", "2001:db8:1::90", "2001:db8:1::90"),
		containerPort("", TCP, 80), containerPort("zero", TCP, 0), containerPort("big", UDP, 70_000), containerPort("icmp", "ICMP", 1),
		containerPort("http", "", 8080), initPort("sidecar", 9090, true), initPort("setup", 7000, false)))}

	decide := seeds["FuzzDecide"]
	raw := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	decide["known-pods"] = []any{[]byte{3}, []byte{5}, "TCP", uint16(80)}
	decide["shared-address"] = []any{raw("198.18.2.10"), raw("198.18.1.10"), "TCP", uint16(80)}
	decide["ipv6"] = []any{raw("2001:db8:2::10"), raw("2001:db8:1::10"), "TCP", uint16(8080)}
	decide["mapped"] = []any{raw("::ffff:198.18.2.10"), raw("198.18.1.10"), "UDP", uint16(53)}
	decide["mixed-families"] = []any{raw("198.18.2.10"), raw("2001:db8:1::10"), "TCP", uint16(80)}
	decide["no-source"] = []any{[]byte{}, raw("198.18.1.10"), "SCTP", uint16(9090)}
	decide["unknown-protocol"] = []any{raw("198.18.2.10"), raw("198.18.1.11"), "ICMP", uint16(0)}
	return seeds
}
