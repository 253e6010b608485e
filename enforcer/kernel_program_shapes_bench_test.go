package enforcer_test

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/nftwarden/nftwarden/nft"
)

// BenchmarkKernelProgramShapes asks what loading the 100,000-pod node would
// cost with fewer sets, before anyone reshapes the program for it: it
// programs, against the same floor as BenchmarkKernelEngineProgram
// (elementsFloor, alternated per iteration), the node's sets and elements
// alone (sets-only: no chains, no rules, no verdict maps, which name
// chains), and the same elements merged into one set per key signature
// (merged: each plain set's elements keyed by the set's index and the
// address, as a concatenated "group . address" set would hold them; the
// interval sets stay as they are). What sets-only costs over the floor is
// the price of the elements and sets whatever the rules; what merged saves
// on it is the most that fewer sets could save. (Written before the tagged
// sets: the node's 2,874 sets were then one per group; its 134 sets today
// are already merged by key type, taggedsets.go, and merged only cuts
// them further.) Needs CAP_NET_ADMIN.
func BenchmarkKernelProgramShapes(b *testing.B) {
	g := newGenCluster(100_000)
	e, _ := g.build(b, nil)
	node := e.Desired()
	shapes := []struct {
		name  string
		state *nft.State
	}{
		{"sets-only", setsOnly(node)},
		{"merged", mergedSets(node)},
	}
	for _, s := range shapes {
		b.Run(s.name, func(b *testing.B) {
			benchKernelStateApply(b, s.state)
		})
	}
}

// setsOnly is node's plain and interval sets with their elements.
func setsOnly(node *nft.State) *nft.State {
	out := nft.NewState()
	for name, s := range node.Sets {
		if !s.VerdictMap {
			out.Sets[name] = s
		}
	}
	return out
}

// mergedSets is node's elements in one set per key signature: every plain
// set's elements keyed by (the set's index . its key); interval sets are
// kept as they are (a concatenated interval set is another structure).
func mergedSets(node *nft.State) *nft.State {
	out := nft.NewState()
	names := make([]string, 0, len(node.Sets))
	for name := range node.Sets {
		names = append(names, name)
	}
	sort.Strings(names)
	merged := map[string]*nft.Set{}
	for i, name := range names {
		s := node.Sets[name]
		switch {
		case s.VerdictMap:
			continue
		case s.Interval:
			out.Sets[name] = s
			continue
		}
		// The index rides in a 4-byte component: the kernel only counts the
		// key's length; the type is nft's metadata.
		sig := fmt.Sprint(s.Key)
		m := merged[sig]
		if m == nil {
			m = &nft.Set{
				Name: "merged-" + strings.NewReplacer(" ", "-", "[", "", "]", "").Replace(sig),
				Key:  append([]nft.KeyType{nft.TypeIPv4Addr}, s.Key...),
			}
			merged[sig] = m
			out.Sets[m.Name] = m
		}
		idx := nft.Value(binary.BigEndian.AppendUint32(nil, uint32(i)))
		for el := range s.Elements.Values() {
			me := nft.Element{Key: append([]nft.Value{idx}, el.Key...)}
			m.PutElements(me)
		}
	}
	return out
}
