package upstream

import (
	"sync/atomic"
	"time"
)

// upstreamBackoff is how long a server that failed to answer (error or
// timeout) goes to the back of the order. Without it, a dead first server
// would cost every cache miss a full timeout.
const upstreamBackoff = 5 * time.Second

// upstreamHealth remembers, per upstream, until when it is considered down.
type upstreamHealth struct {
	downUntil []atomic.Int64 // unix nanoseconds, indexed like serverList.upstreams
}

func newUpstreamHealth(n int) *upstreamHealth {
	return &upstreamHealth{downUntil: make([]atomic.Int64, n)}
}

// order returns upstream indices to try: servers that are up in configured
// order, then those in backoff, still in configured order, as a last
// resort.
func (h *upstreamHealth) order(now time.Time) []int {
	order := make([]int, 0, len(h.downUntil))
	for i := range h.downUntil {
		if !h.down(i, now) {
			order = append(order, i)
		}
	}
	for i := range h.downUntil {
		if h.down(i, now) {
			order = append(order, i)
		}
	}
	return order
}

func (h *upstreamHealth) down(i int, now time.Time) bool {
	return now.UnixNano() < h.downUntil[i].Load()
}

// observe records whether server i answered at all; an answer, whatever
// its RCODE, shows it is reachable.
func (h *upstreamHealth) observe(i int, answered bool, now time.Time) {
	if answered {
		h.downUntil[i].Store(0)
		return
	}
	h.downUntil[i].Store(now.Add(upstreamBackoff).UnixNano())
}
