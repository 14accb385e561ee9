package main

import "runtime"

// From its first allocation on, the Go runtime samples one allocation per
// 512 KiB for memory profiles and keeps the sampled stacks in a hash table
// of 1.4 MB: memory and time spent on profiles that nobody can read
// unless [metrics] profiles serves them. Sampling is off until the
// configuration turns profiles on (only allocations made after that are
// in the heap and allocs profiles).
func init() { runtime.MemProfileRate = 0 }

// memProfileRate is the runtime's default sampling interval.
const memProfileRate = 512 << 10

// applyProfiles samples allocations for memory profiles when on.
func applyProfiles(on bool) {
	if on {
		runtime.MemProfileRate = memProfileRate
	} else {
		runtime.MemProfileRate = 0
	}
}
