package enforcer

import "testing"

// TestTagsProbeOnCollision: with every key hashing to the same value (the
// last one, so that probing wraps), each live key still gets a tag of its
// own, the next free value; a key keeps its tag while it has users, and a
// freed tag goes to the next key that needs it.
func TestTagsProbeOnCollision(t *testing.T) {
	const h = 0xffffffff
	ts := newTaggedSets(newWriter(), "peers", "", peerSetKey)
	ts.hash = func(string) uint32 { return h }
	steps := []struct {
		acquire, release string
		want             uint32 // the acquired key's tag
	}{
		{acquire: "a", want: h},
		{acquire: "b", want: 0}, // wraps
		{acquire: "c", want: 1},
		{acquire: "a", want: h}, // a second user
		{release: "b"},
		{acquire: "d", want: 0}, // b's tag, free again
		{release: "a"},          // a still has a user
		{acquire: "e", want: 2},
		{release: "a"},
		{acquire: "f", want: h},
	}
	for i, s := range steps {
		if s.release != "" {
			ts.releaseTag(s.release)
			continue
		}
		if got := ts.acquireTag(s.acquire); got != s.want {
			t.Errorf("step %d: acquire %s: tag %#x, want %#x", i, s.acquire, got, s.want)
		}
	}
	seen := map[uint32]string{}
	for key, tag := range ts.tags {
		if other, dup := seen[tag]; dup {
			t.Errorf("keys %s and %s share tag %#x", key, other, tag)
		}
		seen[tag] = key
		if ts.tag(key) != tag || ts.keys[tag] != key {
			t.Errorf("key %s: tag %#x, but tag(key) %#x and keys[tag] %q", key, tag, ts.tag(key), ts.keys[tag])
		}
	}
	if want := []string{"c", "d", "e", "f"}; len(ts.tags) != len(want) {
		t.Errorf("live keys %v, want %v", ts.tags, want)
	}
}
