package nft_test

// IP plan: pods 198.18.0.10-.12 (as kernel_test.go).

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nftwarden/nftwarden/nft"
)

// TestKernelElementsOfNewSetsBySetID: elements sent to a set that the same
// batch creates name the set by its batch ID rather than by name (the
// kernel's name lookup walks every set of the table). Each case ends in the
// kernel holding exactly the elements the transactions add, read back.
func TestKernelElementsOfNewSetsBySetID(t *testing.T) {
	peers := nft.Set{Name: "peers", Key: []nft.KeyType{nft.TypeIPv4Addr}}
	add := func(tx *nft.Transaction, ips ...string) {
		for _, ip := range ips {
			tx.AddElements("peers", v4(ip))
		}
	}
	tests := []struct {
		name  string
		steps []func(tx *nft.Transaction) // one batch each
		want  []string
	}{{
		name: "set and elements in one batch",
		steps: []func(*nft.Transaction){func(tx *nft.Transaction) {
			tx.AddSet(peers)
			add(tx, "198.18.0.10", "198.18.0.11")
		}},
		want: []string{"198.18.0.10", "198.18.0.11"},
	}, {
		// The kernel creates nothing for a set that exists: the elements
		// must still reach it.
		name: "set added again where it exists",
		steps: []func(*nft.Transaction){
			func(tx *nft.Transaction) { tx.AddSet(peers); add(tx, "198.18.0.10") },
			func(tx *nft.Transaction) { tx.AddSet(peers); add(tx, "198.18.0.11") },
		},
		want: []string{"198.18.0.10", "198.18.0.11"},
	}, {
		name: "set deleted and created again in one batch",
		steps: []func(*nft.Transaction){
			func(tx *nft.Transaction) { tx.AddSet(peers); add(tx, "198.18.0.10") },
			func(tx *nft.Transaction) { tx.DeleteSet("peers"); tx.AddSet(peers); add(tx, "198.18.0.12") },
		},
		want: []string{"198.18.0.12"},
	}, {
		name: "elements of an existing set beside a new one",
		steps: []func(*nft.Transaction){
			func(tx *nft.Transaction) { tx.AddSet(peers) },
			func(tx *nft.Transaction) {
				tx.AddSet(nft.Set{Name: "other", Key: []nft.KeyType{nft.TypeIPv4Addr}})
				tx.AddElements("other", v4("198.18.0.12"))
				add(tx, "198.18.0.11")
			},
		},
		want: []string{"198.18.0.11"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, k := newKernel(t)
			ctx := context.Background()
			for i, step := range tt.steps {
				var tx nft.Transaction
				step(&tx)
				if err := k.Apply(ctx, &tx); err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
			}
			st, err := k.Read(ctx)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			var got []string
			for e := range st.Sets["peers"].Elements.Values() {
				got = append(got, nft.FormatValue(nft.TypeIPv4Addr, e.Key[0]))
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("elements of peers (-want +got):\n%s", diff)
			}
		})
	}
}
