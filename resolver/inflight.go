package resolver

import (
	"sync/atomic"
	"time"
)

// maxInFlight bounds the queries being handled at once. miekg/dns starts a
// goroutine per UDP datagram without limit, and a query can wait seconds on
// upstreams and the firewall, so a flood would otherwise pile up
// goroutines. Queries beyond the bound are dropped; UDP clients retry.
const maxInFlight = 8192

// dropWarnInterval spaces out the warning about dropped queries.
const dropWarnInterval = 10 * time.Second

// inFlight counts queries being handled and rate-limits the drop warning.
type inFlight struct {
	n        atomic.Int64
	dropped  atomic.Int64
	lastWarn atomic.Int64 // unix nanoseconds
}

// acquire reports whether another query may start; release must follow a
// true result.
func (f *inFlight) acquire() bool {
	if f.n.Add(1) > maxInFlight {
		f.n.Add(-1)
		f.dropped.Add(1)
		return false
	}
	return true
}

func (f *inFlight) release() { f.n.Add(-1) }

// warnDue reports, at most once per interval, that drops should be logged,
// and how many happened since the last report.
func (f *inFlight) warnDue(now time.Time) (int64, bool) {
	last := f.lastWarn.Load()
	if now.UnixNano()-last < int64(dropWarnInterval) || !f.lastWarn.CompareAndSwap(last, now.UnixNano()) {
		return 0, false
	}
	return f.dropped.Swap(0), true
}
