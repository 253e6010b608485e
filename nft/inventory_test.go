package nft_test

import (
	"slices"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// TestPrivilegedInventory lists the tables and chains of a fresh namespace that
// holds other enforcers' rules: Calico's nftables table, an iptables-nft
// filter table with kube-router's chains, and an empty table.
func TestPrivilegedInventory(t *testing.T) {
	ns := nfttest.NewNetNS(t)
	nftScript(t, ns, `add table ip calico
		add chain ip calico filter-FORWARD
		add table ip filter
		add chain ip filter KUBE-ROUTER-FORWARD
		add table inet kube-network-policies`)
	var got []nft.ChainRef
	if err := ns.Run(func() (err error) {
		got, err = nft.Inventory()
		return err
	}); err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	for _, want := range []nft.ChainRef{
		{Family: "ip", Table: "calico"},
		{Family: "ip", Table: "calico", Chain: "filter-FORWARD"},
		{Family: "ip", Table: "filter", Chain: "KUBE-ROUTER-FORWARD"},
		{Family: "inet", Table: "kube-network-policies"},
	} {
		if !slices.Contains(got, want) {
			t.Errorf("Inventory lacks %+v; got %+v", want, got)
		}
	}
	if len(got) != 5 {
		t.Errorf("Inventory listed %d entries, want 5: %+v", len(got), got)
	}
}
