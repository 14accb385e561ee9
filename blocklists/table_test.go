package blocklists

import (
	"math/rand/v2"
	"testing"
)

// TestTableDensityAndLookup builds tables of many sizes, some with
// duplicates and rolled-back entries across builder chunks, and checks
// that every entry is found with its flags and first ref, that other
// hashes are not, and that the table holds at most 12 bytes a slot at a
// load of at least maxLoadPercent minus a cache line of slots.
func TestTableDensityAndLookup(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		dups     int // entries added twice (the second time as a wildcard)
		rollback int // entries added and then truncated away
	}{
		{"one", 1, 0, 0},
		{"seven", 7, 0, 0},
		{"small", 500, 20, 10},
		{"one chunk", builderChunk, 0, 0},
		{"chunk boundary", builderChunk + 1, 100, builderChunk/2 + 3},
		{"several chunks", 3*builderChunk + 77, 1000, 2*builderChunk + 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(tt.n), 1))
			var b tableBuilder
			keys := make([]uint64, tt.n)
			for i := range keys {
				keys[i] = r.Uint64() &^ flagMask
				b.add(keys[i], flagName, makeRef(0, i+1), 2)
			}
			for i := range tt.dups {
				b.add(keys[i], flagWildcard, makeRef(1, 99), 2)
			}
			mark := b.len()
			for range tt.rollback {
				b.add(r.Uint64(), flagName, makeRef(2, 1), 5)
			}
			b.truncate(mark)
			if b.len() != tt.n+tt.dups {
				t.Fatalf("builder holds %d entries after truncate, want %d", b.len(), tt.n+tt.dups)
			}
			tab := b.build()
			if tab.count != tt.n {
				t.Fatalf("count = %d, want %d", tab.count, tt.n)
			}
			for i, k := range keys {
				want := flagName
				if i < tt.dups {
					want |= flagWildcard
				}
				f, ref := tab.lookup(k)
				if f != want || ref != makeRef(0, i+1) {
					t.Fatalf("entry %d: flags %d ref %#x, want %d %#x", i, f, ref, want, makeRef(0, i+1))
				}
			}
			for range 1000 {
				if f, _ := tab.lookup(r.Uint64()); f != 0 {
					t.Fatal("a hash never added was found")
				}
			}
			slots := len(tab.slots)
			if slots*maxLoadPercent > (tt.n+tt.dups)*100+8*maxLoadPercent+100 {
				t.Errorf("%d slots for %d entries: load under %d%%", slots, tt.n+tt.dups, maxLoadPercent)
			}
			if tab.count*100 > slots*maxLoadPercent {
				t.Errorf("%d entries in %d slots: load over %d%%", tab.count, slots, maxLoadPercent)
			}
			if tab.bytes() != slots*12 {
				t.Errorf("bytes = %d, want %d", tab.bytes(), slots*12)
			}
		})
	}
}
