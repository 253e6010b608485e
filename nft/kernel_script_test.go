package nft_test

// Transaction.Format against the nft binary, in a throwaway network namespace
// (IP plan: kernel_test.go).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// TestKernelScriptMatchesApply walks one table through the golden programs
// and back to nothing. Each step's transaction (Diff from the previous state)
// is fed as text (Format) to `nft -f` in one namespace, applied with
// Kernel.Apply in another, and applied to a Fake: the three tables must list
// the same. So the text is what nft takes, and means what the transaction
// means. (Listings are compared, not what Kernel.Read lifts: for a lookup in
// a concatenated interval set nft adds a no-op byteorder expression that
// nftwarden's own batches do not have, and Read does not decode.)
func TestKernelScriptMatchesApply(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("the nft binary is needed to apply scripts")
	}
	viaText, _ := newKernel(t)
	viaNetlink, k := newKernel(t)
	fake := nft.NewFake(testTable)
	ctx := context.Background()

	type step struct {
		name  string
		state func() *nft.State
	}
	var steps []step
	for _, p := range goldenPrograms {
		steps = append(steps, step{p.name, func() *nft.State { return nftReadable(p.state()) }})
	}
	// Rules inserted first, in the middle and last: InsertRule as text.
	steps = append(steps,
		step{"jumps", func() *nft.State { return jumpState([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) }},
		step{"jumps inserted", func() *nft.State { return jumpState([]int{20, 0, 1, 2, 3, 21, 22, 4, 5, 6, 7, 8, 9, 23}) }},
		step{"empty", nft.NewState})
	prev := nft.NewState()
	for _, st := range steps {
		next := st.state()
		tx := nft.Diff(prev, next, nil)
		prev = next
		if st.name == "jumps inserted" && tx.Size() != 4 {
			t.Fatalf("to %s: %d operations, want 4 insertions:\n%s", st.name, tx.Size(), tx)
		}
		script := filepath.Join(t.TempDir(), "tx.nft")
		if err := os.WriteFile(script, []byte(tx.Format(testTable)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := viaText.Exec("nft", "-f", script); err != nil {
			t.Fatalf("to %s: nft -f refused the script: %v\n%s", st.name, err, tx.Format(testTable))
		}
		if err := k.Apply(ctx, tx); err != nil {
			t.Fatalf("to %s: Kernel.Apply: %v", st.name, err)
		}
		if err := fake.Apply(ctx, tx); err != nil {
			t.Fatalf("to %s: Fake.Apply: %v", st.name, err)
		}
		text := nfttest.ListTable(t, viaText, testTable)
		if diff := cmp.Diff(nfttest.Normalize(fake.Dump()), nfttest.Normalize(text)); diff != "" {
			t.Errorf("to %s: the table nft -f made differs from Fake.Apply's (-fake +script):\n%s", st.name, diff)
		}
		// google/nftables sends no chain comments (kernel_render_test.go).
		withoutComments := chainCommentRE.ReplaceAllString(text, "$1")
		if diff := cmp.Diff(nfttest.Normalize(nfttest.ListTable(t, viaNetlink, testTable)), nfttest.Normalize(withoutComments)); diff != "" {
			t.Errorf("to %s: the table nft -f made differs from Kernel.Apply's (-apply +script):\n%s", st.name, diff)
		}
	}
}

// nftReadable adapts s to what a script can express exactly (see
// Transaction.Format): it renames the chains whose names nft reads as a
// keyword (the tcp-flags program has a chain called flags), and leaves out the
// rules where an explicit `meta l4proto tcp` precedes a tcp flags match, which
// nft parses as one protocol match where the batch has two, and the rules
// with a tagged lookup, which nft 1.0.6 cannot parse at all (a constant in a
// concatenation; their sets and elements it reads).
func nftReadable(s *nft.State) *nft.State {
	for _, keyword := range []string{"flags"} {
		if c := s.Chains[keyword]; c != nil {
			delete(s.Chains, keyword)
			c.Name = keyword + "-chain"
			s.Chains[c.Name] = c
		}
	}
	for _, c := range s.Chains {
		c.Rules = slices.DeleteFunc(c.Rules, func(r nft.Rule) bool {
			for _, e := range r.Exprs {
				if l, ok := e.(nft.Lookup); ok && l.Tag != nil {
					return true
				}
			}
			for i := 1; i < len(r.Exprs); i++ {
				cmp, isCmp := r.Exprs[i-1].(nft.Cmp)
				if _, flags := r.Exprs[i].(nft.MatchTCPFlags); flags && isCmp && cmp.Field == nft.FieldL4Proto {
					return true
				}
			}
			return false
		})
	}
	return s
}
