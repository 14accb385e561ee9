package blocklists

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTableDensityAndLookup builds tables of many sizes, some with
// duplicates and rolled-back entries across builder chunks, and checks
// that every entry is found with its flags and first ref (0 without
// lines), that other hashes are not, and that the table holds 8 bytes a
// slot (12 with lines) at a load of at least maxLoadPercent minus a
// cache line of slots.
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
		for _, lines := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/lines=%v", tt.name, lines), func(t *testing.T) {
				testTable(t, tt.n, tt.dups, tt.rollback, lines)
			})
		}
	}
}

func testTable(t *testing.T, n, dups, rollback int, lines bool) {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	b := tableBuilder{lines: lines}
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = r.Uint64() &^ flagMask
		b.add(keys[i], flagName, makeRef(0, i+1), 2)
	}
	for i := range dups {
		b.add(keys[i], flagWildcard, makeRef(1, 99), 2)
	}
	mark := b.len()
	for range rollback {
		b.add(r.Uint64(), flagName, makeRef(2, 1), 5)
	}
	b.truncate(mark)
	if b.len() != n+dups {
		t.Fatalf("builder holds %d entries after truncate, want %d", b.len(), n+dups)
	}
	tab := b.build()
	if tab.count != n {
		t.Fatalf("count = %d, want %d", tab.count, n)
	}
	for i, k := range keys {
		want := flagName
		if i < dups {
			want |= flagWildcard
		}
		wantRef := makeRef(0, i+1)
		if !lines {
			wantRef = 0
		}
		f, ref := tab.lookup(k)
		if f != want || ref != wantRef {
			t.Fatalf("entry %d: flags %d ref %#x, want %d %#x", i, f, ref, want, wantRef)
		}
	}
	for range 1000 {
		if f, _ := tab.lookup(r.Uint64()); f != 0 {
			t.Fatal("a hash never added was found")
		}
	}
	slots := len(tab.slots)
	if slots*maxLoadPercent > (n+dups)*100+8*maxLoadPercent+100 {
		t.Errorf("%d slots for %d entries: load under %d%%", slots, n+dups, maxLoadPercent)
	}
	if tab.count*100 > slots*maxLoadPercent {
		t.Errorf("%d entries in %d slots: load over %d%%", tab.count, slots, maxLoadPercent)
	}
	perSlot := 8
	if lines {
		perSlot = 12
	}
	if tab.bytes() != slots*perSlot || (tab.refs != nil) != lines {
		t.Errorf("bytes = %d, want %d (refs kept: %v)", tab.bytes(), slots*perSlot, tab.refs != nil)
	}
}

// TestTableBuckets covers what the bucketized layout must handle beyond
// random hashes: a zero hash, many entries whose two buckets are the same
// few (the table grows until they fit), duplicates of entries that were
// moved to their other bucket, and builds that place everything the same
// way each time.
func TestTableBuckets(t *testing.T) {
	// crowded returns m keys whose two buckets, in a table of nb buckets,
	// are both among the first two.
	crowded := func(nb, m int, r *rand.Rand) []uint64 {
		probe := table{nb: uint64(nb)}
		var keys []uint64
		for len(keys) < m {
			k := r.Uint64() &^ flagMask
			if b1, b2 := probe.buckets(k); b1 < 2 && b2 < 2 {
				keys = append(keys, k)
			}
		}
		return keys
	}
	tests := []struct {
		name   string
		n      int // random entries
		crowd  int // entries crowded into two buckets
		zero   bool
		grows  bool
		second bool // every entry added again as a wildcard
	}{
		{"zero hash alone", 0, 0, true, false, false},
		{"zero hash among others", 1000, 0, true, false, true},
		{"two buckets, just fits", 100, 16, false, false, false},
		{"two buckets overfull", 100, 40, false, true, false},
		{"overfull with duplicates", 5000, 60, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(tt.n), uint64(tt.crowd)))
			var keys []uint64
			for range tt.n {
				keys = append(keys, r.Uint64()&^flagMask)
			}
			total := tt.n + tt.crowd
			if tt.zero {
				total++
			}
			keys = append(keys, crowded(tableBuckets(total), tt.crowd, r)...)
			if tt.zero {
				keys = append(keys, 0)
			}
			build := func() table {
				b := tableBuilder{lines: true}
				for i, k := range keys {
					b.add(k, flagName, makeRef(0, i+1), 2)
				}
				if tt.second {
					for _, k := range keys {
						b.add(k, flagWildcard, makeRef(1, 1), 2)
					}
				}
				return b.build()
			}
			tab := build()
			if tab.count != len(keys) {
				t.Fatalf("count = %d, want %d", tab.count, len(keys))
			}
			want := flagName
			if tt.second {
				want |= flagWildcard
			}
			for i, k := range keys {
				if f, ref := tab.lookup(k); f != want || ref != makeRef(0, i+1) {
					t.Fatalf("entry %d (%#x): flags %d ref %#x, want %d %#x", i, k, f, ref, want, makeRef(0, i+1))
				}
			}
			added := len(keys) // the builder sizes the table for every entry added
			if tt.second {
				added *= 2
			}
			if grew := int(tab.nb) > tableBuckets(added); grew != tt.grows {
				t.Errorf("%d buckets for %d entries (sized %d): grew %v, want %v", tab.nb, len(keys), tableBuckets(added), grew, tt.grows)
			}
			again := build()
			if !slices.Equal(tab.slots, again.slots) || !slices.Equal(tab.refs, again.refs) {
				t.Error("two builds of the same entries differ")
			}
		})
	}
}
