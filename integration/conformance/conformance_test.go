package conformance

// IP plan of the in-process runs (model cluster): pods alternate between
// node-1 and node-2 by their position x/a, x/b, ..., z/c; a pod with position o
// on node n has 198.18.<n+1>.<o+10> and/or 2001:db8:<n+1>::<o+10>. Nothing
// touches the kernel.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var (
	flagSeed   = flag.Uint64("seed", 1, "seed of TestGenerated")
	flagCase   = flag.Int("case", -1, "run only this generated case (with -seed)")
	flagCount  = flag.Int("gen-cases", 320, "number of generated cases in TestGenerated")
	flagFamily = flag.String("family", "", "only this address family in the model tests (ipv4, ipv6, dual)")
)

func families() []Family {
	if *flagFamily != "" {
		return []Family{Family(*flagFamily)}
	}
	return []Family{IPv4, IPv6, DualStack}
}

// runModel runs cases on fresh model clusters and prints the summary.
func runModel(t *testing.T, fam Family, cases []Case, withOracle bool, repro func(Case) string) {
	t.Helper()
	ctx := context.Background()
	var sum Summary
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			m, err := NewModel("", c.Pods)
			if err != nil {
				t.Fatalf("model: %v", err)
			}
			cl, err := NewModelCluster(ctx, m, fam)
			if err != nil {
				t.Fatalf("model cluster: %v", err)
			}
			var oracle *Oracle
			if withOracle {
				if oracle, err = NewOracle(m, cl.Addrs(), cl.NodeOf); err != nil {
					t.Fatalf("oracle: %v", err)
				}
			}
			record(t, &sum, RunCase(ctx, cl, m, c, oracle, RunOptions{Repro: repro(c)}))
		})
	}
	printSummary(t, &sum, fmt.Sprintf("%s, %s", t.Name(), fam))
}

// record adds a case's result to sum and fails t with its report.
func record(t *testing.T, sum *Summary, res Result) {
	t.Helper()
	sum.Add(res)
	if !res.Passed() {
		t.Error(res.Report())
	}
}

// printSummary prints the closing summary of a run, labelled.
func printSummary(t *testing.T, sum *Summary, label string) {
	t.Helper()
	var b strings.Builder
	if err := sum.Write(&b); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "--- conformance summary (%s)\n%s", label, b.String())
}

// TestConformanceModel runs every ported upstream case on the reference
// evaluator and the compiled rulesets (nft.Fake), for each address family.
func TestConformanceModel(t *testing.T) {
	cases := UpstreamCases()
	if len(cases) != 49 {
		t.Fatalf("ported %d upstream cases, want 49 (43 main, 3 UDP, 3 SCTP)", len(cases))
	}
	for _, fam := range families() {
		t.Run(string(fam), func(t *testing.T) {
			runModel(t, fam, cases, false, func(c Case) string {
				return fmt.Sprintf("go test ./conformance -run 'TestConformanceModel/%s/%s' -family %s", fam, testNamePattern(c.Name), fam)
			})
		})
	}
}

// TestConformanceModelCNP runs every ported network-policy-api
// ClusterNetworkPolicy case (upstream_cnp.go, and the experimental channel's
// upstream_cnp_experimental.go) the same way, for each family.
func TestConformanceModelCNP(t *testing.T) {
	cases := UpstreamCNPCases()
	if len(cases) != 24 {
		t.Fatalf("ported %d ClusterNetworkPolicy cases, want 24 (13 Admin tier and integration, 11 Baseline tier)", len(cases))
	}
	experimental := UpstreamCNPExperimentalCases()
	if len(experimental) != 6 {
		t.Fatalf("ported %d experimental ClusterNetworkPolicy cases, want 6 (2 node-peer, 4 named-port)", len(experimental))
	}
	cases = append(cases, experimental...)
	for _, fam := range families() {
		t.Run(string(fam), func(t *testing.T) {
			runModel(t, fam, cases, false, func(c Case) string {
				return fmt.Sprintf("go test ./conformance -run 'TestConformanceModelCNP/%s/%s' -family %s", fam, testNamePattern(c.Name), fam)
			})
		})
	}
}

// TestGenerated runs Cyclonus-style generated cases: the dataplane (Fake
// trace) must agree with the reference evaluator at every step.
func TestGenerated(t *testing.T) {
	seed := *flagSeed
	var cases []Case
	if *flagCase >= 0 {
		cases = []Case{GeneratedCase(seed, *flagCase)}
	} else {
		n := *flagCount
		if testing.Short() {
			n = 60
		}
		cases = Generate(seed, n)
	}
	fam := IPv4
	if *flagFamily != "" {
		fam = Family(*flagFamily)
	}
	runModel(t, fam, cases, true, func(c Case) string {
		var k int
		fmt.Sscanf(c.Name[strings.LastIndexByte(c.Name, '/')+1:], "%d", &k)
		return fmt.Sprintf("go test ./conformance -run TestGenerated -seed %d -case %d -family %s -v", seed, k, fam)
	})
}

// testNamePattern turns a case name into a -run pattern for its subtest.
func testNamePattern(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == ' ':
			b.WriteByte('_')
		case strings.ContainsRune(`'"(),:`, r):
			b.WriteByte('.')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
