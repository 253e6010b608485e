package nft

import (
	"fmt"

	"github.com/google/nftables"
)

// ChainRef names a chain, or a table when Chain is empty, of any family in a
// network namespace.
type ChainRef struct {
	Family string // "ip", "ip6", "inet", "arp", "bridge", "netdev"
	Table  string
	Chain  string // "" for the table itself
}

// Inventory lists every table of the current network namespace (one entry
// each, Chain empty) and every chain in them. It only reads: it is for start-up
// checks that look for other firewalls' and enforcers' rules, whose tables
// nftwarden never touches.
func Inventory() ([]ChainRef, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nft: open netlink connection: %w", err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		return nil, fmt.Errorf("nft: list tables: %w", err)
	}
	chains, err := conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("nft: list chains: %w", err)
	}
	out := make([]ChainRef, 0, len(tables)+len(chains))
	for _, t := range tables {
		out = append(out, ChainRef{Family: familyName(t.Family), Table: t.Name})
	}
	for _, c := range chains {
		if c.Table != nil {
			out = append(out, ChainRef{Family: familyName(c.Table.Family), Table: c.Table.Name, Chain: c.Name})
		}
	}
	return out, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family-%d", f)
}
