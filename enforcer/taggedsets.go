package enforcer

import (
	"hash/fnv"

	"github.com/nftwarden/nftwarden/nft"
)

// taggedSets is one kind of set shared by many groups: one set per family
// ("peers-v4", "named-v6", ...) whose key ends in a tag (nft.TypeTag), and a
// tag per group (a peer group, a named-port set), carried by each of its
// elements and supplied by each lookup that asks about the group
// (`ip saddr . 0x0000002a @peers-v4`).
//
// Why: the kernel finds a set by walking the table's set list and comparing
// names, to create one and to resolve each set a rule or an element message
// names. A node with a thousand peer groups and a thousand named-port sets
// paid that walk per set and per rule, quadratically; merged, it walks past
// a handful (PROGRAM.md, "What loading the 100,000-pod node ... costs").
//
// A tag is a hash of the group's key, so that the same cluster gives the same
// table after a restart; on a collision with the live tag of another key it
// probes to the next free value, since two groups sharing a tag would share
// elements. (Which of two colliding keys gets the hash then depends on the
// order they came in, so after a restart the two may trade tags: the first
// reconcile rewrites their elements and rules, which is correct, only not
// free. With 32-bit tags that needs two live keys out of ~4 billion values.)
//
// The set of a family exists while some group uses the family (use and
// unuse), so a family no local pod has costs nothing (PROGRAM.md,
// "Families").
type taggedSets struct {
	w       *writer
	prefix  string // the sets' names: prefix + "-" + family
	key     func(Family) []nft.KeyType
	comment string
	hash    func(string) uint32
	tags    map[string]uint32 // live key -> its tag
	keys    map[uint32]string // live tag -> its key
	refs    map[string]int    // live key -> its users
	users   [2]int            // per Family: groups using the family's set
}

func newTaggedSets(w *writer, prefix, comment string, key func(Family) []nft.KeyType) *taggedSets {
	ts := &taggedSets{w: w, prefix: prefix, key: key, comment: comment, hash: fnvTag,
		tags: map[string]uint32{}, keys: map[uint32]string{}, refs: map[string]int{}}
	for _, f := range families {
		// Too big to copy at the first change after a snapshot.
		w.journal(ts.name(f))
	}
	return ts
}

// fnvTag is the preferred tag of a key: its 32-bit FNV-1a hash.
func fnvTag(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()
}

// name is the shared set of family f.
func (ts *taggedSets) name(f Family) string { return ts.prefix + "-" + f.String() }

// acquireTag counts one more user of key's tag, allocating it for the first:
// the key's hash, or the next value no live key holds.
func (ts *taggedSets) acquireTag(key string) uint32 {
	ts.refs[key]++
	if t, ok := ts.tags[key]; ok {
		return t
	}
	t := ts.hash(key)
	for {
		if _, taken := ts.keys[t]; !taken {
			break
		}
		t++
	}
	ts.tags[key], ts.keys[t] = t, key
	return t
}

// releaseTag counts one user of key's tag less, freeing it with the last.
func (ts *taggedSets) releaseTag(key string) {
	if ts.refs[key]--; ts.refs[key] > 0 {
		return
	}
	delete(ts.refs, key)
	delete(ts.keys, ts.tags[key])
	delete(ts.tags, key)
}

// tag is the live tag of key. A key without one (never: a rule names only a
// group it holds) gets its hash, which no element of its own carries, so the
// lookup matches at most what a colliding group holds rather than failing.
func (ts *taggedSets) tag(key string) uint32 {
	if t, ok := ts.tags[key]; ok {
		return t
	}
	return ts.hash(key)
}

// lookup is the match of fields (of family f) followed by key's tag in the
// family's set.
func (ts *taggedSets) lookup(f Family, key string, fields ...nft.Field) nft.Lookup {
	return nft.Lookup{Fields: fields, Set: ts.name(f), Tag: nft.TagValue(ts.tag(key))}
}

// use counts one more group using family f's set, creating it for the first.
func (ts *taggedSets) use(f Family) {
	if ts.users[f]++; ts.users[f] == 1 {
		ts.w.putSet(nft.Set{Name: ts.name(f), Key: ts.key(f), Comment: ts.comment + " (" + f.String() + ")"}, 0)
	}
}

// unuse counts one group less using family f's set, deleting it with the
// last (whose elements are gone by then).
func (ts *taggedSets) unuse(f Family) {
	if ts.users[f]--; ts.users[f] == 0 {
		ts.w.deleteSet(ts.name(f))
	}
}
