package nft

import (
	"reflect"
	"testing"

	"github.com/google/nftables"
)

// TestPlainElementsMatchDecode holds the fast path for plain sets to
// setDef.decodeElements, which it stands in for.
func TestPlainElementsMatchDecode(t *testing.T) {
	for _, tc := range []struct {
		key  KeyType
		keys [][]byte
		err  bool
	}{
		{key: TypeIPv4Addr, keys: [][]byte{{198, 18, 0, 1}, {198, 18, 0, 2}, {10, 0, 0, 0}}},
		{key: TypeIPv6Addr, keys: [][]byte{{0x20, 0x01, 0x0d, 0xb8, 15: 1}}},
		{key: TypeInetService, keys: [][]byte{{0, 80}, {0x1f, 0x90}}},
		{key: TypeInetProto, keys: [][]byte{{6}, {17}}},
		{key: TypeIfname, keys: [][]byte{[]byte("eth0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")}},
		{key: TypeIPv4Addr},
		{key: TypeIPv4Addr, keys: [][]byte{{198, 18, 0, 1}, {198, 18, 0}}, err: true},
		{key: TypeInetService, keys: [][]byte{{0, 80, 0}}, err: true},
	} {
		kes := make([]nftables.SetElement, len(tc.keys))
		for i, k := range tc.keys {
			kes[i] = nftables.SetElement{Key: k}
		}
		def := setDef{Key: []KeyType{tc.key}}
		want, wantErr := def.decodeElements(kes)
		got, err := appendPlainElements(nil, kes, tc.key)
		if (err != nil) != tc.err || (wantErr != nil) != tc.err {
			t.Errorf("%v %x: error %v, decodeElements' %v, want error: %v", tc.key, tc.keys, err, wantErr, tc.err)
			continue
		}
		if !tc.err && len(want)+len(got) > 0 && !reflect.DeepEqual(got, want) {
			t.Errorf("%v %x: got %v, decodeElements gives %v", tc.key, tc.keys, got, want)
		}
	}
}
