// Package linerate bounds how many log lines each key (a client, a
// message) may write: a token bucket per key, rate lines a second after a
// burst of one second's worth (at least one). Lines over the budget are
// counted per key, and the count is handed to the key's next line that is
// written, so a reader learns how many were left out. The keys tracked are
// bounded too.
package linerate

import (
	"sync"
	"time"
)

// Limiter is safe for concurrent use.
type Limiter struct {
	rate, burst float64
	maxKeys     int
	now         func() time.Time

	mu        sync.Mutex
	keys      map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed uint64 // lines left out since the last one written
}

// New returns a limiter of rate lines a second per key (rate > 0), which
// tracks at most maxKeys keys (at least 1) and reads the time from now.
func New(rate float64, maxKeys int, now func() time.Time) *Limiter {
	burst := float64(int(rate))
	if burst < rate {
		burst++
	}
	return &Limiter{rate: rate, burst: max(burst, 1), maxKeys: max(maxKeys, 1), now: now, keys: make(map[string]*bucket)}
}

// Allow reports whether a line for key may be written now and, if so, how
// many of its lines were left out before it.
func (r *Limiter) Allow(key string) (ok bool, leftOut uint64) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.keys[key]
	if b == nil {
		if len(r.keys) >= r.maxKeys {
			r.sweep(now)
		}
		b = &bucket{tokens: r.burst, last: now}
		r.keys[key] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(r.burst, b.tokens+elapsed.Seconds()*r.rate)
		b.last = now
	}
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	leftOut, b.suppressed = b.suppressed, 0
	return true, leftOut
}

// Len is the number of keys tracked.
func (r *Limiter) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

// sweep makes room for a new key: at most once a second it forgets keys
// whose bucket has refilled and that have no count pending; when that
// frees nothing, it forgets one arbitrary key (and its pending count).
// Called with mu held.
func (r *Limiter) sweep(now time.Time) {
	if now.Sub(r.lastSweep) >= time.Second {
		r.lastSweep = now
		full := time.Duration(r.burst / r.rate * float64(time.Second))
		for k, b := range r.keys {
			if b.suppressed == 0 && now.Sub(b.last) >= full {
				delete(r.keys, k)
			}
		}
	}
	if len(r.keys) < r.maxKeys {
		return
	}
	for k := range r.keys {
		delete(r.keys, k)
		return
	}
}
