package enforcer

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// Names of the fixed objects of the program (PROGRAM.md).
const (
	chainForward = "forward"
	chainIngress = "ingress"
	// chainEgressAllowed is where the policy chains' egress allows go
	// (policyAllow), on to the ingress side.
	chainEgressAllowed = "allow-egress"
)

// vmapName is the dispatch verdict map of a direction and family, e.g.
// "ingress-v4".
func vmapName(dir Direction, f Family) string { return dir.String() + "-" + f.String() }

// Object names. Chains of pods and policies carry the object's "ns/name", so
// that `nft list table` reads like the cluster: the kernel finds a chain by a
// hash of its name, whatever its length. Sets keep short hashed names (a
// rule that names a set makes the kernel walk the table's sets comparing
// names) and say what they hold in their comments. Every name is stable
// across restarts.

// shortHash is a deterministic 16-hex-digit digest.
func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// podChainName is the pod chain of a local pod, e.g. "pod-in-shop/db-0".
func podChainName(dir Direction, podID string) string {
	return readableName("pod-"+dir.short()+"-", podID)
}

// policyChainName is the chain of a policy direction, e.g.
// "pol-eg-shop/db-egress".
func policyChainName(dir Direction, policyID string) string {
	return readableName("pol-"+dir.short()+"-", policyID)
}

// maxChainName caps the names readableName makes. The kernel takes 255
// bytes; a listing stays readable well below that, and every Kubernetes
// "ns/name" of up to 100 bytes keeps its whole name.
const maxChainName = 110

// readableName is prefix+id when id holds only characters that nft prints
// in a bare identifier (those of Kubernetes names, and "/") and the whole
// fits maxChainName. Otherwise it is prefix, the longest such start of id
// that fits, "_" and a hash of id: Kubernetes names never hold "_", so a cut
// name never equals a whole one, and the hash keeps cut names apart.
func readableName(prefix, id string) string {
	clean := len(id)
	for i := 0; i < len(id); i++ {
		if !nameChar(id[i]) {
			clean = i
			break
		}
	}
	if clean == len(id) && len(prefix)+len(id) <= maxChainName {
		return prefix + id
	}
	hash := shortHash(id)
	keep := min(clean, maxChainName-len(prefix)-1-len(hash))
	return prefix + id[:keep] + "_" + hash
}

// nameChar reports whether nft prints c as part of a bare identifier and
// Kubernetes names may hold it.
func nameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '/'
}

// wholeName reports whether a name made by readableName holds the whole id:
// a jump to a chain whose name was cut carries a comment naming the object.
func wholeName(name string) bool { return !strings.Contains(name, "_") }

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

func cidrSetName(f Family, key string) string { return "cidr-" + f.String() + "-" + shortHash(key) }
func portsSetName(key string) string          { return "ports-" + shortHash(key) }

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
