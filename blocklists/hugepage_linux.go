package blocklists

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// adviseHugePages asks the kernel to back a freshly allocated slice with
// huge pages (useful where THP is in "madvise" mode). Only whole 2 MiB
// pages inside the slice are advised; errors are harmless and ignored.
func adviseHugePages[T any](s []T) {
	size := uintptr(len(s)) * unsafe.Sizeof(s[0])
	if size < hugePageMin {
		return
	}
	const huge = 2 << 20
	whole := unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), size)
	start := uintptr(unsafe.Pointer(&s[0]))
	lo := ((start+huge-1)&^(huge-1) - start)
	hi := ((start+size)&^(huge-1) - start)
	if hi <= lo {
		return
	}
	region := whole[lo:hi]
	_ = unix.Madvise(region, unix.MADV_HUGEPAGE)
}
