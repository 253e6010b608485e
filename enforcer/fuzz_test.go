package enforcer_test

// IP plan: see helpers_test.go (generated pods: 198.18.128.0/24, 2001:db8:100::/64).

import (
	"math/rand/v2"
	"testing"

	"github.com/nftwarden/nftwarden/enforcer"
)

// FuzzEngineAgreesWithEvaluator builds a random cluster (namespaces, pods on
// three nodes, policies with every kind of selector, peer and port) from the
// fuzzer's bytes, programs one Fake per node incrementally, and holds the
// reference evaluator against the compiled rulesets on random flows. It also
// checks that the incremental result equals a fresh build.
//
//	go test ./enforcer -run '^$' -fuzz FuzzEngineAgreesWithEvaluator -fuzztime 1m
func FuzzEngineAgreesWithEvaluator(f *testing.F) {
	for seed := range 16 {
		r := rand.New(rand.NewPCG(uint64(seed), 99))
		b := make([]byte, 200+seed*40)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Bound the scenario: more bytes add little but cost a lot per run.
		data = data[:min(len(data), 1024)]
		c := &byteChoices{b: data}
		cl := newCluster(t, genNodes...)
		w := newWorld()
		// Two thirds of the input build the cluster, the rest picks flows.
		opsEnd := len(data) * 2 / 3
		for step := 0; c.i < opsEnd; step++ {
			for _, call := range w.apply(genOp(c, w)) {
				_ = cl.each(func(e *enforcer.Engine) error { call(e); return nil })
			}
			if c.intn(4) == 0 {
				cl.flush()
			}
		}
		cl.flush()
		checkConverged(t, cl, w, -1)
		for n := 0; c.i < len(data) && n < 64; n++ {
			src, dst, proto, port := genFlow(c)
			checkAgreement(t, cl, enforcer.Flow{Src: src, Dst: dst, Protocol: proto, Port: port})
		}
		for _, f := range namedPortFlows(w) {
			checkAgreement(t, cl, f)
		}
	})
}
