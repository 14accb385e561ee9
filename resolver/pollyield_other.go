//go:build !linux

package resolver

import "runtime"

// pollYield falls back to runtime.Gosched where egressd has no pipe-based
// yield; see pollyield_linux.go.
type pollYield struct{}

func newPollYield() (*pollYield, error) { return &pollYield{}, nil }

func (y *pollYield) yield() { runtime.Gosched() }

func (y *pollYield) close() {}
