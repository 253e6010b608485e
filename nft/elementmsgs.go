package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Element messages are marshalled here rather than by google/nftables.
//
// The library's SetAddElements takes a slice of its SetElement (about 120
// bytes each) and marshals every element through a few attribute slices and
// byte slices of its own: six allocations and some 500 bytes of garbage per
// element, 114 MB for the 210,356 elements of the 100,000-pod node, which
// cost a garbage collection of the daemon's heap in nearly every load of it
// (BenchmarkKernelEngineProgram). elementMessages writes the same bytes
// (TestElementMessagesMatchTheLibrary) straight into one buffer per message.

// elementMessages marshals op's elements (OpAddElements or
// OpDeleteElements) of a set d describes into NEWSETELEM or DELSETELEM
// messages of at most maxElemsPerMsg elements and maxBytesPerMsg bytes of
// element list; an rbtree range's start and end stay in one message.
func (k *Kernel) elementMessages(op Op, d setDef) ([]netlink.Message, error) {
	typ := unix.NFT_MSG_NEWSETELEM
	if op.Kind == OpDeleteElements {
		typ = unix.NFT_MSG_DELSETELEM
	}
	w := elementWriter{
		typ:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ),
		head: elementListHead(k.table, op.Name),
		left: len(op.Elements),
	}
	var kes []kernelElement
	var keys []byte
	for i, e := range op.Elements {
		if i%touchAhead == 0 {
			touchKeys(op.Elements[min(i+touchAhead, len(op.Elements)):min(i+2*touchAhead, len(op.Elements))])
			if i == 0 {
				touchKeys(op.Elements[:min(touchAhead, len(op.Elements))])
			}
		}
		var err error
		// kes and keys are reused: add copies the element into the message.
		if kes, keys, err = d.kernelElements(kes[:0], keys[:0], e); err != nil {
			return nil, fmt.Errorf("set %q: %w", op.Name, err)
		}
		for _, ke := range kes {
			w.add(ke)
		}
		w.left--
	}
	return w.finish(), nil
}

// touchAhead is how many elements touchKeys reads ahead of the ones being
// marshalled: enough to keep many cache misses in flight, few enough that
// their lines are still in the L1 cache when marshalled.
const touchAhead = 64

// touchKeys reads the first bytes of each element's key (and key end and
// verdict): a batch's elements come in no particular order from all over
// the heap, a cache miss or two each, and marshalling an element is too
// long for the processor to overlap one element's misses with the next
// one's. This short loop has its misses in flight together, as software
// prefetches would; the keys are then read from the cache. On the
// 100,000-pod node, setDef.appendKey, stalled on these misses, was the
// largest user-mode cost of loading it (BenchmarkKernelEngineProgram).
// The sum is returned only so that the compiler keeps the reads.
//
//go:noinline
func touchKeys(elems []Element) int {
	sum := 0
	for i := range elems {
		e := &elems[i]
		if len(e.Key) > 0 && len(e.Key[0]) > 0 {
			sum += int(e.Key[0][0])
		}
		if len(e.KeyEnd) > 0 && len(e.KeyEnd[0]) > 0 {
			sum += int(e.KeyEnd[0][0])
		}
		if e.Verdict != nil {
			sum += int(e.Verdict.Kind)
		}
	}
	return sum
}

// elementListHead is how each element message of a set starts, as the
// library writes it: the nfgenmsg header, the set's name, a set ID of zero
// (elementsBySetID may replace the name by the set's ID in the batch) and
// the table's name. The element list attribute follows.
func elementListHead(t *nftables.Table, set string) []byte {
	b := []byte{byte(t.Family), unix.NFNETLINK_V0, 0, 0}
	b = appendStringAttr(b, unix.NFTA_SET_ELEM_LIST_SET, set)
	b = appendUint32Attr(b, unix.NFTA_SET_ELEM_LIST_SET_ID, 0)
	return appendStringAttr(b, unix.NFTA_SET_ELEM_LIST_TABLE, t.Name)
}

// elementWriter fills element messages one element at a time.
type elementWriter struct {
	typ  netlink.HeaderType
	head []byte
	// left is the number of elements still to come, a hint for the size of
	// the next message.
	left int
	msgs []netlink.Message
	// data is the message being written (nil before its first element),
	// list the offset of its element list attribute, n its elements.
	data []byte
	list int
	n    int
}

// add appends ke to the message being written, or to a new one when it would
// not fit.
func (w *elementWriter) add(ke kernelElement) {
	size := elemSize(ke)
	if w.data != nil && !ke.intervalEnd && (w.n >= maxElemsPerMsg || len(w.data)-w.list-4+size > maxBytesPerMsg) {
		w.end()
	}
	if w.data == nil {
		room := min(maxBytesPerMsg+size, (w.left+1)*size)
		w.data = append(make([]byte, 0, len(w.head)+4+room), w.head...)
		w.data, w.list = attrStart(w.data)
		w.n = 0
	}
	w.n++
	w.data = appendElement(w.data, uint16(w.n), ke)
}

// end closes the message being written.
func (w *elementWriter) end() {
	w.data = attrEnd(w.data, w.list, unix.NFTA_SET_ELEM_LIST_ELEMENTS|unix.NLA_F_NESTED)
	w.msgs = append(w.msgs, netlink.Message{
		Header: netlink.Header{Type: w.typ, Flags: netlink.Request | netlink.Create},
		Data:   w.data,
	})
	w.data = nil
}

// finish closes the last message and returns them all.
func (w *elementWriter) finish() []netlink.Message {
	if w.data != nil {
		w.end()
	}
	return w.msgs
}

// appendElement appends element number index of an element list: its
// interval end flag, key, key end and verdict, in the library's order and
// nesting (the flags attribute carries the nested flag as the library's
// does).
func appendElement(b []byte, index uint16, ke kernelElement) []byte {
	b, item := attrStart(b)
	if ke.intervalEnd {
		b = appendUint32Attr(b, unix.NFTA_SET_ELEM_FLAGS|unix.NLA_F_NESTED, unix.NFT_SET_ELEM_INTERVAL_END)
	}
	b = appendValueAttr(b, unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED, ke.key)
	if len(ke.keyEnd) > 0 {
		b = appendValueAttr(b, nftables.NFTA_SET_ELEM_KEY_END|unix.NLA_F_NESTED, ke.keyEnd)
	}
	if ke.verdict != nil {
		var data, verdict int
		b, data = attrStart(b)
		b, verdict = attrStart(b)
		b = appendUint32Attr(b, unix.NFTA_VERDICT_CODE, uint32(ke.verdict.Kind))
		if ke.verdict.Chain != "" {
			b = appendStringAttr(b, unix.NFTA_VERDICT_CHAIN, ke.verdict.Chain)
		}
		b = attrEnd(b, verdict, unix.NFTA_DATA_VERDICT|unix.NLA_F_NESTED)
		b = attrEnd(b, data, unix.NFTA_SET_ELEM_DATA|unix.NLA_F_NESTED)
	}
	return attrEnd(b, item, index|unix.NLA_F_NESTED)
}

// elemSize is the size appendElement writes for ke.
func elemSize(ke kernelElement) int {
	attr := func(n int) int { return 4 + (n+3)&^3 }
	n := attr(attr(len(ke.key)))
	if len(ke.keyEnd) > 0 {
		n += attr(attr(len(ke.keyEnd)))
	}
	if ke.intervalEnd {
		n += attr(4)
	}
	if ke.verdict != nil {
		v := attr(4)
		if ke.verdict.Chain != "" {
			v += attr(len(ke.verdict.Chain) + 1)
		}
		n += attr(attr(v))
	}
	return attr(n)
}

// attrStart appends the header of a netlink attribute whose length attrEnd
// fills in, and returns where it starts.
func attrStart(b []byte) ([]byte, int) { return append(b, 0, 0, 0, 0), len(b) }

// attrEnd completes the attribute started at start: its length (what
// follows the header, unpadded) and type, then the padding to 4 bytes.
func attrEnd(b []byte, start int, typ uint16) []byte {
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
	binary.NativeEndian.PutUint16(b[start+2:], typ)
	for (len(b)-start)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// appendValueAttr appends a nested attribute of type typ holding v as
// NFTA_DATA_VALUE.
func appendValueAttr(b []byte, typ uint16, v []byte) []byte {
	b, start := attrStart(b)
	b, value := attrStart(b)
	b = append(b, v...)
	b = attrEnd(b, value, unix.NFTA_DATA_VALUE)
	return attrEnd(b, start, typ)
}

// appendUint32Attr appends a big-endian 32-bit attribute.
func appendUint32Attr(b []byte, typ uint16, v uint32) []byte {
	b, start := attrStart(b)
	b = binary.BigEndian.AppendUint32(b, v)
	return attrEnd(b, start, typ)
}

// appendStringAttr appends a NUL-terminated string attribute.
func appendStringAttr(b []byte, typ uint16, s string) []byte {
	b, start := attrStart(b)
	b = append(b, s...)
	b = append(b, 0)
	return attrEnd(b, start, typ)
}
