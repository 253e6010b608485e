package nft

import (
	"math"
	"net/netip"
	"runtime"
	"slices"
	"testing"
)

// TestPackedKey: a packed key holds copies of the values, each capped so that
// an append cannot write into the next, in one allocation when it is small,
// of the smallest of its sizes that holds the values (bytes: the size class
// it takes, 0 for no check).
func TestPackedKey(t *testing.T) {
	v6 := AddrValue(netip.MustParseAddr("2001:db8::1"))
	for _, tc := range []struct {
		name   string
		vals   []Value
		allocs float64
		bytes  uint64
	}{
		{"address and tag", []Value{a4("198.18.0.1"), TagValue(42)}, 1, 64},
		{"v6 address and tag", []Value{v6, TagValue(42)}, 1, 80},
		{"named port", []Value{v6, ProtoValue(ProtoTCP), PortValue(443), TagValue(7)}, 1, 128},
		{"v4 named port", []Value{a4("198.18.0.1"), ProtoValue(ProtoTCP), PortValue(443), TagValue(7)}, 1, 112},
		{"one value", []Value{a4("198.18.0.1")}, 1, 64},
		{"too many values", []Value{{1}, {2}, {3}, {4}, {5}}, 2, 0},
		{"too many bytes", []Value{v6, v6}, 2, 0},
		{"empty", nil, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := make([]Value, len(tc.vals))
			for i, v := range tc.vals {
				in[i] = slices.Clone(v)
			}
			got := PackedKey(in...)
			if !slices.EqualFunc(got, tc.vals, slices.Equal) || len(got) != cap(got) {
				t.Fatalf("PackedKey(%x) = %x (cap %d)", tc.vals, got, cap(got))
			}
			for i := range got {
				if len(got[i]) != cap(got[i]) {
					t.Errorf("value %d: length %d, capacity %d", i, len(got[i]), cap(got[i]))
				}
				if len(in[i]) > 0 {
					in[i][0]++ // the key holds copies
				}
			}
			if !slices.EqualFunc(got, tc.vals, slices.Equal) {
				t.Errorf("changing the values changed the key: %x", got)
			}
			if n := testing.AllocsPerRun(10, func() { PackedKey(tc.vals...) }); n > tc.allocs {
				t.Errorf("%v allocations, want at most %v", n, tc.allocs)
			}
			if n := bytesPerRun(func() { packedSink = PackedKey(tc.vals...) }); tc.bytes > 0 && n != tc.bytes {
				t.Errorf("%v bytes allocated, want %v", n, tc.bytes)
			}
		})
	}
}

// packedSink keeps bytesPerRun's keys on the heap.
var packedSink []Value

// bytesPerRun is the heap bytes f allocates per call (its objects' size
// classes), averaged over 1,000 calls, the least of three tries: the
// counter is the process's, and tests running in parallel allocate too
// (once 100 bytes over 100 calls, which read as 65 for a 64-byte key).
func bytesPerRun(f func()) uint64 {
	const runs, tries = 1000, 3
	f() // warm up
	least := uint64(math.MaxUint64)
	for range tries {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			f()
		}
		runtime.ReadMemStats(&after)
		least = min(least, (after.TotalAlloc-before.TotalAlloc)/runs)
	}
	return least
}

// TestAddrKey: AddrKey is PackedKey of the address's value and the rest, in
// one allocation.
func TestAddrKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr netip.Addr
		rest []Value
	}{
		{"v4 and tag", netip.MustParseAddr("198.18.0.1"), []Value{TagValue(42)}},
		{"v4-mapped", netip.MustParseAddr("::ffff:198.18.0.1"), []Value{TagValue(42)}},
		{"v6 named port", netip.MustParseAddr("2001:db8::1"), []Value{ProtoValue(ProtoTCP), PortValue(443), TagValue(7)}},
		{"address alone", netip.MustParseAddr("2001:db8::1"), nil},
		{"invalid address", netip.Addr{}, []Value{TagValue(1)}},
		{"many values", netip.MustParseAddr("198.18.0.1"), []Value{{1}, {2}, {3}, {4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := append([]Value{AddrValue(tc.addr)}, tc.rest...)
			got := AddrKey(tc.addr, tc.rest...)
			if !slices.EqualFunc(got, want, slices.Equal) {
				t.Fatalf("AddrKey(%v, %x) = %x, want %x", tc.addr, tc.rest, got, want)
			}
			if len(want) <= 4 {
				if n := testing.AllocsPerRun(10, func() { AddrKey(tc.addr, tc.rest...) }); n > 1 {
					t.Errorf("%v allocations, want 1", n)
				}
			}
		})
	}
}
