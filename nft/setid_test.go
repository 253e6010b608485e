package nft

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestElementsBySetID: element messages of a set created earlier in the
// batch lose the set's name and carry its ID; those of other sets, or of a
// set deleted since, stay as they are; restore gives back the exact bytes.
func TestElementsBySetID(t *testing.T) {
	var captured []netlink.Message
	cc, err := newBuilder(&captured)
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: "t", Family: nftables.TableFamilyINet}
	created := &nftables.Set{Name: "created", Table: table, KeyType: nftables.TypeIPAddr, ID: 7}
	elems := []nftables.SetElement{{Key: []byte{198, 18, 0, 10}}}
	steps := []func() error{
		func() error { return cc.AddSet(created, nil) },
		func() error { return cc.SetAddElements(&nftables.Set{Name: "created", Table: table}, elems) },   // by ID
		func() error { return cc.SetAddElements(&nftables.Set{Name: "elsewhere", Table: table}, elems) }, // by name
		func() error { cc.DelSet(&nftables.Set{Name: "created", Table: table}); return nil },
		func() error { return cc.SetAddElements(&nftables.Set{Name: "created", Table: table}, elems) }, // by name
	}
	b := &pendingBatch{}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		captured = captured[:0]
		if err := cc.Flush(); err != nil {
			t.Fatal(err)
		}
		b.queueRaw(i, captured[1:len(captured)-1])
	}
	before := make([][]byte, len(b.msgs))
	for i, m := range b.msgs {
		before[i] = bytes.Clone(m.Data)
	}
	bytesBefore := b.bytes

	u := elementsBySetID(b)

	for i, m := range b.msgs {
		var name string
		var id uint32
		for _, a := range topAttrs(m.Data) {
			switch a.typ {
			case unix.NFTA_SET_ELEM_LIST_SET:
				name = string(a.payload(m.Data))
			case unix.NFTA_SET_ELEM_LIST_SET_ID:
				id = binary.BigEndian.Uint32(m.Data[a.start+4:])
			}
		}
		if uint16(m.Header.Type)&0xff != unix.NFT_MSG_NEWSETELEM {
			if !bytes.Equal(m.Data, before[i]) {
				t.Errorf("message %d (not elements) changed", i)
			}
			continue
		}
		wantName, wantID := "elsewhere", uint32(0)
		switch i {
		case 1:
			wantName, wantID = "", 7
		case 4:
			wantName = "created"
		}
		if name != wantName || id != wantID {
			t.Errorf("elements message %d: set name %q, ID %d; want %q, %d", i, name, id, wantName, wantID)
		}
		if !bytes.Equal(m.Data[:4], before[i][:4]) || !bytes.HasSuffix(before[i], m.Data[len(m.Data)-len(elemsAttr(t, m.Data)):]) {
			t.Errorf("elements message %d: header or elements changed", i)
		}
	}
	if got := b.bytes; got >= bytesBefore {
		t.Errorf("batch size %d after dropping a name, %d before", got, bytesBefore)
	}
	u.restore(b)
	for i, m := range b.msgs {
		if !bytes.Equal(m.Data, before[i]) {
			t.Errorf("message %d not restored:\n got %x\nwant %x", i, m.Data, before[i])
		}
	}
	if b.bytes != bytesBefore {
		t.Errorf("batch size %d after restore, want %d", b.bytes, bytesBefore)
	}
}

// elemsAttr returns the element list attribute of an element message.
func elemsAttr(t *testing.T, data []byte) []byte {
	for _, a := range topAttrs(data) {
		if a.typ == unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			return data[a.start:a.end]
		}
	}
	t.Fatalf("no element list in %x", data)
	return nil
}
