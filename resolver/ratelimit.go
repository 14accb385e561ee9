package resolver

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Per-client rate limiting is a token bucket per client: an IPv4 address
// or an IPv6 /64 by default (see clientKeys), since one host may use any
// number of addresses in its /64.
//
// Memory is bounded: buckets live in rateShards maps of at most
// bucketsPerShard entries. A bucket idle long enough to have refilled
// completely carries no state and is swept when its shard is full; when
// nothing is idle (a flood from many addresses), an arbitrary bucket is
// forgotten, which at worst gives that client a fresh burst.
const (
	rateShards      = 64
	bucketsPerShard = 1024
	sweepInterval   = time.Second
)

type rateLimiter struct {
	rate   float64 // tokens per second
	burst  float64
	idle   int64 // nanoseconds after which a bucket is full again
	keys   clientKeys
	shards [rateShards]rateShard
}

type rateShard struct {
	mu        sync.Mutex
	buckets   map[netip.Addr]bucket
	lastSweep int64
}

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last refill
	// dropped counts queries refused since the last rate-limited log line
	// for this client, logged at unix nanoseconds logged.
	dropped uint64
	logged  int64
}

// newRateLimiter returns nil when qps is not positive: rate limiting off
// costs one nil check per query.
func newRateLimiter(qps float64, burst int, keys clientKeys) *rateLimiter {
	if qps <= 0 || math.IsNaN(qps) || math.IsInf(qps, 0) {
		return nil
	}
	b := float64(burst)
	if burst <= 0 {
		b = math.Ceil(qps)
	}
	l := &rateLimiter{rate: qps, burst: b, idle: int64(b / qps * float64(time.Second)), keys: keys}
	for i := range l.shards {
		l.shards[i].buckets = make(map[netip.Addr]bucket)
	}
	return l
}

// allow takes a token from the bucket of client's key and reports whether
// there was one. When there was not and a log line about the client is
// due (see rateLogInterval), report is the number of queries refused since
// the previous line, this one included; otherwise it is 0.
func (l *rateLimiter) allow(client netip.Addr, now time.Time) (ok bool, report uint64) {
	t := now.UnixNano()
	client = l.keys.key(client)
	sh := &l.shards[shardOf(client)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.buckets[client]
	if ok {
		if elapsed := t - b.last; elapsed > 0 {
			b.tokens = min(l.burst, b.tokens+float64(elapsed)/float64(time.Second)*l.rate)
		}
	} else {
		if len(sh.buckets) >= bucketsPerShard {
			sh.makeRoom(t, l.idle)
		}
		b.tokens = l.burst
	}
	b.last = max(b.last, t)
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	} else {
		b.dropped++
		if b.logged == 0 || t-b.logged >= int64(rateLogInterval) {
			report, b.dropped, b.logged = b.dropped, 0, t
		}
	}
	sh.buckets[client] = b
	return allowed, report
}

// rateLogInterval is the shortest time between two rate-limited log lines
// about one client. A client over its limit over UDP gets no reply, and a
// stub resolver such as glibc's waits its whole timeout (5 s) before it
// retries, so the line says why; one per interval keeps a flood from
// filling the log.
const rateLogInterval = 5 * time.Second

// msgRateLimited is the log message for a rate-limited client.
const msgRateLimited = "client over rate_limit; queries dropped (UDP) or refused (TCP)"

// makeRoom frees at least one entry in a full shard: idle buckets go
// first (at most one sweep per sweepInterval, so a flood of new addresses
// does not scan the shard on every packet), else an arbitrary one.
func (sh *rateShard) makeRoom(now, idle int64) {
	if now-sh.lastSweep >= int64(sweepInterval) {
		sh.lastSweep = now
		for k, b := range sh.buckets {
			if now-b.last >= idle {
				delete(sh.buckets, k)
			}
		}
	}
	for k := range sh.buckets {
		if len(sh.buckets) < bucketsPerShard {
			break
		}
		delete(sh.buckets, k)
	}
}

func (l *rateLimiter) len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.buckets)
		sh.mu.Unlock()
	}
	return n
}

// shardOf spreads addresses over the shards (FNV-1a over the 16 bytes).
func shardOf(a netip.Addr) int {
	b := a.As16()
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h % rateShards)
}

// rateLimited handles a query over the client's limit. Over UDP it is
// dropped: the source address may be forged, and any reply would feed a
// reflection attack. Over TCP the client's address is proven and it would
// otherwise wait for its timeout, so it gets REFUSED. Neither is logged
// per query; egressd_ratelimited_total counts them, and when report is
// not 0 one line names the client (its key) and the queries refused since
// the previous line, within the log's budget for the message (logBudget).
func (s *Server) rateLimited(w dns.ResponseWriter, q *query, client netip.Addr, udp bool, report uint64) {
	if m := s.opts.Metrics; m != nil {
		m.RateLimited.Inc()
	}
	if report > 0 {
		l := q.cfg.limiter
		s.log.Warn(msgRateLimited, "client", l.keys.name(l.keys.key(client)), "dropped", report,
			"rate_limit", l.rate, "rate_burst", l.burst)
	}
	if udp {
		return
	}
	out, err := rcodeAnswer(q, dns.RcodeRefused).render(q, 0, 0)
	if err == nil {
		w.Write(out)
	}
}
