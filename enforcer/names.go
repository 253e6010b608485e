package enforcer

import (
	"crypto/sha256"
	"encoding/hex"
	"unicode/utf8"
)

// Names of the fixed objects of the program (PROGRAM.md).
const (
	chainEgress  = "egress"
	chainIngress = "ingress"
)

// vmapName is the dispatch verdict map of a direction and family, e.g.
// "ingress-v4".
func vmapName(dir Direction, f Family) string { return dir.String() + "-" + f.String() }

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

func podChainName(dir Direction, podID string) string {
	return "pod-" + dir.short() + "-" + shortHash(podID)
}
func policyChainName(dir Direction, policyID string) string {
	return "pol-" + dir.short() + "-" + shortHash(policyID)
}

// peerChainName names the peer chain of a group: "from-<hash>" for ingress,
// "to-<hash>" for egress.
func peerChainName(dir Direction, groupKey string) string {
	if dir == Egress {
		return "to-" + shortHash(groupKey)
	}
	return "from-" + shortHash(groupKey)
}

// peerChainComment says what a peer chain matches, e.g. "ingress from pods
// of namespace shop matching {app=web}".
func peerChainComment(dir Direction, desc string) string {
	if dir == Egress {
		return "egress to " + desc
	}
	return "ingress from " + desc
}

func peerSetName(f Family, key string) string  { return "peer-" + f.String() + "-" + shortHash(key) }
func cidrSetName(f Family, key string) string  { return "cidr-" + f.String() + "-" + shortHash(key) }
func portsSetName(key string) string           { return "ports-" + shortHash(key) }
func namedSetName(f Family, key string) string { return "named-" + f.String() + "-" + shortHash(key) }

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
