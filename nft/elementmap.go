package nft

import (
	"encoding/binary"
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// ElementMap holds a set's elements by ElementID. It is a reference, as a
// Go map is: a copy of an ElementMap (of a Set copied by value,
// State.CloneSharingElements) shares the elements with the original, and
// Clone makes one of its own. The zero ElementMap is empty and cannot be
// written to (as a nil map): NewElements makes one, Set.PutElements makes
// one when the set has none yet.
//
// Why not a map[string]Element: a big node's shared tagged sets hold
// 200,000 elements, each an ID string, a key object (a []Value header
// array and its bytes) and a map slot of four pointers: half of the
// engine's live heap and 600,000 objects that the collector marks in every
// cycle of the engine's start-up (BenchmarkEngineFullBuild, about 40% of
// its CPU in the collector). A plain set whose key has a fixed length of at
// most maxPackedKey bytes (addresses, tags, ports, protocols: the tagged
// sets, the port and address sets) keeps each element as its key's bytes
// only, in a map without pointers, which the collector never scans; its IDs
// and Elements are made when asked for (Get, All, Values). Every other set
// (interval sets, verdict maps, interface names) keeps the map by ID.
//
// Both forms mean the same: an element's identity is its ID (ElementID), in
// a packed map as in the other, so that the order of operations a Diff
// sends and every golden listing are what they were.
type ElementMap struct{ st *elementStore }

// maxPackedKey is the longest key a packed ElementMap holds: enough for an
// IPv6 address, a protocol, a port and a tag (the named-port sets).
const maxPackedKey = 24

// ElementKey is a plain element's key in packed form: its values
// concatenated, zero after the last. Only a packed ElementMap reads it
// (ElementMap.PutKey), for the set's key types.
type ElementKey [maxPackedKey]byte

// elementStore is an ElementMap's content: byID, or (keyLen > 0) small or
// large by packed key.
type elementStore struct {
	key []KeyType // the set's key types
	// keyLen is the length of a packed key (the sum of the key types'
	// lengths), 0 for a store by ID.
	keyLen int
	byID   map[string]Element
	// small holds keys of at most 8 bytes as a number (an IPv4 address and
	// a tag, most of a big node's elements): Go's maps look 8-byte keys up
	// on a faster path, and each slot is 8 bytes rather than 24.
	small map[uint64]struct{}
	large map[ElementKey]struct{}
}

// packable reports the length of the packed key of set s's elements, 0 if
// they are not kept packed: an interval set, a verdict map, a key type of
// variable text (ifname) or a key too long.
func packable(s *Set) int {
	if s.Interval || s.VerdictMap || len(s.Key) == 0 {
		return 0
	}
	n := 0
	for _, t := range s.Key {
		switch t {
		case TypeIPv4Addr, TypeIPv6Addr, TypeInetProto, TypeInetService, TypeTag:
			n += t.Len()
		default:
			return 0
		}
	}
	if n > maxPackedKey {
		return 0
	}
	return n
}

// NewElements returns an empty ElementMap for the elements of set s (its
// key types and kind decide the form: see ElementMap) with room for n.
func NewElements(s *Set, n int) ElementMap {
	st := &elementStore{key: s.Key, keyLen: packable(s)}
	switch {
	case st.keyLen == 0:
		st.byID = make(map[string]Element, n)
	case st.keyLen <= 8:
		st.small = make(map[uint64]struct{}, n)
	default:
		st.large = make(map[ElementKey]struct{}, n)
	}
	return ElementMap{st}
}

// ElementsOf returns a new ElementMap for set s holding elems.
func ElementsOf(s *Set, elems ...Element) ElementMap {
	m := NewElements(s, len(elems))
	for _, e := range elems {
		m.Put(e)
	}
	return m
}

// PutElements puts elems into s, making its ElementMap if it has none.
func (s *Set) PutElements(elems ...Element) {
	if s.Elements.st == nil {
		s.Elements = NewElements(s, len(elems))
	}
	for _, e := range elems {
		s.Elements.Put(e)
	}
}

// Len is the number of elements.
func (m ElementMap) Len() int {
	switch st := m.st; {
	case st == nil:
		return 0
	case st.keyLen == 0:
		return len(st.byID)
	case st.small != nil:
		return len(st.small)
	}
	return len(m.st.large)
}

// Packed reports whether the map keeps its elements packed (see ElementMap).
func (m ElementMap) Packed() bool { return m.st != nil && m.st.keyLen > 0 }

// Shares reports whether m and o are the same map (a copy shares it).
func (m ElementMap) Shares(o ElementMap) bool { return m.st != nil && m.st == o.st }

func (m ElementMap) store() *elementStore {
	if m.st == nil {
		panic("nft: write to an ElementMap not made by NewElements")
	}
	return m.st
}

// Put adds e, or replaces the element of its ID.
func (m ElementMap) Put(e Element) {
	st := m.store()
	if st.keyLen > 0 {
		if k, ok := st.pack(e); ok {
			st.putKey(k)
			return
		}
		st.unpack()
	}
	st.byID[st.id(e)] = e
}

// PutKey adds the element of packed key k (of the map's key types:
// PackElement, AddrTagKey).
func (m ElementMap) PutKey(k ElementKey) {
	st := m.store()
	if st.keyLen == 0 {
		e := st.element(k)
		st.byID[st.id(e)] = e
		return
	}
	st.putKey(k)
}

// DeleteKey deletes the element of packed key k, if present.
func (m ElementMap) DeleteKey(k ElementKey) {
	st := m.store()
	if st.keyLen == 0 {
		delete(st.byID, st.id(st.element(k)))
		return
	}
	st.deleteKey(k)
}

// HasKey reports whether the element of packed key k is present.
func (m ElementMap) HasKey(k ElementKey) bool {
	st := m.st
	switch {
	case st == nil:
		return false
	case st.keyLen == 0:
		_, ok := st.byID[st.id(st.element(k))]
		return ok
	}
	return st.hasKey(k)
}

// Delete deletes the element of e's ID, if present.
func (m ElementMap) Delete(e Element) {
	st := m.st
	switch {
	case st == nil:
	case st.keyLen == 0:
		delete(st.byID, st.id(e))
	default:
		// An element that does not fit the packed form has an ID no packed
		// key has (parseID): it is absent.
		if k, ok := st.pack(e); ok {
			st.deleteKey(k)
		}
	}
}

// DeleteID deletes the element of ID id, if present.
func (m ElementMap) DeleteID(id string) {
	st := m.st
	switch {
	case st == nil:
	case st.keyLen == 0:
		delete(st.byID, id)
	default:
		if k, ok := st.parseID(id); ok {
			st.deleteKey(k)
		}
	}
}

// Get returns the element of ID id.
func (m ElementMap) Get(id string) (Element, bool) {
	st := m.st
	switch {
	case st == nil:
		return Element{}, false
	case st.keyLen == 0:
		e, ok := st.byID[id]
		return e, ok
	}
	if k, ok := st.parseID(id); ok && st.hasKey(k) {
		return st.element(k), true
	}
	return Element{}, false
}

// Has reports whether the element of ID id is present.
func (m ElementMap) Has(id string) bool {
	st := m.st
	switch {
	case st == nil:
		return false
	case st.keyLen == 0:
		_, ok := st.byID[id]
		return ok
	}
	k, ok := st.parseID(id)
	return ok && st.hasKey(k)
}

// Lookup returns the element of e's ID: without building the ID in a
// packed map.
func (m ElementMap) Lookup(e Element) (Element, bool) {
	st := m.st
	switch {
	case st == nil:
		return Element{}, false
	case st.keyLen == 0:
		cur, ok := st.byID[st.id(e)]
		return cur, ok
	}
	if k, ok := st.pack(e); ok && st.hasKey(k) {
		return st.element(k), true
	}
	return Element{}, false
}

// Contains reports whether the element of e's ID is present.
func (m ElementMap) Contains(e Element) bool {
	st := m.st
	switch {
	case st == nil:
		return false
	case st.keyLen == 0:
		_, ok := st.byID[st.id(e)]
		return ok
	}
	k, ok := st.pack(e)
	return ok && st.hasKey(k)
}

// Clear deletes every element.
func (m ElementMap) Clear() {
	if st := m.st; st != nil {
		clear(st.byID)
		clear(st.small)
		clear(st.large)
	}
}

// Clone returns a map of its own with the same elements (which are shared:
// they are never changed in place). maps.Clone copies a map's table as it
// is, without hashing and inserting each element again. The clone of the
// zero ElementMap is the zero ElementMap.
func (m ElementMap) Clone() ElementMap {
	st := m.st
	if st == nil {
		return ElementMap{}
	}
	return ElementMap{&elementStore{key: st.key, keyLen: st.keyLen,
		byID: maps.Clone(st.byID), small: maps.Clone(st.small), large: maps.Clone(st.large)}}
}

// All yields every element with its ID, in no particular order.
func (m ElementMap) All() iter.Seq2[string, Element] {
	return func(yield func(string, Element) bool) {
		st := m.st
		switch {
		case st == nil:
		case st.keyLen == 0:
			for id, e := range st.byID {
				if !yield(id, e) {
					return
				}
			}
		default:
			for k := range st.keys() {
				if !yield(st.keyID(k), st.element(k)) {
					return
				}
			}
		}
	}
}

// Values yields every element, in no particular order.
func (m ElementMap) Values() iter.Seq[Element] {
	return func(yield func(Element) bool) {
		st := m.st
		switch {
		case st == nil:
		case st.keyLen == 0:
			for _, e := range st.byID {
				if !yield(e) {
					return
				}
			}
		default:
			for k := range st.keys() {
				if !yield(st.element(k)) {
					return
				}
			}
		}
	}
}

// IDs yields every element's ID, in no particular order.
func (m ElementMap) IDs() iter.Seq[string] {
	return func(yield func(string) bool) {
		st := m.st
		switch {
		case st == nil:
		case st.keyLen == 0:
			for id := range st.byID {
				if !yield(id) {
					return
				}
			}
		default:
			for k := range st.keys() {
				if !yield(st.keyID(k)) {
					return
				}
			}
		}
	}
}

// AppendValues appends every element to dst, in no particular order. The
// keys of a packed map's elements are cut from one block of values and one
// of bytes: a whole-table Diff sends all of a big set's elements, and a
// key object each would be 200,000 more for the collector.
func (m ElementMap) AppendValues(dst []Element) []Element {
	st := m.st
	switch {
	case st == nil:
		return dst
	case st.keyLen == 0:
		return slices.AppendSeq(slices.Grow(dst, len(st.byID)), maps.Values(st.byID))
	}
	n := m.Len()
	dst = slices.Grow(dst, n)
	nv := len(st.key)
	bytes := make([]byte, n*st.keyLen)
	vals := make([]Value, n*nv)
	for k := range st.keys() {
		b := bytes[:st.keyLen:st.keyLen]
		bytes = bytes[st.keyLen:]
		copy(b, k[:])
		v := vals[:nv:nv]
		vals = vals[nv:]
		st.split(b, v)
		dst = append(dst, Element{Key: v})
	}
	return dst
}

// Equal reports whether m and o hold elements of the same IDs with the
// same verdicts (go-cmp compares ElementMaps with it).
func (m ElementMap) Equal(o ElementMap) bool {
	if m.Len() != o.Len() {
		return false
	}
	if m.st == o.st {
		return true
	}
	if m.Packed() && o.Packed() && slices.Equal(m.st.key, o.st.key) {
		for k := range m.st.keys() {
			if !o.st.hasKey(k) {
				return false
			}
		}
		return true
	}
	for id, e := range m.All() {
		if oe, ok := o.Get(id); !ok || !sameVerdict(e.Verdict, oe.Verdict) {
			return false
		}
	}
	return true
}

// String lists the IDs, sorted (for test failures).
func (m ElementMap) String() string {
	return "{" + strings.Join(slices.Sorted(m.IDs()), ", ") + "}"
}

// PackElement returns the packed key of e, a plain element of set s, and
// whether it has one: its values have the lengths of s's key types, at
// most maxPackedKey bytes in all.
func PackElement(s *Set, e Element) (ElementKey, bool) {
	if len(s.Key) > maxPackedKey {
		return ElementKey{}, false
	}
	n := 0
	for _, t := range s.Key {
		n += t.Len()
	}
	if n > maxPackedKey {
		return ElementKey{}, false
	}
	st := elementStore{key: s.Key}
	return st.pack(e)
}

// AddrTagKey is the packed key of an element of an address (IPv4-mapped
// addresses unmapped first) and a tag (TagValue): what PackElement gives
// for it, without the element.
func AddrTagKey(a netip.Addr, tag Value) ElementKey {
	var k ElementKey
	a = a.Unmap()
	off := 0
	if a.Is4() {
		b := a.As4()
		off = copy(k[:], b[:])
	} else {
		b := a.As16()
		off = copy(k[:], b[:])
	}
	copy(k[off:], tag)
	return k
}

// KeyElement is the element of packed key k of set s's key types.
func KeyElement(s *Set, k ElementKey) Element {
	st := elementStore{key: s.Key}
	return st.element(k)
}

func (st *elementStore) id(e Element) string { return elementID(st.key, e) }

// pack returns e's packed key, if e fits the map's packed form: a plain
// element whose values have its key types' lengths.
func (st *elementStore) pack(e Element) (ElementKey, bool) {
	var k ElementKey
	if e.KeyEnd != nil || e.Verdict != nil || len(e.Key) != len(st.key) {
		return k, false
	}
	off := 0
	for i, v := range e.Key {
		if len(v) != st.key[i].Len() {
			return k, false
		}
		off += copy(k[off:], v)
	}
	return k, true
}

// unpack turns a packed store into one by ID (an element it cannot pack
// came: never from the engine, which makes only well-formed elements, and
// State.Apply validates first). Every map that shares the store sees it.
func (st *elementStore) unpack() {
	byID := make(map[string]Element, st.len())
	for k := range st.keys() {
		e := st.element(k)
		byID[st.id(e)] = e
	}
	st.byID, st.small, st.large, st.keyLen = byID, nil, nil, 0
}

func (st *elementStore) len() int { return len(st.small) + len(st.large) }

func (st *elementStore) putKey(k ElementKey) {
	if st.small != nil {
		st.small[binary.LittleEndian.Uint64(k[:8])] = struct{}{}
		return
	}
	st.large[k] = struct{}{}
}

func (st *elementStore) deleteKey(k ElementKey) {
	if st.small != nil {
		delete(st.small, binary.LittleEndian.Uint64(k[:8]))
		return
	}
	delete(st.large, k)
}

func (st *elementStore) hasKey(k ElementKey) bool {
	if st.small != nil {
		_, ok := st.small[binary.LittleEndian.Uint64(k[:8])]
		return ok
	}
	_, ok := st.large[k]
	return ok
}

// keys yields the packed keys.
func (st *elementStore) keys() iter.Seq[ElementKey] {
	return func(yield func(ElementKey) bool) {
		if st.small != nil {
			for n := range st.small {
				var k ElementKey
				binary.LittleEndian.PutUint64(k[:8], n)
				if !yield(k) {
					return
				}
			}
			return
		}
		for k := range st.large {
			if !yield(k) {
				return
			}
		}
	}
}

// split points vals (one per key type) at their bytes in b, a packed key.
func (st *elementStore) split(b []byte, vals []Value) {
	off := 0
	for i, t := range st.key {
		end := off + t.Len()
		vals[i] = Value(b[off:end:end])
		off = end
	}
}

// element is the element of packed key k, its key in one allocation.
func (st *elementStore) element(k ElementKey) Element {
	var vals [maxPackedKey]Value
	n := len(st.key)
	off := 0
	for i, t := range st.key {
		end := min(off+t.Len(), len(k))
		vals[i] = Value(k[off:end])
		off = end
	}
	return Element{Key: PackedKey(vals[:n]...)}
}

// keyID is the ID of the element of packed key k.
func (st *elementStore) keyID(k ElementKey) string {
	var buf [96]byte
	return string(st.appendKeyID(buf[:0], k))
}

func (st *elementStore) appendKeyID(b []byte, k ElementKey) []byte {
	off := 0
	for i, t := range st.key {
		if i > 0 {
			b = append(b, " . "...)
		}
		end := off + t.Len()
		b = appendValue(b, t, Value(k[off:end]))
		off = end
	}
	return b
}

// parseID returns the packed key of ID id: the inverse of ElementID for the
// packable key types, and false for a text ElementID never writes for them
// (another spelling of the same value included: the ID is the identity).
func (st *elementStore) parseID(id string) (ElementKey, bool) {
	var k ElementKey
	rest := id
	off := 0
	for i, t := range st.key {
		var tok string
		if i < len(st.key)-1 {
			var found bool
			if tok, rest, found = strings.Cut(rest, " . "); !found {
				return k, false
			}
		} else {
			tok, rest = rest, ""
		}
		if !parseValue(k[off:off+t.Len()], t, tok) {
			return k, false
		}
		off += t.Len()
	}
	var buf [96]byte
	if string(st.appendKeyID(buf[:0], k)) != id {
		return k, false
	}
	return k, true
}

// parseValue writes into dst (of t's length) the value of type t that tok
// spells as appendValue does, and reports whether it could.
func parseValue(dst []byte, t KeyType, tok string) bool {
	switch t {
	case TypeIPv4Addr, TypeIPv6Addr:
		a, err := netip.ParseAddr(tok)
		if err != nil || a.Zone() != "" {
			return false
		}
		if t == TypeIPv4Addr {
			if !a.Is4() {
				return false
			}
			b := a.As4()
			copy(dst, b[:])
			return true
		}
		if !a.Is6() {
			return false
		}
		b := a.As16()
		copy(dst, b[:])
		return true
	case TypeInetService:
		n, err := strconv.ParseUint(tok, 10, 16)
		if err != nil {
			return false
		}
		binary.BigEndian.PutUint16(dst, uint16(n))
		return true
	case TypeTag:
		if len(tok) != 10 || !strings.HasPrefix(tok, "0x") {
			return false
		}
		n, err := strconv.ParseUint(tok[2:], 16, 32)
		if err != nil {
			return false
		}
		binary.NativeEndian.PutUint32(dst, uint32(n))
		return true
	case TypeInetProto:
		switch tok {
		case "tcp":
			dst[0] = ProtoTCP
		case "udp":
			dst[0] = ProtoUDP
		case "sctp":
			dst[0] = ProtoSCTP
		default:
			n, err := strconv.ParseUint(tok, 10, 8)
			if err != nil {
				return false
			}
			dst[0] = byte(n)
		}
		return true
	}
	panic(fmt.Sprintf("nft: parseValue of %v, not a packable type", t))
}
