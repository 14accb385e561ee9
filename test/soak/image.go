package main

import (
	"debug/elf"
	"fmt"
)

// osAllowance is resident memory outside both the Go runtime's accounting
// (what memory_limit bounds) and the binary's image: the main thread's
// stack, the vDSO and the kernel's auxiliary pages. A few pages each;
// 4 MiB is far above what they hold.
const osAllowance = 4 << 20

// imageBytes is the most the binary's own mappings can keep resident:
// the in-memory size of its loadable segments (text, read-only data,
// data and bss), which no run can grow.
func imageBytes(path string) (uint64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	var n uint64
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			n += p.Memsz
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("%s has no loadable segments", path)
	}
	return n, nil
}

// rssBound is the most resident memory egressd may have under the soak's
// limits: the Go runtime's soft limit (heap, stacks, runtime metadata; the
// collector runs before it is passed, so only a live heap above it, a
// leak, can take egressd past it), category tables mapped outside it, its
// image and the OS's own pages.
func rssBound(memoryLimit, image, mapped uint64) uint64 {
	return memoryLimit + image + mapped + osAllowance
}
