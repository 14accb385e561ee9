//go:build !race

// Package raceflag tells tests whether the race detector is on.
package raceflag

// Enabled reports whether the binary was built with the race detector
// (see on.go).
const Enabled = false
