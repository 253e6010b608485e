package enforcer

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"unicode/utf8"

	"github.com/nftwarden/nftwarden/nft"
)

// Names of the fixed objects of the program (PROGRAM.md).
const (
	chainEgress  = "egress"
	chainIngress = "ingress"
)

// Directions and families index small arrays throughout the compiler.
const (
	dirIngress = 0
	dirEgress  = 1

	famV4 = 0
	famV6 = 1
)

var (
	dirNames  = [2]string{"ingress", "egress"}
	dirShort  = [2]string{"in", "eg"}
	famNames  = [2]string{"v4", "v6"}
	addrTypes = [2]nft.KeyType{nft.TypeIPv4Addr, nft.TypeIPv6Addr}
	// vmapNames[dir][fam] are the dispatch verdict maps.
	vmapNames = [2][2]string{{"ingress-v4", "ingress-v6"}, {"egress-v4", "egress-v6"}}
	// saddr/daddr fields per family.
	saddrFields = [2]nft.Field{nft.FieldIPSaddr, nft.FieldIP6Saddr}
	daddrFields = [2]nft.Field{nft.FieldIPDaddr, nft.FieldIP6Daddr}
)

// shortHash is a deterministic 16-hex-digit digest: names stay well under nft's
// limits (prefix + hash <= 40 chars) and are stable across restarts.
func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func podChainName(dir int, podID string) string {
	return "pod-" + dirShort[dir] + "-" + shortHash(podID)
}
func policyChainName(dir int, policyID string) string {
	return "pol-" + dirShort[dir] + "-" + shortHash(policyID)
}

// peerChainName names the peer chain of a group: "from-<hash>" for ingress,
// "to-<hash>" for egress.
func peerChainName(dir int, groupKey string) string {
	return [2]string{"from-", "to-"}[dir] + shortHash(groupKey)
}
func peerSetName(fam int, key string) string  { return "peer-" + famNames[fam] + "-" + shortHash(key) }
func cidrSetName(fam int, key string) string  { return "cidr-" + famNames[fam] + "-" + shortHash(key) }
func portsSetName(key string) string          { return "ports-" + shortHash(key) }
func namedSetName(fam int, key string) string { return "named-" + famNames[fam] + "-" + shortHash(key) }

// maxComment is the longest comment the program carries, as nft allows
// (NFTNL_UDATA_COMMENT_MAXLEN). A set's comment travels in its userdata,
// which the kernel caps at 256 bytes, so a longer one (a policy with
// thousands of ports or except blocks, names at the API's length limits)
// would make it reject the whole transaction. Names are hashes of the full
// key, so a cut comment never makes two objects one.
const maxComment = 128

// comment returns s cut to maxComment bytes (on a UTF-8 boundary, ending in
// "...") if it is longer.
func comment(s string) string {
	if len(s) <= maxComment {
		return s
	}
	cut := maxComment - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// famOf is the family index of an address.
func famOf(a netip.Addr) int {
	if a.Is4() {
		return famV4
	}
	return famV6
}
