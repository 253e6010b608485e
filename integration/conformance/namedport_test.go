package conformance

import (
	"fmt"
	"testing"
)

// TestNamedPortEgressIPBlock runs the named-port-to-ipBlock cases (issue #6)
// on the reference evaluator and the compiled rulesets, for each family.
func TestNamedPortEgressIPBlock(t *testing.T) {
	for _, fam := range families() {
		t.Run(string(fam), func(t *testing.T) {
			runModel(t, fam, NamedPortIPBlockCases(), false, func(c Case) string {
				return fmt.Sprintf("go test ./conformance -run 'TestNamedPortEgressIPBlock/%s/%s' -family %s", fam, testNamePattern(c.Name), fam)
			})
		})
	}
}
