package querylog

import (
	"sync"
	"time"
)

// maxRateClients bounds the clients whose denied-line budget is tracked.
const maxRateClients = 4096

// clientRate is a token bucket per client for the lines of denied queries:
// rate lines a second after a burst of one second's worth (at least one).
// Lines over the budget are counted per client, and the count is handed
// to the client's next line that is written.
type clientRate struct {
	rate, burst float64
	now         func() time.Time

	mu        sync.Mutex
	clients   map[string]*lineBucket
	lastSweep time.Time
}

type lineBucket struct {
	tokens     float64
	last       time.Time
	suppressed uint64 // lines left out since the last one written
}

func newClientRate(rate float64, now func() time.Time) *clientRate {
	burst := float64(int(rate))
	if burst < rate {
		burst++
	}
	return &clientRate{rate: rate, burst: max(burst, 1), now: now, clients: make(map[string]*lineBucket)}
}

// allow reports whether a line for client may be written now and, if so,
// how many of its lines were left out before it.
func (r *clientRate) allow(client string) (ok bool, suppressed uint64) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.clients[client]
	if b == nil {
		if len(r.clients) >= maxRateClients {
			r.sweep(now)
		}
		b = &lineBucket{tokens: r.burst, last: now}
		r.clients[client] = b
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
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}

// sweep makes room for a new client: at most once a second it forgets
// clients whose bucket has refilled and who have no count pending; when
// that frees nothing, it forgets one arbitrary client (whose pending count
// is then only in the metric). Called with mu held.
func (r *clientRate) sweep(now time.Time) {
	if now.Sub(r.lastSweep) >= time.Second {
		r.lastSweep = now
		full := time.Duration(r.burst / r.rate * float64(time.Second))
		for c, b := range r.clients {
			if b.suppressed == 0 && now.Sub(b.last) >= full {
				delete(r.clients, c)
			}
		}
	}
	if len(r.clients) < maxRateClients {
		return
	}
	for c := range r.clients {
		delete(r.clients, c)
		return
	}
}
