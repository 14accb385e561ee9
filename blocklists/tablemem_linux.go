package blocklists

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// offHeapMin is the table size from which a table's arrays are mapped
// outside the Go heap: smaller tables (the built-in categories) would
// waste most of a page each.
const offHeapMin = 64 << 10

// Live mappings and their bytes, for metrics and tests.
var liveMappings, liveMappedBytes atomic.Int64

// tableMem owns an anonymous mapping holding a table's slots and refs.
// The mapping is unmapped by a cleanup once the tableMem is unreachable;
// every table that points into it keeps its tableMem, and lookups keep
// it alive until they are done (runtime.KeepAlive), so no slice into the
// mapping is read after it is gone.
type tableMem struct {
	size int
}

// allocTable returns a zeroed slots array of n entries, with lines a
// zeroed refs array of n entries (else nil), and the owner of their
// memory (nil for Go heap memory).
func allocTable(n int, lines bool) ([]uint64, []uint32, *tableMem) {
	size := n * 8
	if lines {
		size += n * 4
	}
	if size < offHeapMin {
		return heapTable(n, lines)
	}
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return heapTable(n, lines)
	}
	adviseHugePages(b) // before the first write faults the pages in
	slots := unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), n)
	var refs []uint32
	if lines {
		refs = unsafe.Slice((*uint32)(unsafe.Pointer(&b[n*8])), n)
	}
	mem := &tableMem{size: size}
	liveMappings.Add(1)
	liveMappedBytes.Add(int64(size))
	runtime.AddCleanup(mem, unmapTable, b)
	return slots, refs, mem
}

func unmapTable(b []byte) {
	size := len(b)
	if unix.Munmap(b) == nil {
		liveMappings.Add(-1)
		liveMappedBytes.Add(-int64(size))
	}
}
