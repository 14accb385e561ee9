package resolver

import (
	"github.com/egressd/egressd/enforce"

	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/golang-lru/v2/simplelru"
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
	// On the stack: a name is at most 254 bytes, so the string is the
	// only allocation.
	var buf [254 + 16]byte
	b := buf[:0]
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
	size    int64  // what entryBytes accounted for it
}

// answerCache is an LRU of answers with TTL-based expiry, bounded by entry
// count and by the bytes its entries take (see entryBytes): whichever
// bound is reached first evicts the least recently used entries. With a
// stale window, expired entries stay until the window has passed too, so
// they can be served when every upstream fails (RFC 8767).
type answerCache struct {
	mu       sync.Mutex
	lru      *simplelru.LRU[cacheKey, cacheEntry]
	used     int64 // bytes accounted for the entries held; under mu
	maxBytes int64
	maxTTL   atomic.Uint32 // seconds; 0 means no cap
	stale    atomic.Uint32 // seconds past expiry an entry is kept; 0 disables
}

// DefaultCacheMaxBytes bounds the cache when Options leave it 0: enough
// for about 100,000 typical answers, small enough for a small gateway.
const DefaultCacheMaxBytes = 64 << 20

func newAnswerCache(size int, maxBytes int64, maxTTL time.Duration) (*answerCache, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultCacheMaxBytes
	}
	c := &answerCache{maxBytes: maxBytes}
	c.maxTTL.Store(seconds(maxTTL))
	l, err := simplelru.NewLRU(size, func(_ cacheKey, e cacheEntry) { c.used -= e.size })
	if err != nil {
		return nil, err
	}
	c.lru = l
	return c, nil
}

// setLifetimes changes the longest time an answer is cached and the
// stale window (seconds) for answers stored and read from now on.
func (c *answerCache) setLifetimes(maxTTL, stale uint32) {
	c.maxTTL.Store(maxTTL)
	c.stale.Store(stale)
}

// get returns the answer for k and how many whole seconds it has aged, or
// false when there is none or it has expired.
func (c *answerCache) get(k cacheKey, now time.Time) (*answer, uint32, bool) {
	c.mu.Lock()
	e, ok := c.lru.Get(k)
	if !ok {
		c.mu.Unlock()
		return nil, 0, false
	}
	age := e.age(now)
	if age >= e.expires {
		if uint64(age) >= uint64(e.expires)+uint64(c.stale.Load()) {
			c.lru.Remove(k)
		}
		c.mu.Unlock()
		return nil, 0, false
	}
	c.mu.Unlock()
	return e.ans, age, true
}

// getStale returns the answer for k if it is fresh or expired for less
// than the stale window.
func (c *answerCache) getStale(k cacheKey, now time.Time) (*answer, bool) {
	c.mu.Lock()
	e, ok := c.lru.Peek(k)
	c.mu.Unlock()
	if !ok || uint64(e.age(now)) >= uint64(e.expires)+uint64(c.stale.Load()) {
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
// reports whether it was cacheable. An answer whose entry alone would take
// more than the byte bound is not.
func (c *answerCache) put(k cacheKey, a *answer, now time.Time) bool {
	ttl := a.cacheTTL
	if m := c.maxTTL.Load(); m > 0 {
		ttl = min(ttl, m)
	}
	if ttl == 0 {
		return false
	}
	if cap(a.wire) > len(a.wire)+len(a.wire)/8 {
		// Packing allocates for the uncompressed length; keep only what
		// the answer uses. The answer is shared, so the cache gets a copy.
		trimmed := *a
		trimmed.wire = make([]byte, len(a.wire))
		copy(trimmed.wire, a.wire)
		a = &trimmed
	}
	size := entryBytes(k, a)
	if size > c.maxBytes {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.lru.Peek(k); ok {
		c.used -= old.size // replaced without the eviction callback
	}
	c.lru.Add(k, cacheEntry{ans: a, stored: now, expires: ttl, size: size})
	c.used += size
	c.dropExpiredTail(now)
	for c.used > c.maxBytes {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
	return true
}

// dropExpiredTail removes up to two least recently used entries that are
// past their lifetime and the stale window, so the cache holds what is
// still usable instead of staying at its bound with answers of one-off
// names (at 3,000 misses a second with TTLs of a second, tens of thousands
// of dead entries otherwise). Two for each one stored drains such a tail
// faster than it grows, at a bounded cost per put. Called with mu held.
func (c *answerCache) dropExpiredTail(now time.Time) {
	stale := uint64(c.stale.Load())
	for range 2 {
		_, e, ok := c.lru.GetOldest()
		if !ok || uint64(e.age(now)) < uint64(e.expires)+stale {
			return
		}
		c.lru.RemoveOldest()
	}
}

// cacheEntryOverhead is what an entry takes besides its bytes of names,
// wire form and addresses: the answer and cacheEntry structs, the LRU's
// list element and its index slot (whose map keeps its largest size), the
// allocator's rounding of them, and the cache's fixed structures spread
// over its entries. Measured at 300 to 420 bytes on amd64;
// TestCacheBytesBound checks that dropping a full cache frees no more
// than was accounted.
const cacheEntryOverhead = 512

// entryBytes is the memory an entry for k holding a is accounted for:
// the heap objects it alone keeps alive, rounded up as the allocator
// does, and cacheEntryOverhead.
func entryBytes(k cacheKey, a *answer) int64 {
	n := allocSize(cap(a.wire)) + allocSize(len(k.name)) + cacheEntryOverhead
	n += allocSize(cap(a.targets) * int(unsafe.Sizeof("")))
	for _, t := range a.targets {
		n += allocSize(len(t))
	}
	n += allocSize(cap(a.addrs) * int(unsafe.Sizeof(netip.Addr{})))
	if a.effect != nil {
		n += allocSize(int(unsafe.Sizeof(*a.effect))) + enforce.MemoNoteBytes
	}
	return n
}

// allocSize is at least what the Go allocator hands out for an object of
// n bytes: its size classes waste at most 1/7 up to 32 KiB; larger objects
// take whole 8 KiB pages.
func allocSize(n int) int64 {
	if n <= 0 {
		return 0
	}
	if n <= 32<<10 {
		return int64(n + n/7 + 16)
	}
	const page = 8 << 10
	return int64((n + page - 1) / page * page)
}

func (c *answerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// bytes is the accounted size of the entries held, at most maxBytes.
func (c *answerCache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// purge empties the cache.
func (c *answerCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Purge()
}
