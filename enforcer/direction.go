package enforcer

import (
	"net/netip"

	"github.com/nftwarden/nftwarden/nft"
)

// Direction is the side of a pod's connections a policy isolates: ingress
// (connections to the pod) or egress (connections from it). Its values index
// the compiler's per-direction pairs.
type Direction uint8

// The two directions; Ingress is 0 so that a zero value is never "egress".
const (
	Ingress Direction = iota
	Egress
)

// directions lists both, for loops over a [2] array indexed by Direction.
var directions = [2]Direction{Ingress, Egress}

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// short is the direction in object names: "in" or "eg".
func (d Direction) short() string {
	if d == Egress {
		return "eg"
	}
	return "in"
}

// podField is the address of the pod a packet concerns for direction d (the
// source for egress, the destination for ingress), peerField the other end.
func (d Direction) podField(f Family) nft.Field {
	if d == Egress {
		return f.saddr()
	}
	return f.daddr()
}

func (d Direction) peerField(f Family) nft.Field {
	if d == Egress {
		return f.daddr()
	}
	return f.saddr()
}

// Family is an IP address family. Its values index the compiler's
// per-family pairs.
type Family uint8

// The two families.
const (
	IPv4 Family = iota
	IPv6
)

// families lists both, for loops over a [2] array indexed by Family.
var families = [2]Family{IPv4, IPv6}

// String is the family in object names and comments: "v4" or "v6".
func (f Family) String() string {
	if f == IPv6 {
		return "v6"
	}
	return "v4"
}

// addrType is the nft key type of the family's addresses.
func (f Family) addrType() nft.KeyType {
	if f == IPv6 {
		return nft.TypeIPv6Addr
	}
	return nft.TypeIPv4Addr
}

func (f Family) saddr() nft.Field {
	if f == IPv6 {
		return nft.FieldIP6Saddr
	}
	return nft.FieldIPSaddr
}

func (f Family) daddr() nft.Field {
	if f == IPv6 {
		return nft.FieldIP6Daddr
	}
	return nft.FieldIPDaddr
}

// nfproto is the family's value of nft.FieldNfproto.
func (f Family) nfproto() byte {
	if f == IPv6 {
		return nft.NfprotoIPv6
	}
	return nft.NfprotoIPv4
}

// familyOf is the family of an address.
func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// familyOfValue is the family of an address in nft's encoding (4 or 16 bytes).
func familyOfValue(v nft.Value) Family {
	if len(v) == 4 {
		return IPv4
	}
	return IPv6
}

// familySet is a set of families: those the policy rules are compiled for.
type familySet [2]bool

func (s familySet) has(f Family) bool { return s[f] }

// first is the first family in the set (IPv4 for an empty set).
func (s familySet) first() Family {
	if !s[IPv4] && s[IPv6] {
		return IPv6
	}
	return IPv4
}
