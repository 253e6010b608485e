package enforcer

import (
	"hash/fnv"
	"strconv"

	"github.com/nftwarden/nftwarden/nft"
)

// taggedSets is one kind of set shared by many groups: a few sets per
// family ("peers-v4-0" ... "peers-v4-31", "named-v6-3", ...) whose key ends
// in a tag (nft.TypeTag), and a tag per group (a peer group, a named-port
// set), carried by each of its elements and supplied by each lookup that
// asks about the group (`ip saddr . 0x0000002a @peers-v4-10`). A group's
// share is in the set of its tag modulo tagShards.
//
// Why: the kernel finds a set by walking the table's set list and comparing
// names, to create one and to resolve each set a rule or an element message
// names. A node with a thousand peer groups and a thousand named-port sets
// paid that walk per set and per rule, quadratically; merged, it walks past
// a few dozen (PROGRAM.md, "Tagged sets").
//
// Why a few dozen sets rather than one per family: the kernel's hash sets
// (rhashtable) grow by doubling while a batch fills them, and an element
// inserted while a resize is under way takes the slow path; one set of the
// 166,000 IPv4 peer addresses of the 100,000-pod node spends most of its
// load there, smaller ones do not. That node's tagged elements alone load
// at 1.58x the floor in one set per family and kind and 1.14x in eight; the
// whole node takes about 20% less CPU in eight sets than in one, and 10%
// less again in 32 (PROGRAM.md).
//
// A tag is a hash of the group's key, so that the same cluster gives the same
// table after a restart; on a collision with the live tag of another key it
// probes to the next free value, since two groups sharing a tag would share
// elements. (Which of two colliding keys gets the hash then depends on the
// order they came in, so after a restart the two may trade tags: the first
// reconcile rewrites their elements and rules, which is correct, only not
// free. With 32-bit tags that needs two live keys out of ~4 billion values.)
//
// A set exists while some group uses it (use and unuse), so a family no
// local pod has costs nothing (PROGRAM.md, "Families").
type taggedSets struct {
	w       *writer
	prefix  string // the sets' names: prefix + "-" + family
	key     func(Family) []nft.KeyType
	comment string
	hash    func(string) uint32
	tags    map[string]uint32 // live key -> its tag
	keys    map[uint32]string // live tag -> its key
	refs    map[string]int    // live key -> its users
	users   map[string]int    // set name -> groups with a share in it
	// names are the sets' names by family and shard: name is asked for
	// each element a group adds or deletes.
	names [2][tagShards]string
}

// tagShards is the number of sets of a family a kind of tagged set is cut
// into (by tag).
const tagShards = 32

func newTaggedSets(w *writer, prefix, comment string, key func(Family) []nft.KeyType) *taggedSets {
	ts := &taggedSets{w: w, prefix: prefix, key: key, comment: comment, hash: fnvTag,
		tags: map[string]uint32{}, keys: map[uint32]string{}, refs: map[string]int{}, users: map[string]int{}}
	for _, f := range families {
		for shard := range uint32(tagShards) {
			ts.names[f][shard] = prefix + "-" + f.String() + "-" + strconv.Itoa(int(shard))
			// Too big to copy at the first change after a snapshot.
			w.journal(ts.name(f, shard))
		}
	}
	return ts
}

// fnvTag is the preferred tag of a key: its 32-bit FNV-1a hash.
func fnvTag(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()
}

// name is the shared set of family f that holds the elements of tag t.
func (ts *taggedSets) name(f Family, t uint32) string {
	return ts.names[f][t%tagShards]
}

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
// family's set of that tag.
func (ts *taggedSets) lookup(f Family, key string, fields ...nft.Field) nft.Lookup {
	t := ts.tag(key)
	return nft.Lookup{Fields: fields, Set: ts.name(f, t), Tag: nft.TagValue(t)}
}

// use counts one more group with a share (tag t) in family f's set of t,
// creating the set for the first.
func (ts *taggedSets) use(f Family, t uint32) {
	name := ts.name(f, t)
	if ts.users[name]++; ts.users[name] == 1 {
		ts.w.putSet(nft.Set{Name: name, Key: ts.key(f), Comment: ts.comment + " (" + f.String() + ")"}, 0)
	}
}

// unuse counts one group less with a share in family f's set of tag t,
// deleting the set with the last.
func (ts *taggedSets) unuse(f Family, t uint32) {
	name := ts.name(f, t)
	if ts.users[name]--; ts.users[name] == 0 {
		delete(ts.users, name)
		ts.w.deleteSet(name)
	}
}

// last reports whether the share of tag t is the only one in family f's
// set: dropping it drops the set, elements and all.
func (ts *taggedSets) last(f Family, t uint32) bool { return ts.users[ts.name(f, t)] == 1 }
