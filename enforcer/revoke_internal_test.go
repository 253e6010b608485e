package enforcer

// Classification of transactions for FlushResult.Restricts. The table holds
// a dispatch map "ingress-v4", a peer set "peer-v4-web" and a pod chain.

import (
	"net/netip"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
)

func TestRestricts(t *testing.T) {
	state := nft.NewState()
	state.Sets["ingress-v4"] = &nft.Set{Name: "ingress-v4", Key: []nft.KeyType{nft.TypeIPv4Addr}, VerdictMap: true}
	state.Sets["peer-v4-web"] = &nft.Set{Name: "peer-v4-web", Key: []nft.KeyType{nft.TypeIPv4Addr}}
	addr := nft.Element{Key: []nft.Value{nft.AddrValue(netip.MustParseAddr("198.18.1.10"))}}
	dispatch := addr
	dispatch.Verdict = &nft.Verdict{Kind: nft.VerdictGoto, Chain: "pod-in-web"}
	accept := []nft.Rule{{Exprs: []nft.Expr{nft.Verdict{Kind: nft.VerdictAccept}}}}
	base := nft.Chain{Name: "ingress", Base: &nft.BaseChain{Hook: nft.HookForward, Policy: nft.VerdictAccept}}
	for _, tc := range []struct {
		name string
		tx   func(tx *nft.Transaction)
		want bool
	}{
		{"empty", func(*nft.Transaction) {}, false},
		{"peer added", func(tx *nft.Transaction) { tx.AddElements("peer-v4-web", addr) }, false},
		{"new set with elements", func(tx *nft.Transaction) {
			tx.AddSet(nft.Set{Name: "peer-v4-db", Key: []nft.KeyType{nft.TypeIPv4Addr}})
			tx.AddElements("peer-v4-web", addr)
		}, false},
		{"new chain with rules", func(tx *nft.Transaction) {
			tx.AddChain(nft.Chain{Name: "pol-in-new"})
			tx.ReplaceRules("pol-in-new", accept)
		}, false},
		{"peer removed", func(tx *nft.Transaction) { tx.DeleteElements("peer-v4-web", addr) }, true},
		{"pod isolated: dispatch element added", func(tx *nft.Transaction) { tx.AddElements("ingress-v4", dispatch) }, true},
		{"dispatch element removed", func(tx *nft.Transaction) { tx.DeleteElements("ingress-v4", dispatch) }, true},
		{"elements of a set the state does not know", func(tx *nft.Transaction) { tx.AddElements("unknown", addr) }, true},
		{"rules of an existing chain replaced", func(tx *nft.Transaction) { tx.ReplaceRules("pod-in-web", accept) }, true},
		{"rules replaced before the chain is added", func(tx *nft.Transaction) {
			tx.ReplaceRules("pol-in-new", accept)
			tx.AddChain(nft.Chain{Name: "pol-in-new"})
		}, true},
		{"new base chain", func(tx *nft.Transaction) { tx.AddChain(base) }, true},
		{"chain deleted", func(tx *nft.Transaction) { tx.DeleteChain("pol-in-old") }, true},
		{"set deleted", func(tx *nft.Transaction) { tx.DeleteSet("peer-v4-old") }, true},
		{"additions, then one deletion", func(tx *nft.Transaction) {
			tx.AddElements("peer-v4-web", addr)
			tx.DeleteElements("peer-v4-web", addr)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := &nft.Transaction{}
			tc.tx(tx)
			if got := restricts(tx, state); got != tc.want {
				t.Errorf("restricts = %v, want %v", got, tc.want)
			}
		})
	}
}
