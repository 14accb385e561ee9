package resolver

import (
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// cacheKey identifies a cached answer. DO and CD are part of it because
// they change what an upstream returns (signatures, unvalidated data).
type cacheKey struct {
	name   string // normalized
	qtype  uint16
	qclass uint16
	do, cd bool
}

func keyOf(q *query) cacheKey {
	return cacheKey{name: q.qname, qtype: q.qtype, qclass: q.qclass, do: q.do, cd: q.cd}
}

// String is the key for coalescing identical upstream exchanges.
func (k cacheKey) String() string {
	b := make([]byte, 0, len(k.name)+16)
	b = append(b, k.name...)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(k.qtype), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(k.qclass), 10)
	if k.do {
		b = append(b, "/do"...)
	}
	if k.cd {
		b = append(b, "/cd"...)
	}
	return string(b)
}

type cacheEntry struct {
	ans     *answer
	stored  time.Time
	expires uint32 // seconds after stored
}

// answerCache is an LRU of answers with TTL-based expiry. With a stale
// window, expired entries stay until the window has passed too, so they
// can be served when every upstream fails (RFC 8767).
type answerCache struct {
	lru    *lru.Cache[cacheKey, cacheEntry]
	maxTTL uint32 // seconds; 0 means no cap
	stale  uint32 // seconds past expiry an entry is kept; 0 disables
}

func newAnswerCache(size int, maxTTL time.Duration) (*answerCache, error) {
	c, err := lru.New[cacheKey, cacheEntry](size)
	if err != nil {
		return nil, err
	}
	return &answerCache{lru: c, maxTTL: seconds(maxTTL)}, nil
}

// get returns the answer for k and how many whole seconds it has aged, or
// false when there is none or it has expired.
func (c *answerCache) get(k cacheKey, now time.Time) (*answer, uint32, bool) {
	e, ok := c.lru.Get(k)
	if !ok {
		return nil, 0, false
	}
	age := e.age(now)
	if age >= e.expires {
		if uint64(age) >= uint64(e.expires)+uint64(c.stale) {
			c.lru.Remove(k)
		}
		return nil, 0, false
	}
	return e.ans, age, true
}

// getStale returns the answer for k if it is fresh or expired for less
// than the stale window.
func (c *answerCache) getStale(k cacheKey, now time.Time) (*answer, bool) {
	e, ok := c.lru.Peek(k)
	if !ok || uint64(e.age(now)) >= uint64(e.expires)+uint64(c.stale) {
		return nil, false
	}
	return e.ans, true
}

// age is how many whole seconds e has been cached.
func (e *cacheEntry) age(now time.Time) uint32 {
	if now.Before(e.stored) {
		return 0
	}
	return seconds(now.Sub(e.stored))
}

// put stores a for its cache TTL (capped by the cache's maximum) and
// reports whether it was cacheable.
func (c *answerCache) put(k cacheKey, a *answer, now time.Time) bool {
	ttl := a.cacheTTL
	if c.maxTTL > 0 {
		ttl = min(ttl, c.maxTTL)
	}
	if ttl == 0 {
		return false
	}
	c.lru.Add(k, cacheEntry{ans: a, stored: now, expires: ttl})
	return true
}

func (c *answerCache) len() int { return c.lru.Len() }
