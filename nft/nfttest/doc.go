// Package nfttest helps privileged tests of nftwarden's nftables code: it
// creates throwaway network namespaces (so no test touches the machine's own
// ruleset), lists tables in them with the real nft binary, and normalizes nft
// listings so that golden comparisons do not depend on element or block order.
//
// It is for tests only; the library never runs the nft binary.
package nfttest
