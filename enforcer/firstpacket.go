package enforcer

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"github.com/nftwarden/nftwarden/nft"
)

// First-packet isolation (PROGRAM.md, "First-packet isolation";
// Config.PodCIDRs, Engine.SetPodCIDRs). The engine learns a pod's address
// from its status, which the kubelet writes after the sandbox is up: until
// it arrives, the pod is no pod of the program, and no policy isolates it.
// With the node's pod CIDRs known, every address in them is a pod of this
// node, so an address in them that the engine does not know as a local pod
// is a pod not programmed yet (or a stale one): its new connections are
// dropped, both ways, until its pod is upserted and flushed.
//
// The program: per family an interval set of the pod CIDRs and a plain set
// of the addresses of the node's known pods (active, local, not
// hostNetwork), and on each side one rule per family that has pod
// CIDRs, `ip saddr @pod-cidrs-v4 ip saddr != @local-pods-v4 counter drop`
// on the egress side of the base chain (the source), the same on daddr in the ingress chain
// (the destination). The drop goes through the drop sites (logs.go, site
// "unknown"): logged with Config.LogDenied, logged and accepted with
// Config.Audit. Pod changes send only the elements of the known set whose
// presence changes (a label change none); the rules change only when a
// family gains or loses its pod CIDRs.

// podCIDRsSet and localPodsSet name the sets of a family.
func podCIDRsSet(f Family) string  { return podCIDRsPrefix + f.String() }
func localPodsSet(f Family) string { return "local-pods-" + f.String() }

const podCIDRsPrefix = "pod-cidrs-"

// isPodCIDRsSet reports whether a set of the program is a pod-CIDRs set,
// whose additions restrict (restricts, revoke.go).
func isPodCIDRsSet(name string) bool { return strings.HasPrefix(name, podCIDRsPrefix) }

// unknownComments[dir] say what the rule of the base chain of dir drops.
var unknownComments = [2]string{
	"to an address of the node's pod CIDRs that is no known local pod's: dropped until the pod is programmed",
	"from an address of the node's pod CIDRs that is no known local pod's: dropped until the pod is programmed",
}

// firstPacket is the compiler part that owns first-packet isolation: the
// sets above, the rules the base chain and the ingress chain take from it, and the site chains
// of the unknown site.
type firstPacket struct {
	w   *writer
	m   *model
	log *logging
	// cidrs are the pod CIDRs in force per family: sorted, none inside
	// another (an interval set holds no overlapping elements).
	cidrs [2][]netip.Prefix
	// known counts the local active pods claiming each address (IP reuse:
	// several may), kept while isolation is off too, so that turning it on
	// needs no walk over the pods.
	known map[netip.Addr]int
}

func newFirstPacket(w *writer, m *model, log *logging) *firstPacket {
	return &firstPacket{w: w, m: m, log: log, known: map[netip.Addr]int{}}
}

// on reports whether isolation is on: some pod CIDR is set.
func (fp *firstPacket) on() bool { return len(fp.cidrs[IPv4])+len(fp.cidrs[IPv6]) > 0 }

// rules are the rules of the base chain of dir: per family with pod
// CIDRs, drop (at the unknown site) what comes from (egress) or goes to
// (ingress) an address in them that no local pod has.
func (fp *firstPacket) rules(dir Direction) []nft.Rule {
	var rules []nft.Rule
	for _, f := range families {
		if len(fp.cidrs[f]) == 0 {
			continue
		}
		addr := []nft.Field{dir.podField(f)}
		rules = append(rules, nft.Rule{Exprs: []nft.Expr{
			nft.Lookup{Fields: addr, Set: podCIDRsSet(f)},
			nft.Lookup{Fields: addr, Set: localPodsSet(f), Neq: true},
			nft.Counter{},
			fp.log.dropVerdict(dir, siteUnknown),
		}, Comment: unknownComments[dir]})
	}
	return rules
}

// set makes cidrs (valid, canonical: checkPodCIDRs) the pod CIDRs in
// force and reports whether the rules of the base and ingress chains change (a family gained
// or lost its CIDRs). The sets change by the elements that differ.
func (fp *firstPacket) set(cidrs []netip.Prefix) (rulesChanged bool) {
	next := podCIDRsByFamily(cidrs)
	wasOn := fp.on()
	isOn := len(next[IPv4])+len(next[IPv6]) > 0
	for _, f := range families {
		rulesChanged = rulesChanged || (len(fp.cidrs[f]) > 0) != (len(next[f]) > 0)
	}
	switch {
	case isOn && !wasOn:
		for _, f := range families {
			fp.w.putSet(nft.Set{Name: podCIDRsSet(f), Key: []nft.KeyType{f.addrType()}, Interval: true,
				Comment: "the node's pod CIDRs (" + f.String() + ")"}, len(next[f]))
			fp.w.putSet(nft.Set{Name: localPodsSet(f), Key: []nft.KeyType{f.addrType()},
				Comment: "addresses of the node's known pods (" + f.String() + ")"}, 0)
		}
		for a := range fp.known {
			fp.w.addElement(localPodsSet(familyOf(a)), addrElement(a))
		}
		fp.log.putSiteChains(siteUnknown)
	case !isOn && wasOn:
		for _, f := range families {
			fp.w.deleteSet(podCIDRsSet(f))
			fp.w.deleteSet(localPodsSet(f))
		}
		fp.log.deleteSiteChains(siteUnknown)
	}
	if isOn {
		for _, f := range families {
			for _, p := range fp.cidrs[f] {
				if !slices.Contains(next[f], p) {
					fp.w.delElement(podCIDRsSet(f), prefixElement(p))
				}
			}
			for _, p := range next[f] {
				if !slices.Contains(fp.cidrs[f], p) {
					fp.w.addElement(podCIDRsSet(f), prefixElement(p))
				}
			}
		}
	}
	fp.cidrs = next
	fp.m.local.podCIDRs = append(slices.Clone(next[IPv4]), next[IPv6]...)
	return rulesChanged
}

// localChanged follows a pod of this node: old and cur are its records
// while it was and is a local active pod (nil when it was or is not). Only
// the addresses whose presence among the known ones changes are sent: a
// label change sends nothing.
func (fp *firstPacket) localChanged(old, cur *podRecord) {
	var was, is []netip.Addr
	if old != nil {
		was = old.IPs
	}
	if cur != nil {
		is = cur.IPs
	}
	for _, a := range was {
		if slices.Contains(is, a) {
			continue
		}
		if fp.known[a]--; fp.known[a] <= 0 {
			delete(fp.known, a)
			if fp.on() {
				fp.w.delElement(localPodsSet(familyOf(a)), addrElement(a))
			}
		}
	}
	for _, a := range is {
		if slices.Contains(was, a) {
			continue
		}
		if fp.known[a]++; fp.known[a] == 1 && fp.on() {
			fp.w.addElement(localPodsSet(familyOf(a)), addrElement(a))
		}
	}
}

// prefixElement is the interval-set element of a prefix.
func prefixElement(p netip.Prefix) nft.Element {
	e := addrElement(p.Addr())
	if last := prefixLast(p); last != p.Addr() {
		e.KeyEnd = []nft.Value{nft.AddrValue(last)}
	}
	return e
}

// podCIDRsByFamily splits valid canonical prefixes by family, sorted, and
// leaves out those inside another (prefixes nest or are disjoint, so the
// rest cover the same addresses without overlapping).
func podCIDRsByFamily(cidrs []netip.Prefix) [2][]netip.Prefix {
	sorted := slices.Clone(cidrs)
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var out [2][]netip.Prefix
	for _, p := range sorted {
		f := familyOf(p.Addr())
		if n := len(out[f]); n > 0 && out[f][n-1].Overlaps(p) {
			continue // inside the one before (same start: fewer bits first)
		}
		out[f] = append(out[f], p)
	}
	return out
}

// checkPodCIDRs reports the prefixes that cannot be pod CIDRs: invalid,
// IPv4-mapped IPv6, or not canonical (host bits set: 198.18.1.7/24 is
// probably a mistake for an address, and is refused rather than guessed).
func checkPodCIDRs(cidrs []netip.Prefix) error {
	var errs []error
	for _, p := range cidrs {
		switch {
		case !p.IsValid():
			errs = append(errs, fmt.Errorf("pod CIDR %s: invalid prefix", p))
		case p.Addr().Is4In6():
			errs = append(errs, fmt.Errorf("pod CIDR %s: IPv4-mapped prefixes are not supported", p))
		case p != p.Masked():
			errs = append(errs, fmt.Errorf("pod CIDR %s: not canonical (host bits set; %s?)", p, p.Masked()))
		}
	}
	return errors.Join(errs...)
}

// configPodCIDRs is Config.PodCIDRs as New takes them, which cannot report
// an error: non-canonical prefixes are masked (the same addresses), invalid
// ones logged and left out.
func configPodCIDRs(cidrs []netip.Prefix, log *slog.Logger) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, p := range cidrs {
		if p.IsValid() {
			p = p.Masked()
		}
		if err := checkPodCIDRs([]netip.Prefix{p}); err != nil {
			log.Error("pod CIDR left out: first-packet isolation does not cover it", "error", err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// SetPodCIDRs replaces the node's pod CIDRs (Config.PodCIDRs; the daemon
// learns them from its Node after start); nil or empty turns first-packet
// isolation off. Invalid or non-canonical prefixes are an error, and
// nothing changes. It takes effect at the next Flush, which sends the
// elements that differ (the base and ingress chains' rules change only when isolation
// turns on or off for a family).
func (e *Engine) SetPodCIDRs(cidrs []netip.Prefix) error {
	if err := checkPodCIDRs(cidrs); err != nil {
		return fmt.Errorf("enforcer: set pod CIDRs: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.c.setPodCIDRs(cidrs)
	return nil
}

// unknownAt reports whether first-packet isolation drops the connections
// of address a, claimed by claimants (the active pods at a): it is inside
// the node's pod CIDRs and none of them is a local pod.
func unknownAt(m *model, a netip.Addr, claimants []*podRecord) bool {
	if !a.IsValid() || !slices.ContainsFunc(m.local.podCIDRs, func(p netip.Prefix) bool { return p.Contains(a.Unmap()) }) {
		return false
	}
	return !slices.ContainsFunc(claimants, func(p *podRecord) bool { return m.local.get(p.ID) != nil })
}
