// Package fakeclock is a settable clock for tests. Code under test takes a
// func() time.Time; a test passes (*Clock).Now and moves time on with
// Advance, from any goroutine.
package fakeclock

import (
	"sync"
	"time"
)

// Clock reads a time that changes only when Advance is called.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock that reads start.
func New(start time.Time) *Clock {
	return &Clock{t: start}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d (back, when d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
