package enforcer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
)

// Programmed returns a copy of the engine's record of what the dataplane
// holds (after its last successful Flush or Reconcile), for tests that check
// a failure leaves it alone.
func (e *Engine) Programmed() *nft.State {
	e.applyMu.Lock()
	defer e.unlockApply()
	return e.programmed.Clone()
}

// TraceFlow sends the first packet of a flow through the forward hook of a
// node's Fake and reports whether it gets through, with the path for failure
// messages. The tests of both packages (enforcer and enforcer_test) trace
// with it.
func TraceFlow(f *nft.Fake, fl Flow) (bool, string) {
	proto, _ := ProtocolNumber(fl.Protocol)
	r := f.Trace(nft.Packet{Hook: nft.HookForward, Src: fl.Src, Dst: fl.Dst, Proto: proto, Dport: fl.Port})
	return r.Accepted(), strings.Join(r.Path, "; ")
}

// FlushToKernel flushes e and checks that the kernel table k reads back as
// e's desired state. The tests of both packages use it.
func FlushToKernel(t *testing.T, step string, e *Engine, k *nft.Kernel) FlushResult {
	t.Helper()
	ctx := context.Background()
	res, err := e.Flush(ctx)
	if err != nil {
		t.Fatalf("%s: flush: %v", step, err)
	}
	got, err := k.Read(ctx)
	if err != nil {
		t.Fatalf("%s: read: %v", step, err)
	}
	if tx := nft.Diff(got, e.Desired(), nil); !tx.Empty() {
		t.Fatalf("%s: kernel differs from desired (%d operations):\n%s", step, tx.Size(), tx)
	}
	return res
}

// TraceFlowLogs is TraceFlow with the prefixes of the log statements the
// packet reached, in order.
func TraceFlowLogs(f *nft.Fake, fl Flow) (ok bool, logs []string, path string) {
	proto, _ := ProtocolNumber(fl.Protocol)
	r := f.Trace(nft.Packet{Hook: nft.HookForward, Src: fl.Src, Dst: fl.Dst, Proto: proto, Dport: fl.Port})
	for _, l := range r.Logged {
		logs = append(logs, l.Prefix)
	}
	return r.Accepted(), logs, strings.Join(r.Path, "; ")
}

// DropSite is the drop site ("np", "admin", "baseline", "claimed",
// "unknown") where the program drops (or, in audit mode, logs) a direction
// Decide denies.
func DropSite(dd DirectionDecision) string {
	switch {
	case dd.Unknown:
		return siteUnknown
	case dd.Conflict && dd.Tier != tierNameAdmin && dd.Tier != tierNameBaseline:
		return siteClaimed
	case dd.Tier == tierNameAdmin:
		return siteAdmin
	case dd.Tier == tierNameBaseline:
		return siteBaseline
	}
	return siteNP
}

// AsNamedIn is a copy of st whose class chains (tierclasses.go) take the
// names of the chains of want that the same elements jump to: an
// incremental build may keep a chain under an earlier class's name
// (moveChains), which a build from scratch does not. The renaming is one to
// one (a chain of st named after two of want, or two after one, keeps its
// name), so st equals want after it only if the two programs are the same
// but for those names. The fresh-build comparisons of both test packages
// use it.
func AsNamedIn(st, want *nft.State) *nft.State {
	isClass := func(s *nft.State, name string) bool {
		ch := s.Chains[name]
		return ch != nil && strings.HasPrefix(ch.Comment, "peer class: ")
	}
	to, from := map[string]string{}, map[string]string{}
	bad := map[string]bool{}
	for name, set := range st.Sets {
		other := want.Sets[name]
		if other == nil {
			continue
		}
		for id, e := range set.Elements.All() {
			o, ok := other.Elements.Get(id)
			if !ok || e.Verdict == nil || o.Verdict == nil || !isClass(st, e.Verdict.Chain) || !isClass(want, o.Verdict.Chain) {
				continue
			}
			g, w := e.Verdict.Chain, o.Verdict.Chain
			if prev, seen := to[g]; seen && prev != w {
				bad[g] = true
			}
			if prev, seen := from[w]; seen && prev != g {
				bad[prev], bad[g] = true, true
			}
			to[g], from[w] = w, g
		}
	}
	out := st.Clone()
	rename := map[string]string{}
	for g, w := range to {
		if !bad[g] && from[w] == g {
			rename[g] = w
		}
	}
	chains := map[string]*nft.Chain{}
	for g, w := range rename {
		c := *out.Chains[g]
		c.Name = w
		chains[w] = &c
	}
	for name, ch := range out.Chains {
		if _, renamed := rename[name]; renamed {
			continue
		}
		if _, taken := chains[name]; taken { // kept apart, to differ from want
			name += " (not renamed)"
		}
		chains[name] = ch
	}
	out.Chains = chains
	for _, set := range out.Sets {
		for e := range set.Elements.Values() {
			if e.Verdict != nil && rename[e.Verdict.Chain] != "" {
				v := *e.Verdict
				v.Chain = rename[v.Chain]
				e.Verdict = &v
				set.Elements.Put(e)
			}
		}
	}
	return out
}

// PeerGroupTag is the tag of the live peer group that desc describes ("pods
// of namespace prod matching {app=cli}"): its elements in the shared peer
// sets carry it.
func (e *Engine) PeerGroupTag(desc string) (nft.Value, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, g := range e.c.groups.byKey {
		if g.spec.desc == desc {
			return nft.TagValue(g.tag), true
		}
	}
	return nil, false
}

// EveryPodNamedSets lists the live every-pod named-port sets whose key
// starts with prefix (a key reads "named ports tcp/http of every pod (v4,
// v6)"), one "<family> <key> <tag>" entry per family whose shared
// named-port set each has a share in, sorted.
func (e *Engine) EveryPodNamedSets(prefix string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ns := range e.c.named.every {
		for _, f := range families {
			if ns.fams.has(f) && strings.HasPrefix(ns.key, prefix) {
				out = append(out, fmt.Sprintf("%s %s %s", f, ns.key, nft.FormatValue(nft.TypeTag, nft.TagValue(ns.tag))))
			}
		}
	}
	slices.Sort(out)
	return out
}

// EveryPodNamedTag is the tag of the live every-pod named-port set of key.
func (e *Engine) EveryPodNamedTag(key string) (nft.Value, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ns := e.c.named.every[key]; ns != nil {
		return nft.TagValue(ns.tag), true
	}
	return nil, false
}

// CollideTags makes every key of e's shared tagged sets hash to one value,
// so that every group and named-port set after the first gets its tag by
// probing. Call it before the engine holds anything.
func CollideTags(e *Engine) {
	collide := func(string) uint32 { return 42 }
	e.c.groups.sets.hash = collide
	e.c.named.sets.hash = collide
}
