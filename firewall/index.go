package firewall

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
)

// indexEntry is what egressd last told the kernel about one element.
type indexEntry struct {
	set         string
	key, keyEnd []byte
	deadline    time.Time // when the kernel will expire it
	// origins are the answers that asked for the element, at most
	// maxOrigins, for ReloadRecheck. None: the names are unknown (an
	// element carried over from an earlier process without a comment).
	origins []origin
	// askedAhead is when (Unix ns, by the backend's clock) a refresh of
	// this element ahead of its expiry was last asked for; Allow's callers
	// set it under the read lock, so it is atomic.
	askedAhead atomic.Int64
	// spread places the element's refresh ahead of expiry within the
	// upper half of the due window (dueBelow), from a hash of its key, so
	// elements pushed together (a burst of answers, a warm cache) do not
	// all come due, and reach the kernel, in the same moment.
	spread uint16
}

// dueBelow is the remaining lifetime below which e is refreshed ahead of
// its expiry, for an answer that needs need and an element due for a
// refresh below ahead: between ahead and the middle of [need, ahead], by
// e.spread. The lower half of the window is left for the refresh to
// land before an answer would have to wait for it.
func (e *indexEntry) dueBelow(need, ahead time.Duration) time.Duration {
	half := (ahead - need) / 2
	if half <= 0 {
		return ahead
	}
	return ahead - time.Duration(int64(half)*int64(e.spread)>>16)
}

// spreadOf hashes an index key (FNV-1a) to a spread.
func spreadOf(k []byte) uint16 {
	h := uint32(2166136261)
	for _, b := range k {
		h = (h ^ uint32(b)) * 16777619
	}
	return uint16(h ^ h>>16)
}

// claimRefresh reports whether the caller is the one to ask for a refresh
// of e ahead of its expiry: none was asked for in the last
// refreshAheadEvery.
func (e *indexEntry) claimRefresh(now time.Time) bool {
	last, t := e.askedAhead.Load(), now.UnixNano()
	return t-last >= int64(refreshAheadEvery) && e.askedAhead.CompareAndSwap(last, t)
}

// maxOrigins bounds the answers one element remembers. Past it, the one
// that ends first is forgotten: should a reload deny every name left, the
// element goes although the forgotten answer may still be valid (fail
// closed; the client's next query adds it back).
const maxOrigins = 8

// origin is one answer that asked for an element.
type origin struct {
	names  []string   // the query name, then the names it led to; shared, never modified
	client netip.Addr // the client, with client scope only
	until  time.Time  // the element's deadline when this answer last asked for it
	// inherited: read from the comment of an element an earlier process
	// added; names holds the query name only, the names it led to are
	// not known. An answer from this process for that name replaces it.
	inherited bool
}

// same reports whether o is the answer for name and targets (from
// client).
func (o origin) same(name string, targets []string, client netip.Addr) bool {
	return o.client == client && len(o.names) == 1+len(targets) && o.names[0] == name && slices.Equal(o.names[1:], targets)
}

// remembers reports whether an answer for name and targets (from client)
// is among the origins with at least need left at now.
func (e *indexEntry) remembers(name string, targets []string, client netip.Addr, need time.Duration, now time.Time) bool {
	for _, o := range e.origins {
		if o.same(name, targets, client) && o.until.Sub(now) >= need {
			return true
		}
	}
	return false
}

// note records that an answer (o.names, o.client) asked for the known
// element e; o.until becomes the element's current deadline.
func (x *expiryIndex) note(e element, o origin) {
	var buf keyBuf
	k := e.appendKey(buf[:0])
	x.mu.Lock()
	defer x.mu.Unlock()
	cur, ok := x.entries[string(k)]
	if !ok {
		return
	}
	o.until = cur.deadline
	if !o.inherited {
		// What this process learned about the name is the whole answer:
		// the name alone read from a comment no longer counts.
		cur.origins = slices.DeleteFunc(cur.origins, func(have origin) bool {
			return have.inherited && have.client == o.client && have.names[0] == o.names[0]
		})
	}
	first := -1
	for i, have := range cur.origins {
		if have.same(o.names[0], o.names[1:], o.client) {
			if o.until.After(have.until) {
				cur.origins[i].until = o.until
			}
			return
		}
		if first < 0 || have.until.Before(cur.origins[first].until) {
			first = i
		}
	}
	if len(cur.origins) < maxOrigins {
		cur.origins = append(cur.origins, o)
		return
	}
	cur.origins[first] = o
}

// expiryIndex remembers element deadlines so an Allow whose destinations
// are already live long enough costs no netlink round trip. Only the
// goroutine that owns the netlink connection changes it, and only to
// record what the kernel acknowledged (or to forget); Allow reads it from
// any goroutine under mu.
type expiryIndex struct {
	mu      sync.RWMutex
	entries map[string]*indexEntry
	perSet  map[string]int // entries per set, for the elements gauge
}

func newExpiryIndex() *expiryIndex {
	return &expiryIndex{entries: map[string]*indexEntry{}, perSet: map[string]int{}}
}

// remove needs mu held for writing.
func (x *expiryIndex) remove(k string, e *indexEntry) {
	delete(x.entries, k)
	x.perSet[e.set]--
	if x.perSet[e.set] <= 0 {
		delete(x.perSet, e.set)
	}
}

func (x *expiryIndex) get(e element) *indexEntry {
	var buf keyBuf
	k := e.appendKey(buf[:0])
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.entries[string(k)]
}

// fullest is the element count of the fullest set.
func (x *expiryIndex) fullest() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	most := 0
	for _, c := range x.perSet {
		most = max(most, c)
	}
	return most
}

func (x *expiryIndex) count(set string) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.perSet[set]
}

// put records a deadline the kernel has acknowledged; it never shortens
// one already known.
func (x *expiryIndex) put(e element, deadline time.Time) {
	var buf keyBuf
	k := e.appendKey(buf[:0])
	x.mu.Lock()
	defer x.mu.Unlock()
	if cur, ok := x.entries[string(k)]; ok {
		if deadline.After(cur.deadline) {
			cur.deadline = deadline
		}
		return
	}
	x.entries[string(k)] = &indexEntry{set: e.set, key: e.key, keyEnd: e.keyEnd, deadline: deadline, spread: spreadOf(k)}
	x.perSet[e.set]++
}

// sweep forgets elements the kernel has expired, with margin to spare.
func (x *expiryIndex) sweep(now time.Time, margin time.Duration) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k, e := range x.entries {
		if e.deadline.Before(now.Add(-margin)) {
			x.remove(k, e)
		}
	}
}

// carryOver lists every still-live element of the sets in keep, with its
// remaining lifetime however short, and forgets every other element.
// Reload uses it to refill a freshly built table: an element with a
// moment left still backs an answer a client holds. With approved set,
// only elements it approves are carried; dropped counts the others.
func (x *expiryIndex) carryOver(now time.Time, keep map[string]bool, approved func(*indexEntry) bool) (out map[string][]nftables.SetElement, dropped int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	out = map[string][]nftables.SetElement{}
	for k, e := range x.entries {
		left := e.deadline.Sub(now)
		if !keep[e.set] || left <= 0 {
			x.remove(k, e)
			continue
		}
		if approved != nil && !approved(e) {
			x.remove(k, e)
			dropped++
			continue
		}
		out[e.set] = append(out[e.set], nftables.SetElement{Key: e.key, KeyEnd: e.keyEnd, Timeout: ceilMillis(left), Comment: e.comment()})
	}
	return out, dropped
}

// live lists the still-live elements of the given sets, with their
// remaining lifetime, to add them back after someone else deleted them.
func (x *expiryIndex) live(now time.Time, sets map[string]bool) map[string][]nftables.SetElement {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := map[string][]nftables.SetElement{}
	for _, e := range x.entries {
		left := e.deadline.Sub(now)
		if !sets[e.set] || left <= 0 {
			continue
		}
		out[e.set] = append(out[e.set], nftables.SetElement{Key: e.key, KeyEnd: e.keyEnd, Timeout: ceilMillis(left), Comment: e.comment()})
	}
	return out
}

// comment is the comment the element is added back with: the query name
// of the newest answer that asked for it, if known.
func (e *indexEntry) comment() string {
	var newest *origin
	for i := range e.origins {
		if o := &e.origins[i]; len(o.names) > 0 && (newest == nil || o.until.After(newest.until)) {
			newest = o
		}
	}
	if newest == nil {
		return ""
	}
	return elementComment(newest.names[0])
}

// ceilMillis rounds up to the milliseconds netlink carries, so the kernel
// never expires a carried element before the index's deadline.
func ceilMillis(d time.Duration) time.Duration {
	if r := d % time.Millisecond; r > 0 {
		d += time.Millisecond - r
	}
	return d
}
