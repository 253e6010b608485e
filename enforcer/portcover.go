package enforcer

import (
	"maps"
	"slices"

	"github.com/nftwarden/nftwarden/nft"
)

// portCover is the (protocol, port) space some rules match: all, or per
// protocol sorted disjoint port intervals and port names. The audit rules of a class chain
// (tiers.auditRules) log only over what it leaves.
type portCover struct {
	all     bool
	byProto map[uint8][][2]uint16
	// named are the port names matched (tierNamedPorts' sets).
	named []string
}

// add joins protocol proto's ports lo..hi.
func (c *portCover) add(proto uint8, lo, hi uint16) {
	if c.byProto == nil {
		c.byProto = map[uint8][][2]uint16{}
	}
	ivs := append(slices.Clone(c.byProto[proto]), [2]uint16{lo, hi})
	slices.SortFunc(ivs, func(a, b [2]uint16) int { return int(a[0]) - int(b[0]) })
	merged := ivs[:1]
	for _, iv := range ivs[1:] {
		last := &merged[len(merged)-1]
		if int(iv[0]) <= int(last[1])+1 {
			last[1] = max(last[1], iv[1])
			continue
		}
		merged = append(merged, iv)
	}
	c.byProto[proto] = merged
}

// restOf is what of protocol proto's ports lo..hi the cover leaves, as
// sorted intervals.
func (c *portCover) restOf(proto uint8, lo, hi uint16) [][2]uint16 {
	if c.all {
		return nil
	}
	var out [][2]uint16
	next := int(lo) // the first port not yet accounted for
	for _, iv := range c.byProto[proto] {
		if int(iv[1]) < next || int(iv[0]) > int(hi) {
			continue
		}
		if int(iv[0]) > next {
			out = append(out, [2]uint16{uint16(next), iv[0] - 1})
		}
		next = int(iv[1]) + 1
	}
	if next <= int(hi) {
		out = append(out, [2]uint16{uint16(next), hi})
	}
	return out
}

// rest are the matches of every packet the cover leaves: the gaps of each
// protocol it holds ports of, then every other protocol (one empty match
// when it holds nothing, none when it holds everything).
func (c *portCover) rest() [][]nft.Expr {
	if c.all {
		return nil
	}
	var out [][]nft.Expr
	var others []nft.Expr
	for _, proto := range slices.Sorted(maps.Keys(c.byProto)) {
		for _, iv := range c.restOf(proto, 0, 65535) {
			out = append(out, portExprs(proto, iv[0], iv[1]))
		}
		others = append(others, nft.Cmp{Field: nft.FieldL4Proto, Neq: true, Value: nft.ProtoValue(proto)})
	}
	return append(out, others)
}
