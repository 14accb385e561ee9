package blocklists

import "math/bits"

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
// so an occupied slot is never zero.
type table struct {
	slots []uint64
	refs  []uint32 // parallel to slots
	shift uint     // 64 - log2(len(slots))
	count int
	// depths has bit d set when some entry has d labels (63 for 63 or
	// more), so lookups skip suffixes no entry can be.
	depths uint64
}

func depthBit(labels int) uint64 { return 1 << min(labels, 63) }

// hasDepth reports whether an entry of this many labels may exist.
func (t *table) hasDepth(labels int) bool { return t.depths&depthBit(labels) != 0 }

// lookup returns the flags and ref stored for h, or zero flags.
func (t *table) lookup(h uint64) (uint64, uint32) {
	if t.count == 0 {
		return 0, 0
	}
	key := h &^ flagMask
	mask := len(t.slots) - 1
	for i := int(h >> t.shift); ; i = (i + 1) & mask {
		v := t.slots[i]
		if v == 0 {
			return 0, 0
		}
		if v&^flagMask == key {
			return v & flagMask, t.refs[i]
		}
	}
}

// hugePageMin is the table size from which transparent huge pages are
// requested: lookups in a table far larger than the caches miss the TLB
// on nearly every probe with 4 KiB pages.
const hugePageMin = 8 << 20

// tableBuilder collects entries as they are parsed.
type tableBuilder struct {
	keys   []uint64 // hash&^flagMask | flag
	refs   []uint32
	depths uint64
}

func (b *tableBuilder) add(h, flag uint64, ref uint32, labels int) {
	b.keys = append(b.keys, h&^flagMask|flag)
	b.refs = append(b.refs, ref)
	b.depths |= depthBit(labels)
}

func (b *tableBuilder) len() int { return len(b.keys) }

// truncate drops everything added after the builder had n entries.
func (b *tableBuilder) truncate(n int) {
	b.keys, b.refs = b.keys[:n], b.refs[:n]
}

// build makes the table and releases the builder's memory. The table is
// sized to a load factor between 3/8 and 3/4; duplicates merge their flags
// and keep the first line.
func (b *tableBuilder) build() table {
	n := len(b.keys)
	if n == 0 {
		*b = tableBuilder{}
		return table{}
	}
	logSize := max(bits.Len(uint(n*4/3)), 3)
	t := table{
		slots:  make([]uint64, 1<<logSize),
		refs:   make([]uint32, 1<<logSize),
		shift:  uint(64 - logSize),
		depths: b.depths,
	}
	adviseHugePages(t.slots) // before the first write faults the pages in
	adviseHugePages(t.refs)
	mask := len(t.slots) - 1
	for j, k := range b.keys {
		key := k &^ flagMask
		for i := int(k >> t.shift); ; i = (i + 1) & mask {
			v := t.slots[i]
			if v == 0 {
				t.slots[i] = k
				t.refs[i] = b.refs[j]
				t.count++
				break
			}
			if v&^flagMask == key {
				t.slots[i] = v | k&flagMask
				break
			}
		}
	}
	*b = tableBuilder{}
	return t
}

// bytes is the heap the table holds.
func (t *table) bytes() int { return len(t.slots)*8 + len(t.refs)*4 }
