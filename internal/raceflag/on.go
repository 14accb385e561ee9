//go:build race

package raceflag

// Enabled reports whether the binary was built with the race detector,
// which makes allocations, stack frames and the stack guard larger than
// they are in a normal build: tests that measure those skip under it.
const Enabled = true
