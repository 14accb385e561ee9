package resolver

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineStep is how often a sharedDeadline makes a new context: a
// caller's deadline is between timeout-deadlineStep and timeout away.
const deadlineStep = 100 * time.Millisecond

// sharedDeadline hands out contexts that expire about timeout from now,
// one per deadlineStep shared by every caller, instead of a context and a
// timer per query. Nobody cancels them early: they only time out.
// The zero value is ready; timeout is firewallTimeout.
type sharedDeadline struct {
	cur atomic.Pointer[timedContext]

	mu      sync.Mutex
	pending []timedContext // made and not yet past their deadline
}

type timedContext struct {
	ctx    context.Context
	cancel context.CancelFunc
	renew  time.Time // when callers should get a newer one
	expiry time.Time
}

// context returns a context whose deadline is at most firewallTimeout and
// at least firewallTimeout-deadlineStep after now.
func (d *sharedDeadline) context(now time.Time) context.Context {
	if c := d.cur.Load(); c != nil && now.Before(c.renew) {
		return c.ctx
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.cur.Load(); c != nil && now.Before(c.renew) {
		return c.ctx
	}
	// Release the timers of contexts nobody can still be handed.
	kept := d.pending[:0]
	for _, p := range d.pending {
		if now.After(p.expiry) {
			p.cancel()
			continue
		}
		kept = append(kept, p)
	}
	clear(d.pending[len(kept):])
	d.pending = kept
	expiry := now.Add(firewallTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), expiry)
	c := timedContext{ctx: ctx, cancel: cancel, renew: now.Add(deadlineStep), expiry: expiry}
	d.pending = append(d.pending, c)
	d.cur.Store(&c)
	return ctx
}
