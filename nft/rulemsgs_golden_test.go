package nft_test

import (
	"testing"

	"github.com/nftwarden/nftwarden/nft"
)

// TestKernelRuleMessagesMatchTheLibrary: the rule and chain messages Kernel
// marshals itself for the golden programs and a synthetic node (both
// stacks, distinct ports) are, byte for byte, google/nftables'. Unprivileged.
func TestKernelRuleMessagesMatchTheLibrary(t *testing.T) {
	programs := append(goldenPrograms[:len(goldenPrograms):len(goldenPrograms)], struct {
		name  string
		state func() *nft.State
	}{"node", func() *nft.State { return nodeState(1000, true, true) }})
	for _, tc := range programs {
		t.Run(tc.name, func(t *testing.T) {
			if err := nft.RuleMessagesMismatch(nft.Diff(nil, tc.state(), nil)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
