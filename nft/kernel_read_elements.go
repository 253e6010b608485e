package nft

// Reading the elements of a table's sets: one dump per set, decoded from the
// receive buffer (kernel_read.go reads the rest of the table).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Dumps of a hash set that the kernel is resizing are retried this often.
const (
	elementDumpAttempts = 10
	elementDumpBackoff  = 20 * time.Millisecond
)

// elementReader holds what reading the elements of one set after another
// reuses: the kernel's elements of the current datagram, for interval sets
// (whose ranges are paired up only once all are listed) all of them with
// their bytes copied out of the receive buffer, and the decoded elements,
// which go into a map of the right size at the end (growing it element by
// element cost more than decoding them).
type elementReader struct {
	batch, all []nftables.SetElement
	slab       []byte
	elems      []Element
}

// keep copies b out of the receive buffer into the reader's slab.
func (er *elementReader) keep(b []byte) []byte {
	if b == nil {
		return nil
	}
	if len(b) > cap(er.slab)-len(er.slab) {
		er.slab = make([]byte, 0, max(64<<10, len(b)))
	}
	n := len(er.slab)
	er.slab = append(er.slab, b...)
	return er.slab[n:len(er.slab):len(er.slab)]
}

// readElements fills s.Elements from the kernel. A hash set walk that crosses
// a resize of the table (the kernel grows or shrinks it in the background
// after bulk changes) restarts in the new order while the dump keeps counting,
// so it lists some elements twice and as many not at all. Duplicates are
// therefore an exact sign of a torn dump: dump again until there are none.
//
// Elements are decoded datagram by datagram, straight from the receive
// buffer, except in single-field interval sets, whose start and end
// elements are paired after sorting them all (setDef.decodeElements).
func (k *Kernel) readElements(ctx context.Context, er *elementReader, s *Set, def setDef) error {
	backoff := elementDumpBackoff
	whole := def.Interval && !def.concat()
	plain := len(def.Key) == 1 && !def.Interval && !def.VerdictMap
	decode := func(kes []nftables.SetElement) error {
		var err error
		if plain {
			er.elems, err = appendPlainElements(er.elems, kes, def.Key[0])
		} else {
			var elems []Element
			elems, err = def.decodeElements(kes)
			er.elems = append(er.elems, elems...)
		}
		if err != nil {
			return fmt.Errorf("nft: table inet %s: set %q: %w", k.table.Name, s.Name, err)
		}
		return nil
	}
	for attempt := 1; ; attempt++ {
		er.all, er.elems, er.slab = er.all[:0], er.elems[:0], er.slab[:0]
		err := k.rd.request(unix.NFT_MSG_GETSETELEM, byte(k.table.Family), true, k.nameAttr(unix.NFTA_SET_ELEM_LIST_TABLE, s.Name),
			func(typ uint16, data []byte) error {
				if typ != unix.NFT_MSG_NEWSETELEM {
					return nil
				}
				var err error
				if er.batch, err = appendKernelElements(er.batch[:0], data); err != nil {
					return fmt.Errorf("nft: table inet %s: set %q: %w", k.table.Name, s.Name, err)
				}
				if !whole {
					return decode(er.batch)
				}
				for _, ke := range er.batch {
					ke.Key, ke.KeyEnd, ke.Val = er.keep(ke.Key), er.keep(ke.KeyEnd), er.keep(ke.Val)
					er.all = append(er.all, ke)
				}
				return nil
			})
		if err != nil {
			if errors.Is(err, errDumpInterrupted) {
				return err
			}
			return k.wrap(fmt.Sprintf("list elements of set %q", s.Name), err)
		}
		if whole {
			if err := decode(er.all); err != nil {
				return err
			}
		}
		s.Elements = NewElements(s, len(er.elems))
		for _, e := range er.elems {
			s.Elements.Put(e)
		}
		clear(er.elems) // drop the references to the keys
		if s.Elements.Len() == len(er.elems) || def.Interval || attempt == elementDumpAttempts {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nft: read: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// appendPlainElements appends the elements kes of a set of one key field
// of type key, without intervals or verdicts (the peer address sets that
// hold most of a node's elements), as setDef.decodeElements decodes them,
// but with the keys of all in two allocations instead of two per element.
func appendPlainElements(out []Element, kes []nftables.SetElement, key KeyType) ([]Element, error) {
	n := key.Len()
	vals := make([]Value, len(kes))
	slab := make([]byte, 0, n*len(kes))
	for i, ke := range kes {
		if len(ke.Key) != n {
			return nil, fmt.Errorf("key %x is not a %v (%d bytes)", ke.Key, key, n)
		}
		slab = append(slab, ke.Key...)
		vals[i] = Value(slab[len(slab)-n : len(slab) : len(slab)])
		out = append(out, Element{Key: vals[i : i+1 : i+1]})
	}
	return out, nil
}

// appendKernelElements appends the elements of one NEWSETELEM message (data
// after the nfgenmsg header) to out, as google/nftables decodes them (key,
// key end, data, interval end flag), their bytes aliasing data.
func appendKernelElements(out []nftables.SetElement, data []byte) ([]nftables.SetElement, error) {
	a := attrs{b: data}
	for a.next() {
		if a.typ != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		for list := a.nested(); list.next(); {
			var ke nftables.SetElement
			if list.typ == unix.NFTA_LIST_ELEM {
				for e := list.nested(); e.next(); {
					var err error
					switch e.typ {
					case unix.NFTA_SET_ELEM_KEY:
						ke.Key, err = elementData(e.val)
					case nftables.NFTA_SET_ELEM_KEY_END:
						ke.KeyEnd, err = elementData(e.val)
					case unix.NFTA_SET_ELEM_DATA:
						ke.Val, err = elementData(e.val)
					case unix.NFTA_SET_ELEM_FLAGS:
						ke.IntervalEnd = e.u32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
					}
					if err == nil {
						err = e.err
					}
					if err != nil {
						return nil, fmt.Errorf("element: %w", err)
					}
				}
			}
			out = append(out, ke)
			if list.err != nil {
				return nil, list.err
			}
		}
	}
	return out, a.err
}

// elementData is what google/nftables takes from an element's key or data:
// the contents of its last NFTA_DATA_VALUE or NFTA_DATA_VERDICT attribute.
func elementData(b []byte) ([]byte, error) {
	var v []byte
	a := attrs{b: b}
	for a.next() {
		if a.typ == unix.NFTA_DATA_VALUE || a.typ == unix.NFTA_DATA_VERDICT {
			v = a.val
		}
	}
	return v, a.err
}
