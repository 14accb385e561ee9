package blocklists

import (
	"math/bits"
	"runtime"
)

// Entry kinds, kept in the two low bits of each stored hash.
const (
	flagName     uint64 = 1 // the name itself (and, in subdomains mode, below it)
	flagWildcard uint64 = 2 // only the names below it ("*.name")
	flagMask            = flagName | flagWildcard
)

// A ref locates the line an entry came from: source index in the high 8
// bits, line number in the low 24 (0 when it does not fit).
const (
	refLineBits = 24
	refLineMax  = 1<<refLineBits - 1
	refSrcMax   = 1<<(32-refLineBits) - 1
)

func makeRef(src, line int) uint32 {
	if src > refSrcMax || line > refLineMax || line < 0 {
		line = 0
	}
	return uint32(min(src, refSrcMax))<<refLineBits | uint32(line)
}

func refSource(r uint32) int { return int(r >> refLineBits) }
func refLine(r uint32) int   { return int(r & refLineMax) }

// table is an immutable hash set of 8-slot buckets (a cache line each),
// each entry in one of two buckets chosen from its hash (bucketized
// cuckoo hashing), so tables fill to maxLoadPercent and a lookup reads at
// most two cache lines. A slot holds the hash with its low bits replaced
// by the entry's flags, so an occupied slot is never zero; a bucket fills
// from its first slot and nothing is ever deleted, so the first empty
// slot ends a bucket. The number of buckets is not a power of two: a
// bucket is the high half of a 64-bit product with it, so the table can
// be sized to its entries (see tableBuckets).
//
// refs is nil unless the Manager keeps lines (Options.Lines): only
// `egressd explain` asks where an entry came from, and without refs a
// slot costs 8 bytes instead of 12.
//
// On Linux a large table's slots and refs live in an anonymous mapping
// outside the Go heap (tablemem_linux.go), owned by mem: the collector
// neither scans them nor counts them towards its heap goal. Slices into
// the mapping never leave the table, and lookups keep mem alive until
// they have read the slot, so the mapping is unmapped only once no table
// refers to it and no lookup runs.
type table struct {
	slots []uint64 // bucketSlots a bucket
	refs  []uint32 // parallel to slots, or nil
	nb    uint64   // buckets
	mem   *tableMem
	count int
	// depths has bit d set when some entry has d labels (63 for 63 or
	// more), so lookups skip suffixes no entry can be.
	depths uint64
}

// bucketSlots is the number of slots in a bucket: 64 bytes.
const bucketSlots = 8

func depthBit(labels int) uint64 { return 1 << min(labels, 63) }

// hasDepth reports whether an entry of this many labels may exist.
func (t *table) hasDepth(labels int) bool { return t.depths&depthBit(labels) != 0 }

// buckets are the two buckets key (a hash without flags) may be in.
func (t *table) buckets(key uint64) (int, int) {
	b1, _ := bits.Mul64(key, t.nb)
	b2, _ := bits.Mul64(key*0x9e3779b97f4a7c15, t.nb)
	return int(b1), int(b2)
}

// lookup returns the flags and ref stored for h, or zero flags.
func (t *table) lookup(h uint64) (uint64, uint32) {
	if t.count == 0 {
		return 0, 0
	}
	key := h &^ flagMask
	b1, b2 := t.buckets(key)
	for _, b := range [2]int{b1, b2} {
		s := t.slots[b*bucketSlots : b*bucketSlots+bucketSlots]
		for j, v := range s {
			if v == 0 {
				break
			}
			if v&^flagMask == key {
				var r uint32
				if t.refs != nil {
					r = t.refs[b*bucketSlots+j]
				}
				runtime.KeepAlive(t.mem)
				return v & flagMask, r
			}
		}
	}
	runtime.KeepAlive(t.mem)
	return 0, 0
}

// hugePageMin is the table size from which transparent huge pages are
// requested: lookups in a table far larger than the caches miss the TLB
// on nearly every probe with 4 KiB pages.
const hugePageMin = 8 << 20

// maxLoadPercent is the share of a table's slots its entries fill at
// most (unless a build has to grow the table, which at this load is
// rare). With two buckets of 8 slots to choose from, insertion succeeds
// up to about 98%; a lookup reads one or two buckets whatever the load.
// Linear probing needed 70% to keep lookups short (17 bytes a domain with
// refs, 11.4 without), this layout takes 8.6 without.
const maxLoadPercent = 93

// tableBuckets is the number of buckets for n entries at maxLoadPercent.
func tableBuckets(n int) int {
	return max((n*100+bucketSlots*maxLoadPercent-1)/(bucketSlots*maxLoadPercent), 1)
}

// builderChunk is the most entries a tableBuilder chunk holds: the
// builder grows by whole chunks instead of copying one slice that keeps
// growing, which left the heap with several dead copies of it while a
// large list loaded.
const builderChunk = 1 << 16

// chunk is a run of parsed entries.
type chunk struct {
	keys []uint64 // hash&^flagMask | flag
	refs []uint32 // parallel to keys, or nil without lines
}

// tableBuilder collects entries as they are parsed. With lines set, it
// keeps each entry's ref and the table it builds has refs.
type tableBuilder struct {
	lines  bool
	chunks []chunk
	n      int
	depths uint64
}

func (b *tableBuilder) add(h, flag uint64, ref uint32, labels int) {
	if len(b.chunks) == 0 || len(b.chunks[len(b.chunks)-1].keys) == cap(b.chunks[len(b.chunks)-1].keys) {
		// Small categories stay small: chunks start at 256 entries and
		// double up to builderChunk.
		size := builderChunk
		if b.n < builderChunk {
			size = max(256, min(builderChunk, b.n))
		}
		ch := chunk{keys: make([]uint64, 0, size)}
		if b.lines {
			ch.refs = make([]uint32, 0, size)
		}
		b.chunks = append(b.chunks, ch)
	}
	c := &b.chunks[len(b.chunks)-1]
	c.keys = append(c.keys, h&^flagMask|flag)
	if b.lines {
		c.refs = append(c.refs, ref)
	}
	b.n++
	b.depths |= depthBit(labels)
}

func (b *tableBuilder) len() int { return b.n }

// truncate drops everything added after the builder had n entries.
func (b *tableBuilder) truncate(n int) {
	for len(b.chunks) > 0 && b.n > n {
		c := &b.chunks[len(b.chunks)-1]
		drop := min(len(c.keys), b.n-n)
		c.keys = c.keys[:len(c.keys)-drop]
		if c.refs != nil {
			c.refs = c.refs[:len(c.refs)-drop]
		}
		b.n -= drop
		if len(c.keys) == 0 {
			b.chunks[len(b.chunks)-1] = chunk{}
			b.chunks = b.chunks[:len(b.chunks)-1]
		}
	}
}

// build makes the table and releases the builder's memory, each chunk as
// soon as its entries are in, so a collection during the build can
// already free them. Duplicates merge their flags and keep the first
// line.
func (b *tableBuilder) build() table {
	n, lines := b.n, b.lines
	if n == 0 {
		*b = tableBuilder{lines: lines}
		return table{}
	}
	t := newTable(tableBuckets(n), lines, b.depths)
	var kick kicker
	for c := range b.chunks {
		ch := b.chunks[c]
		b.chunks[c] = chunk{}
		for j, k := range ch.keys {
			var ref uint32
			if ch.refs != nil {
				ref = ch.refs[j]
			}
			t = t.add(k, ref, &kick)
		}
	}
	*b = tableBuilder{lines: lines}
	runtime.KeepAlive(t.mem)
	return t
}

// newTable allocates an empty table of nb buckets.
func newTable(nb int, lines bool, depths uint64) table {
	t := table{nb: uint64(nb), depths: depths}
	t.slots, t.refs, t.mem = allocTable(nb*bucketSlots, lines)
	if t.mem == nil {
		adviseHugePages(t.slots) // before the first write faults the pages in
		if lines {
			adviseHugePages(t.refs)
		}
	}
	return t
}

// add inserts k, growing the table by a tenth (and inserting everything
// again) in the rare case that no place is found for it.
func (t table) add(k uint64, ref uint32, kick *kicker) table {
	for {
		var ok bool
		if k, ref, ok = t.insert(k, ref, kick); ok {
			return t
		}
		bigger := newTable(int(t.nb+t.nb/10+1), t.refs != nil, t.depths)
		for i, v := range t.slots {
			if v != 0 {
				var r uint32
				if t.refs != nil {
					r = t.refs[i]
				}
				bigger = bigger.add(v, r, kick)
			}
		}
		t = bigger
	}
}

// maxKicks bounds the entries one insertion moves to their other bucket
// before the table grows.
const maxKicks = 500

// kicker picks the slot an insertion evicts (xorshift, fixed seed, so a
// build is deterministic).
type kicker struct{ s uint64 }

func (r *kicker) next() int {
	if r.s == 0 {
		r.s = 0x853c49e6748fea9b
	}
	r.s ^= r.s << 13
	r.s ^= r.s >> 7
	r.s ^= r.s << 17
	return int(r.s % bucketSlots)
}

// put stores k and ref at slot i.
func (t *table) put(i int, k uint64, ref uint32) {
	t.slots[i] = k
	if t.refs != nil {
		t.refs[i] = ref
	}
}

// free is the first empty slot of bucket b, or -1.
func (t *table) free(b int) int {
	for i := b * bucketSlots; i < b*bucketSlots+bucketSlots; i++ {
		if t.slots[i] == 0 {
			return i
		}
	}
	return -1
}

// insert adds key k (hash and flags) with its ref, or merges its flags
// into an entry of the same hash. When every slot of both buckets is
// taken, it moves entries to their other bucket, up to maxKicks of them;
// if that finds no empty slot it returns the entry left without one
// (not necessarily k) and false.
func (t *table) insert(k uint64, ref uint32, kick *kicker) (uint64, uint32, bool) {
	key := k &^ flagMask
	b1, b2 := t.buckets(key)
	for _, b := range [2]int{b1, b2} {
		for i := b * bucketSlots; i < b*bucketSlots+bucketSlots; i++ {
			v := t.slots[i]
			if v == 0 {
				break
			}
			if v&^flagMask == key {
				t.slots[i] = v | k&flagMask
				return 0, 0, true
			}
		}
	}
	b := b1
	for range maxKicks {
		if i := t.free(b); i >= 0 {
			t.put(i, k, ref)
			t.count++
			return 0, 0, true
		}
		if b == b1 {
			if i := t.free(b2); i >= 0 {
				t.put(i, k, ref)
				t.count++
				return 0, 0, true
			}
		}
		// Evict a slot of b; its entry goes to its other bucket.
		i := b*bucketSlots + kick.next()
		var r uint32
		if t.refs != nil {
			r = t.refs[i]
		}
		ek := t.slots[i]
		t.put(i, k, ref)
		k, ref = ek, r
		e1, e2 := t.buckets(k &^ flagMask)
		b1, b2 = e1, e2
		if e1 == b {
			b = e2
		} else {
			b = e1
		}
	}
	return k, ref, false
}

// heapTable is allocTable's Go heap version.
func heapTable(n int, lines bool) ([]uint64, []uint32, *tableMem) {
	var refs []uint32
	if lines {
		refs = make([]uint32, n)
	}
	return make([]uint64, n), refs, nil
}

// bytes is the memory the table holds, on the heap or mapped.
func (t *table) bytes() int { return len(t.slots)*8 + len(t.refs)*4 }

// mappedBytes is the part of bytes mapped outside the Go heap.
func (t *table) mappedBytes() int {
	if t.mem == nil {
		return 0
	}
	return t.bytes()
}
