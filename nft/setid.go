package nft

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// Elements of a set the batch creates are sent by the set's ID in the batch.
//
// The kernel finds the set of an element message by its name
// (nft_set_lookup_global) with a walk over the table's sets from the oldest,
// comparing names, and only when no set has that name by the ID the batch
// gave the set (NFTA_SET_ELEM_LIST_SET_ID), which it looks for among the
// sets the batch created, newest first. Programming a whole node sends
// about 2,000 element messages into a table of about 2,900 sets, so the
// name walks cost millions of string comparisons; an element message
// without a name goes straight to the ID. elementsBySetID therefore drops
// the name from the element messages of sets that the batch creates.
//
// The kernel creates nothing, and so registers no ID, for an AddSet of a
// set that exists already (an identical definition is not an error): the
// elements of such a set are refused by ID (ENOENT) although they are
// valid. The batch is atomic, so nothing changed; send restores the names
// and sends it again (bySetID.refused).

// bySetID is what elementsBySetID changed in a batch, to undo it.
type bySetID struct {
	changed []renamedElements
}

// renamedElements is one element message sent by set ID: its index in the
// batch, its data before, and the bytes the change overwrote.
type renamedElements struct {
	index       int
	data        []byte
	at          int // offset in data of the overwritten header copy
	header, id  [4]byte
	idAt, bytes int
}

// topAttr is one top-level attribute of an nf_tables message: its type
// (flags masked) and where it lies in the message's data, which starts
// with the 4-byte nfgenmsg header.
type topAttr struct {
	typ        uint16
	start, end int // end is aligned
}

// topAttrs lists the top-level attributes of an nf_tables message's data;
// nil when they are malformed.
func topAttrs(data []byte) []topAttr {
	var out []topAttr
	for off := 4; off+4 <= len(data); {
		n := int(binary.NativeEndian.Uint16(data[off:]))
		if n < 4 || off+n > len(data) {
			return nil
		}
		end := min(off+nlmsgAlign(n), len(data))
		typ := binary.NativeEndian.Uint16(data[off+2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		out = append(out, topAttr{typ: typ, start: off, end: end})
		off = end
	}
	return out
}

// payload returns an attribute's value (a string's without its NULs).
func (a topAttr) payload(data []byte) []byte {
	v := data[a.start+4 : a.start+int(binary.NativeEndian.Uint16(data[a.start:]))]
	for len(v) > 0 && v[len(v)-1] == 0 {
		v = v[:len(v)-1]
	}
	return v
}

// elementsBySetID rewrites the element messages of b that go to a set the
// batch creates (a NEWSET message before them with that name and an ID, no
// DELSET of it in between) to name the set by that ID only.
func elementsBySetID(b *pendingBatch) *bySetID {
	undo := &bySetID{}
	ids := map[string][]byte{}
	for i := range b.msgs {
		m := &b.msgs[i]
		switch uint16(m.Header.Type) & 0xff {
		case unix.NFT_MSG_NEWSET:
			var name, id []byte
			for _, a := range topAttrs(m.Data) {
				switch {
				case a.typ == unix.NFTA_SET_NAME:
					name = a.payload(m.Data)
				case a.typ == unix.NFTA_SET_ID && a.end-a.start == 8:
					id = m.Data[a.start+4 : a.end]
				}
			}
			if len(name) > 0 && id != nil && binary.BigEndian.Uint32(id) != 0 {
				ids[string(name)] = id
			}
		case unix.NFT_MSG_DELSET:
			for _, a := range topAttrs(m.Data) {
				if a.typ == unix.NFTA_SET_NAME {
					delete(ids, string(a.payload(m.Data)))
				}
			}
		case unix.NFT_MSG_NEWSETELEM:
			undo.rename(b, i, ids)
		}
	}
	return undo
}

// rename sends element message i of b by set ID if its set is in ids. The
// element messages (elementListHead) put the set's name first and an ID
// attribute (zero) after it.
func (u *bySetID) rename(b *pendingBatch, i int, ids map[string][]byte) {
	m := &b.msgs[i]
	attrs := topAttrs(m.Data)
	if len(attrs) == 0 || attrs[0].typ != unix.NFTA_SET_ELEM_LIST_SET {
		return
	}
	id := ids[string(attrs[0].payload(m.Data))]
	if id == nil {
		return
	}
	idAt := -1
	for _, a := range attrs[1:] {
		if a.typ == unix.NFTA_SET_ELEM_LIST_SET_ID && a.end-a.start == 8 {
			idAt = a.start + 4
		}
	}
	if idAt < 0 {
		return
	}
	r := renamedElements{index: i, data: m.Data, idAt: idAt}
	copy(r.id[:], m.Data[idAt:])
	copy(m.Data[idAt:idAt+4], id)
	// Drop the name by moving the nfgenmsg header over the name's last
	// four bytes: the message starts there.
	r.at = attrs[0].end - 4
	copy(r.header[:], m.Data[r.at:])
	copy(m.Data[r.at:r.at+4], m.Data[:4])
	m.Data = m.Data[r.at:]
	r.bytes = r.at
	b.bytes -= r.at
	u.changed = append(u.changed, r)
}

// refused reports whether the kernel refused a message sent by set ID as
// not found: the set existed before the batch, so its NEWSET created
// nothing and registered no ID.
func (u *bySetID) refused(errs []batchError) bool {
	for _, e := range errs {
		if !errors.Is(e.errno, unix.ENOENT) {
			continue
		}
		for _, r := range u.changed {
			if r.index == e.index {
				return true
			}
		}
	}
	return false
}

// restore puts the names back into b.
func (u *bySetID) restore(b *pendingBatch) {
	for _, r := range u.changed {
		copy(r.data[r.at:], r.header[:])
		copy(r.data[r.idAt:], r.id[:])
		b.msgs[r.index].Data = r.data
		b.bytes += r.bytes
	}
	u.changed = nil
}
