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

// table is an immutable open-addressing hash set with linear probing.
// A slot holds the hash with its low bits replaced by the entry's flags,
// so an occupied slot is never zero. The number of slots is not a power
// of two: a hash's home slot is the high half of hash*len(slots), so the
// table can be sized to its entries (see tableSlots).
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
	slots []uint64
	refs  []uint32 // parallel to slots, or nil
	mem   *tableMem
	count int
	// depths has bit d set when some entry has d labels (63 for 63 or
	// more), so lookups skip suffixes no entry can be.
	depths uint64
}

func depthBit(labels int) uint64 { return 1 << min(labels, 63) }

// hasDepth reports whether an entry of this many labels may exist.
func (t *table) hasDepth(labels int) bool { return t.depths&depthBit(labels) != 0 }

// home is the slot h's probe starts at.
func (t *table) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(t.slots)))
	return int(hi)
}

// lookup returns the flags and ref stored for h, or zero flags.
func (t *table) lookup(h uint64) (uint64, uint32) {
	if t.count == 0 {
		return 0, 0
	}
	key := h &^ flagMask
	n := len(t.slots)
	for i := t.home(h); ; {
		v := t.slots[i]
		if v == 0 {
			runtime.KeepAlive(t.mem)
			return 0, 0
		}
		if v&^flagMask == key {
			var r uint32
			if t.refs != nil {
				r = t.refs[i]
			}
			runtime.KeepAlive(t.mem)
			return v & flagMask, r
		}
		if i++; i == n {
			i = 0
		}
	}
}

// hugePageMin is the table size from which transparent huge pages are
// requested: lookups in a table far larger than the caches miss the TLB
// on nearly every probe with 4 KiB pages.
const hugePageMin = 8 << 20

// maxLoadPercent is the share of a table's slots its entries fill at
// most. Linear probing looks at about (1 + 1/(1-a)²)/2 slots for a name
// that is not in the table (most lookups): 6 at 70%, 8 bytes each, so
// usually one cache line. A power-of-two table (load between 35% and
// 70%) took 25 bytes a domain instead of the 17 of this one.
const maxLoadPercent = 70

// tableSlots is the number of slots for n entries: n at maxLoadPercent,
// rounded up to a whole cache line of slots.
func tableSlots(n int) int {
	s := (n*100 + maxLoadPercent - 1) / maxLoadPercent
	return max((s+7)&^7, 8)
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
	size := tableSlots(n)
	t := table{depths: b.depths}
	t.slots, t.refs, t.mem = allocTable(size, lines)
	if t.mem == nil {
		adviseHugePages(t.slots) // before the first write faults the pages in
		if lines {
			adviseHugePages(t.refs)
		}
	}
	for c := range b.chunks {
		ch := b.chunks[c]
		b.chunks[c] = chunk{}
		for j, k := range ch.keys {
			var ref uint32
			if ch.refs != nil {
				ref = ch.refs[j]
			}
			t.insert(k, ref)
		}
	}
	*b = tableBuilder{lines: lines}
	runtime.KeepAlive(t.mem)
	return t
}

// insert adds key k (hash and flags) with its ref, or merges its flags
// into an entry of the same hash.
func (t *table) insert(k uint64, ref uint32) {
	key := k &^ flagMask
	n := len(t.slots)
	for i := t.home(k); ; {
		v := t.slots[i]
		if v == 0 {
			t.slots[i] = k
			if t.refs != nil {
				t.refs[i] = ref
			}
			t.count++
			return
		}
		if v&^flagMask == key {
			t.slots[i] = v | k&flagMask
			return
		}
		if i++; i == n {
			i = 0
		}
	}
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
