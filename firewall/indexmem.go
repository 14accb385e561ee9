package firewall

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The expiry index's arrays hold no Go pointers, so they can live outside
// the Go heap, in anonymous mappings, as the category tables do: the
// collector neither scans them nor counts them towards its heap goal, so
// with GOGC 100 the index no longer costs its size again in headroom.
// indexMem owns an index's mappings; a cleanup unmaps whatever is left
// once the index is unreachable.

// indexMem hands out zeroed memory outside the Go heap. Only the goroutine
// holding the index's write lock allocates and frees.
type indexMem struct {
	live map[uintptr][]byte // by address
	// maps and size count the live mappings and their bytes (for tests;
	// the cleanup changes them from its own goroutine).
	maps, size atomic.Int64
}

// newIndexMem returns the memory of owner, unmapped by a cleanup once
// owner is unreachable.
func newIndexMem(owner *expiryIndex) *indexMem {
	m := &indexMem{live: map[uintptr][]byte{}}
	runtime.AddCleanup(owner, func(m *indexMem) { m.releaseAll() }, m)
	return m
}

// bytes returns size zeroed bytes, mapped (or, should mmap fail, on the
// Go heap).
func (m *indexMem) bytes(size int) []byte {
	if size == 0 {
		return nil
	}
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]byte, size)
	}
	m.live[uintptr(unsafe.Pointer(&b[0]))] = b
	m.maps.Add(1)
	m.size.Add(int64(size))
	return b
}

// free unmaps memory bytes returned; anything else is left to the
// collector.
func (m *indexMem) free(p unsafe.Pointer) {
	b, ok := m.live[uintptr(p)]
	if !ok {
		return
	}
	delete(m.live, uintptr(p))
	m.unmap(b)
}

func (m *indexMem) unmap(b []byte) {
	if unix.Munmap(b) == nil {
		m.maps.Add(-1)
		m.size.Add(-int64(len(b)))
	}
}

func (m *indexMem) releaseAll() {
	for addr, b := range m.live {
		delete(m.live, addr)
		m.unmap(b)
	}
}

// offHeap returns a zeroed slice of n T outside the Go heap. T must hold
// no Go pointers.
func offHeap[T any](m *indexMem, n int) []T {
	var zero T
	b := m.bytes(n * int(unsafe.Sizeof(zero)))
	if b == nil {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)
}

// freeOffHeap frees a slice offHeap returned (its full capacity).
func freeOffHeap[T any](m *indexMem, s []T) {
	if cap(s) > 0 {
		m.free(unsafe.Pointer(unsafe.SliceData(s)))
	}
}

// grown returns s with room for extra more elements: the same slice when
// it has it, else a copy in a mapping twice as large (at least 4 KiB),
// the old one unmapped. T must hold no Go pointers.
func grown[T any](m *indexMem, s []T, extra int) []T {
	if len(s)+extra <= cap(s) {
		return s
	}
	var zero T
	size := max(2*cap(s), len(s)+extra, 4096/int(unsafe.Sizeof(zero)))
	out := offHeap[T](m, size)[:len(s)]
	copy(out, s)
	freeOffHeap(m, s)
	return out
}
