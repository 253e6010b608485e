package nft

// This file turns sets and their elements into what google/nftables sends
// (key types, key bytes, interval ends, chunks that fit a netlink message) and
// back; lower.go does the same for rules.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// keyTypes pairs each KeyType with the kernel's data type of it.
var keyTypes = []struct {
	ours   KeyType
	kernel nftables.SetDatatype
}{
	{TypeIPv4Addr, nftables.TypeIPAddr},
	{TypeIPv6Addr, nftables.TypeIP6Addr},
	{TypeInetProto, nftables.TypeInetProto},
	{TypeInetService, nftables.TypeInetService},
	{TypeIfname, nftables.TypeIFName},
	{TypeTag, nftables.TypeMark},
}

// kernelKeyType is the (possibly concatenated) kernel type of a set key.
func kernelKeyType(key []KeyType) (nftables.SetDatatype, error) {
	if len(key) == 0 {
		return nftables.SetDatatype{}, fmt.Errorf("set without a key: %w", ErrInvalid)
	}
	types := make([]nftables.SetDatatype, len(key))
	for i, k := range key {
		found := false
		for _, t := range keyTypes {
			if t.ours == k {
				types[i], found = t.kernel, true
			}
		}
		if !found {
			return nftables.SetDatatype{}, fmt.Errorf("unknown key type %d: %w", k, ErrInvalid)
		}
	}
	if len(types) == 1 {
		return types[0], nil
	}
	t, err := nftables.ConcatSetType(types...)
	if err != nil {
		return nftables.SetDatatype{}, fmt.Errorf("set key %v: %v: %w", key, err, ErrInvalid)
	}
	return t, nil
}

// setDef is what element encoding needs to know about a set.
type setDef struct {
	Key        []KeyType
	Interval   bool
	VerdictMap bool
}

func defOf(s *Set) setDef {
	return setDef{Key: s.Key, Interval: s.Interval, VerdictMap: s.VerdictMap}
}

// concat reports whether the set's key is a concatenation.
func (d setDef) concat() bool { return len(d.Key) > 1 }

// kernelSet builds the google/nftables definition of a set.
func kernelSet(t *nftables.Table, s *Set) (*nftables.Set, error) {
	if s.Name == "" {
		return nil, fmt.Errorf("set without a name: %w", ErrInvalid)
	}
	kt, err := kernelKeyType(s.Key)
	if err != nil {
		return nil, fmt.Errorf("set %q: %w", s.Name, err)
	}
	ks := &nftables.Set{
		Table:    t,
		Name:     s.Name,
		KeyType:  kt,
		Interval: s.Interval,
		// Like nft, flag only interval concatenations (the pipapo backend);
		// it makes google/nftables send the per-field lengths the kernel needs.
		Concatenation: s.Interval && len(s.Key) > 1,
		Comment:       s.Comment,
	}
	if s.VerdictMap {
		ks.IsMap = true
		ks.DataType = nftables.TypeVerdict
	}
	// nft prints a set's elements in the key byte order recorded in the set's
	// userdata, as nft itself records it: interface names are host-order
	// strings (without the record nft lists them as ""), a tag a host-order
	// integer (nft's mark), the rest big endian.
	if len(s.Key) == 1 {
		ks.KeyByteOrder = binaryutil.BigEndian
		if s.Key[0] == TypeIfname || s.Key[0] == TypeTag {
			ks.KeyByteOrder = binaryutil.NativeEndian
		}
	}
	return ks, nil
}

// appendKey appends the kernel encoding of a key to dst: the value itself,
// or for a concatenation each component padded to a multiple of 4 bytes.
func (d setDef) appendKey(dst []byte, vals []Value) ([]byte, error) {
	if len(vals) != len(d.Key) {
		return dst, fmt.Errorf("key has %d components, set has %d: %w", len(vals), len(d.Key), ErrInvalid)
	}
	for i, v := range vals {
		if len(v) != d.Key[i].Len() {
			return dst, fmt.Errorf("key component %d is %d bytes, want %d: %w", i, len(v), d.Key[i].Len(), ErrInvalid)
		}
		dst = append(dst, v...)
		if d.concat() {
			for pad := int(words(uint32(len(v))))*4 - len(v); pad > 0; pad-- {
				dst = append(dst, 0)
			}
		}
	}
	return dst, nil
}

// splitKey is the inverse of appendKey.
func (d setDef) splitKey(b []byte) ([]Value, error) {
	vals := make([]Value, len(d.Key))
	off := 0
	for i, k := range d.Key {
		n := k.Len()
		if off+n > len(b) {
			return nil, fmt.Errorf("key %x too short for %v", b, d.Key)
		}
		vals[i] = Value(bytes.Clone(b[off : off+n]))
		off += n
		if d.concat() {
			off = int(words(uint32(off)) * 4)
		}
	}
	if off != len(b) {
		return nil, fmt.Errorf("key %x too long for %v", b, d.Key)
	}
	return vals, nil
}

// kernelElement is one element as the kernel takes it.
type kernelElement struct {
	key, keyEnd []byte
	intervalEnd bool
	verdict     *expr.Verdict
}

// kernelElements appends the kernel elements of e to out, and their keys to
// keys (the elements' keys point into it, so keys may be reused only once
// they are marshalled). Plain and hashed concatenated sets take the key;
// concatenated interval sets (pipapo) take key and inclusive key end;
// single-field interval sets (rbtree) take a start element and an end
// element one past the range, flagged as interval end, except when the range
// runs to the top of the key space.
func (d setDef) kernelElements(out []kernelElement, keys []byte, e Element) ([]kernelElement, []byte, error) {
	at := len(keys)
	keys, err := d.appendKey(keys, e.Key)
	if err != nil {
		return out, keys, err
	}
	key := keys[at:len(keys):len(keys)]
	var vd *expr.Verdict
	if d.VerdictMap != (e.Verdict != nil) {
		return out, keys, fmt.Errorf("element %x: verdict presence does not match the set kind: %w", key, ErrInvalid)
	}
	if e.Verdict != nil {
		if vd, err = lowerVerdict(*e.Verdict); err != nil {
			return out, keys, err
		}
	}
	if !d.Interval {
		if e.KeyEnd != nil {
			return out, keys, fmt.Errorf("range in a set without intervals: %w", ErrInvalid)
		}
		return append(out, kernelElement{key: key, verdict: vd}), keys, nil
	}
	end := key
	if e.KeyEnd != nil {
		at = len(keys)
		if keys, err = d.appendKey(keys, e.KeyEnd); err != nil {
			return out, keys, err
		}
		end = keys[at:len(keys):len(keys)]
		if bytes.Compare(key, end) > 0 {
			return out, keys, fmt.Errorf("range %x-%x ends before it starts: %w", key, end, ErrInvalid)
		}
	}
	if d.concat() {
		return append(out, kernelElement{key: key, keyEnd: end, verdict: vd}), keys, nil
	}
	out = append(out, kernelElement{key: key, verdict: vd})
	at = len(keys)
	keys = append(keys, end...)
	if next := keys[at:len(keys):len(keys)]; increment(next) {
		out = append(out, kernelElement{key: next, intervalEnd: true})
	}
	return out, keys, nil
}

// increment adds one to b, a big-endian number, and returns false when it
// wrapped (b was all ones).
func increment(b []byte) bool {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return true
		}
	}
	return false
}

// decrement returns b-1 (b must not be zero).
func decrement(b []byte) []byte {
	out := bytes.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]--
		if out[i] != 0xff {
			break
		}
	}
	return out
}

func allOnes(n int) []byte { return bytes.Repeat([]byte{0xff}, n) }

// decodeElements rebuilds elements from what the kernel lists.
func (d setDef) decodeElements(kes []nftables.SetElement) ([]Element, error) {
	out := make([]Element, 0, len(kes))
	if !d.Interval || d.concat() {
		for _, ke := range kes {
			key, err := d.splitKey(ke.Key)
			if err != nil {
				return nil, err
			}
			e := Element{Key: key}
			if d.Interval && len(ke.KeyEnd) > 0 && !bytes.Equal(ke.KeyEnd, ke.Key) {
				if e.KeyEnd, err = d.splitKey(ke.KeyEnd); err != nil {
					return nil, err
				}
			}
			if d.VerdictMap {
				v, err := decodeVerdictData(ke.Val)
				if err != nil {
					return nil, fmt.Errorf("element %x: %w", ke.Key, err)
				}
				e.Verdict = &v
			}
			out = append(out, e)
		}
		return out, nil
	}
	// rbtree: sort by key, ends before starts at the same key (a range may end
	// exactly where the next starts), then pair each start with the next end.
	sorted := make([]nftables.SetElement, len(kes))
	copy(sorted, kes)
	sortElements(sorted)
	var open *nftables.SetElement
	closeRange := func(end []byte) error {
		key, err := d.splitKey(open.Key)
		if err != nil {
			return err
		}
		e := Element{Key: key}
		if !bytes.Equal(end, open.Key) {
			if e.KeyEnd, err = d.splitKey(end); err != nil {
				return err
			}
		}
		if d.VerdictMap {
			v, err := decodeVerdictData(open.Val)
			if err != nil {
				return fmt.Errorf("element %x: %w", open.Key, err)
			}
			e.Verdict = &v
		}
		out = append(out, e)
		open = nil
		return nil
	}
	for i := range sorted {
		ke := &sorted[i]
		if ke.IntervalEnd {
			if open != nil {
				if err := closeRange(decrement(ke.Key)); err != nil {
					return nil, err
				}
			}
			// An end without a start is the "range ends before 0" marker
			// older nft versions add; it holds nothing.
			continue
		}
		if open != nil {
			// Two starts in a row: the first range is open-ended up to the
			// next start (the kernel never does this; be lenient).
			if err := closeRange(decrement(ke.Key)); err != nil {
				return nil, err
			}
		}
		open = ke
	}
	if open != nil {
		if err := closeRange(allOnes(len(open.Key))); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func sortElements(s []nftables.SetElement) {
	less := func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		switch {
		case a.IntervalEnd == b.IntervalEnd:
			return 0
		case a.IntervalEnd:
			return -1
		}
		return 1
	}
	slices.SortFunc(s, less)
}

// decodeVerdictData parses the NFTA_DATA_VERDICT attributes google/nftables
// leaves in SetElement.Val for verdict maps.
func decodeVerdictData(b []byte) (Verdict, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Verdict{}, fmt.Errorf("verdict data: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var v expr.Verdict
	var haveCode bool
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			v.Kind = expr.VerdictKind(int32(ad.Uint32()))
			haveCode = true
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return Verdict{}, fmt.Errorf("verdict data: %w", err)
	}
	if !haveCode {
		return Verdict{}, fmt.Errorf("verdict data without a verdict code")
	}
	return liftVerdict(v)
}
