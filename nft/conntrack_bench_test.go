package nft_test

// Cost of a conntrack sweep in a node namespace holding n UDP entries that
// pod a sprayed at pod b through the node (IP plan of conntrack_test.go,
// routed; no nftables program is loaded besides the skeleton, which turns
// conntrack on in the node).

import (
	"context"
	"fmt"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// sprayedNode returns a Conntrack on a node through which pod a sprayed n UDP
// connections at pod b, and how many entries the node holds.
func sprayedNode(b *testing.B, n int) (*nft.Conntrack, func() int) {
	node := nfttest.NewNetNS(b)
	pa, pb := *podA, *podB
	nfttest.WirePods(b, node, false, &pa, &pb)
	k, err := nft.NewKernel(nft.WithTable(testTable), nft.WithNetNS(node.FD))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = k.Close() })
	if _, err := k.Reconcile(context.Background(), skeleton()); err != nil {
		b.Fatal(err)
	}
	ct, err := nft.NewConntrack(nft.ConntrackNetNS(node.FD))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ct.Close() })
	spray := func() int {
		if err := nfttest.SprayUDP(&pa, pb.V4, n); err != nil {
			b.Fatal(err)
		}
		_, examined, err := ct.DeleteFlows(context.Background(), func(nft.Flow) bool { return false })
		if err != nil {
			b.Fatal(err)
		}
		if examined < n*9/10 {
			b.Fatalf("sprayed %d connections, the node tracks %d", n, examined)
		}
		return examined
	}
	return ct, spray
}

// BenchmarkConntrackSweep measures one DeleteFlows over the whole table:
// "examine" deletes nothing (the cost of every sweep), "delete" deletes every
// entry (one netlink round trip each; the table is sprayed again, untimed,
// before each sweep).
func BenchmarkConntrackSweep(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("examine/entries=%d", n), func(b *testing.B) {
			ct, spray := sprayedNode(b, n)
			entries := spray()
			b.ResetTimer()
			for range b.N {
				if _, _, err := ct.DeleteFlows(ctx, func(nft.Flow) bool { return false }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*entries), "ns/entry")
		})
		b.Run(fmt.Sprintf("delete/entries=%d", n), func(b *testing.B) {
			ct, spray := sprayedNode(b, n)
			total := 0
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				entries := spray()
				b.StartTimer()
				deleted, _, err := ct.DeleteFlows(ctx, func(nft.Flow) bool { return true })
				if err != nil {
					b.Fatal(err)
				}
				if deleted != entries {
					b.Fatalf("deleted %d of %d entries", deleted, entries)
				}
				total += deleted
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(total), "ns/entry")
		})
	}
}
