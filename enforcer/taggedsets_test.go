package enforcer_test

import (
	"strings"

	"github.com/nftwarden/nftwarden/nft"
)

// hasTaggedElement reports whether a set of s whose name starts with
// prefix (a kind and family of the shared tagged sets, "peers-v4-") holds e.
func hasTaggedElement(s *nft.State, prefix string, e nft.Element) bool {
	for name, st := range s.Sets {
		if st.Elements.Contains(e) && strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// withoutTaggedRules is s without the rules that look a tag up in a shared
// set: nft 1.0.6 cannot read them from a script (nft.Transaction.Format),
// whatever the spelling, though it reads their sets and elements. The
// netlink path programs and reads them back (FlushToKernel).
func withoutTaggedRules(s *nft.State) *nft.State {
	for _, c := range s.Chains {
		var kept []nft.Rule
		for _, r := range c.Rules {
			if !hasTaggedLookup(r) {
				kept = append(kept, r)
			}
		}
		c.Rules = kept
	}
	return s
}

func hasTaggedLookup(r nft.Rule) bool {
	for _, x := range r.Exprs {
		if l, ok := x.(nft.Lookup); ok && l.Tag != nil {
			return true
		}
	}
	return false
}
