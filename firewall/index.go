package firewall

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
)

// The expiry index holds no Go pointers per element, so a large set costs
// the garbage collector nothing to mark (see README.md, "Expiry index"):
//
//   - entries maps a fixed-size key (set id, key and range end bytes) to
//     a slot in slots, chunks of indexEntry that never move;
//   - an element's origins are a linked list of originRec in orig;
//   - an origin's names are an interned chain (chains), shared by every
//     element the same answer asked for and freed when the last origin
//     naming it goes.
//
// Slots, origin records and chains are reused through free lists.

// maxKey is the longest element key: client and destination IPv6
// addresses plus protocol and port.
const maxKey = 40

// endTail is how much of a range end egressd's keys do not share with
// the range start: protocol and port (appendPortKey).
const endTail = 8

// ikey is an element's key in the index. A range end differs from its
// start only in the last endTail bytes; only those are kept.
type ikey struct {
	set     uint16
	klen    uint8
	hasEnd  bool
	key     [maxKey]byte
	endTail [endTail]byte
}

// slotChunk is the number of entries per chunk of slots.
const slotChunk = 1024

// indexEntry is what egressd last told the kernel about one element.
type indexEntry struct {
	deadline int64 // Unix ns when the kernel will expire it
	// askedAhead is when (Unix ns, by the backend's clock) a refresh of
	// this element ahead of its expiry was last asked for; Allow's callers
	// set it under the read lock, so it is atomic.
	askedAhead atomic.Int64
	// origins is the first of the answers that asked for the element
	// (orig index, 0: none), at most maxOrigins, for ReloadRecheck. None:
	// the names are unknown (an element carried over from an earlier
	// process without a comment).
	origins uint32
	set     uint16
	// spread places the element's refresh ahead of expiry within the
	// upper half of the due window (dueBelow), from a hash of its key, so
	// elements pushed together (a burst of answers, a warm cache) do not
	// all come due, and reach the kernel, in the same moment.
	spread uint16
}

// left is how long e still lives at now.
func (e *indexEntry) left(now time.Time) time.Duration {
	return time.Duration(e.deadline - now.UnixNano())
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

// origin is one answer that asked for an element, as callers give and
// get it; the index stores it as an originRec.
type origin struct {
	names  []string   // the query name, then the names it led to; shared, never modified
	client netip.Addr // the client, with client scope only
	until  time.Time  // the element's deadline when this answer last asked for it
	// inherited: read from the comment of an element an earlier process
	// added; names holds the query name only, the names it led to are
	// not known. An answer from this process for that name replaces it.
	inherited bool
}

// originRec is a stored origin.
type originRec struct {
	until     int64  // Unix ns
	names     uint32 // chain id
	next      uint32 // next origin of the element, 0: none
	client    [16]byte
	clientLen uint8 // 0: no client, 4 or 16
	inherited bool
}

func packClient(a netip.Addr) (b [16]byte, n uint8) {
	switch {
	case a.Is4():
		v := a.As4()
		copy(b[:], v[:])
		return b, 4
	case a.IsValid():
		return a.As16(), 16
	}
	return b, 0
}

func (r *originRec) clientAddr() netip.Addr {
	switch r.clientLen {
	case 4:
		return netip.AddrFrom4([4]byte(r.client[:4]))
	case 16:
		return netip.AddrFrom16(r.client)
	}
	return netip.Addr{}
}

// chain is an interned list of names with the number of origins naming it.
type chain struct {
	names []string
	refs  int
}

// expiryIndex remembers element deadlines so an Allow whose destinations
// are already live long enough costs no netlink round trip. Only the
// goroutine that owns the netlink connection changes it, and only to
// record what the kernel acknowledged (or to forget); Allow reads it from
// any goroutine under mu.
type expiryIndex struct {
	mu        sync.RWMutex
	entries   map[ikey]uint32
	slots     []*[slotChunk]indexEntry
	freeSlots []uint32
	orig      []originRec // orig[0] is unused: 0 means none
	freeOrig  []uint32
	chains    []chain // chains[0] is unused
	chainIDs  map[string]uint32
	freeChain []uint32
	setIDs    map[string]uint16
	setNames  []string
	perSet    map[string]int // entries per set, for the elements gauge
}

func newExpiryIndex() *expiryIndex {
	return &expiryIndex{
		entries:  map[ikey]uint32{},
		orig:     make([]originRec, 1),
		chains:   make([]chain, 1),
		chainIDs: map[string]uint32{},
		setIDs:   map[string]uint16{},
		perSet:   map[string]int{},
	}
}

// keyOf is e's index key; ok is false for a set never seen or a key
// egressd does not make (longer than maxKey, or a range end that differs
// from its start before the port): such an element is not indexed.
func (x *expiryIndex) keyOf(set string, key, keyEnd []byte) (k ikey, ok bool) {
	id, known := x.setIDs[set]
	if !known || len(key) > maxKey {
		return k, false
	}
	if len(keyEnd) > 0 {
		n := len(key) - endTail
		if len(keyEnd) != len(key) || n < 0 || string(keyEnd[:n]) != string(key[:n]) {
			return k, false
		}
		k.hasEnd = true
		copy(k.endTail[:], keyEnd[n:])
	}
	k.set, k.klen = id, uint8(len(key))
	copy(k.key[:], key)
	return k, true
}

func (x *expiryIndex) slot(i uint32) *indexEntry {
	return &x.slots[i/slotChunk][i%slotChunk]
}

// lookup needs mu held.
func (x *expiryIndex) lookup(set string, key, keyEnd []byte) *indexEntry {
	k, ok := x.keyOf(set, key, keyEnd)
	if !ok {
		return nil
	}
	i, ok := x.entries[k]
	if !ok {
		return nil
	}
	return x.slot(i)
}

func (x *expiryIndex) get(e element) *indexEntry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.lookup(e.set, e.key, e.keyEnd)
}

// size is the number of elements indexed.
func (x *expiryIndex) size() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.entries)
}

// remove needs mu held for writing.
func (x *expiryIndex) remove(k ikey, i uint32) {
	e := x.slot(i)
	for r := e.origins; r != 0; {
		next := x.orig[r].next
		x.freeRec(r)
		r = next
	}
	set := x.setNames[e.set]
	*e = indexEntry{}
	x.freeSlots = append(x.freeSlots, i)
	delete(x.entries, k)
	x.perSet[set]--
	if x.perSet[set] <= 0 {
		delete(x.perSet, set)
	}
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
	x.mu.Lock()
	defer x.mu.Unlock()
	id, ok := x.setIDs[e.set]
	if !ok {
		id = uint16(len(x.setNames))
		x.setIDs[e.set] = id
		x.setNames = append(x.setNames, e.set)
	}
	k, ok := x.keyOf(e.set, e.key, e.keyEnd)
	if !ok {
		return
	}
	dl := deadline.UnixNano()
	if i, ok := x.entries[k]; ok {
		if cur := x.slot(i); dl > cur.deadline {
			cur.deadline = dl
		}
		return
	}
	var i uint32
	if n := len(x.freeSlots); n > 0 {
		i = x.freeSlots[n-1]
		x.freeSlots = x.freeSlots[:n-1]
	} else {
		i = uint32(len(x.slots) * slotChunk)
		x.slots = append(x.slots, new([slotChunk]indexEntry))
		for j := slotChunk - 1; j > 0; j-- {
			x.freeSlots = append(x.freeSlots, i+uint32(j))
		}
	}
	var buf keyBuf
	*x.slot(i) = indexEntry{deadline: dl, set: id, spread: spreadOf(e.appendKey(buf[:0]))}
	x.entries[k] = i
	x.perSet[e.set]++
}

// chainKey appends names joined by NUL, the key chainIDs interns by.
func chainKey(dst []byte, names []string) []byte {
	for i, n := range names {
		if i > 0 {
			dst = append(dst, 0)
		}
		dst = append(dst, n...)
	}
	return dst
}

// intern returns the chain id of names, counting one more origin naming
// it. Needs mu held for writing.
func (x *expiryIndex) intern(names []string) uint32 {
	var buf [256]byte
	k := chainKey(buf[:0], names)
	if id, ok := x.chainIDs[string(k)]; ok {
		x.chains[id].refs++
		return id
	}
	var id uint32
	if n := len(x.freeChain); n > 0 {
		id = x.freeChain[n-1]
		x.freeChain = x.freeChain[:n-1]
	} else {
		id = uint32(len(x.chains))
		x.chains = append(x.chains, chain{})
	}
	x.chains[id] = chain{names: names, refs: 1}
	x.chainIDs[string(k)] = id
	return id
}

// release counts one origin less naming chain id, freeing it with the
// last.
func (x *expiryIndex) release(id uint32) {
	c := &x.chains[id]
	if c.refs--; c.refs > 0 {
		return
	}
	var buf [256]byte
	delete(x.chainIDs, string(chainKey(buf[:0], c.names)))
	*c = chain{}
	x.freeChain = append(x.freeChain, id)
}

func (x *expiryIndex) newRec(r originRec) uint32 {
	if n := len(x.freeOrig); n > 0 {
		i := x.freeOrig[n-1]
		x.freeOrig = x.freeOrig[:n-1]
		x.orig[i] = r
		return i
	}
	x.orig = append(x.orig, r)
	return uint32(len(x.orig) - 1)
}

func (x *expiryIndex) freeRec(i uint32) {
	x.release(x.orig[i].names)
	x.orig[i] = originRec{}
	x.freeOrig = append(x.freeOrig, i)
}

// same reports whether r is the answer for name and targets (from
// client).
func (x *expiryIndex) same(r *originRec, name string, targets []string, client [16]byte, clientLen uint8) bool {
	if r.client != client || r.clientLen != clientLen {
		return false
	}
	names := x.chains[r.names].names
	if len(names) != 1+len(targets) || names[0] != name {
		return false
	}
	for i, t := range targets {
		if names[1+i] != t {
			return false
		}
	}
	return true
}

// remembers reports whether an answer for name and targets (from client)
// is among e's origins with at least need left at now. Needs mu held.
func (x *expiryIndex) remembers(e *indexEntry, name string, targets []string, client netip.Addr, need time.Duration, now time.Time) bool {
	c, cl := packClient(client)
	for r := e.origins; r != 0; r = x.orig[r].next {
		rec := &x.orig[r]
		if x.same(rec, name, targets, c, cl) && time.Duration(rec.until-now.UnixNano()) >= need {
			return true
		}
	}
	return false
}

// note records that an answer (o.names, o.client) asked for the known
// element e; o.until becomes the element's current deadline.
func (x *expiryIndex) note(e element, o origin) {
	if len(o.names) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	cur := x.lookup(e.set, e.key, e.keyEnd)
	if cur == nil {
		return
	}
	until := cur.deadline
	c, cl := packClient(o.client)
	if !o.inherited {
		// What this process learned about the name is the whole answer:
		// the name alone read from a comment no longer counts.
		for p := &cur.origins; *p != 0; {
			rec := &x.orig[*p]
			if rec.inherited && rec.client == c && rec.clientLen == cl && x.chains[rec.names].names[0] == o.names[0] {
				r := *p
				*p = rec.next
				x.freeRec(r)
				continue
			}
			p = &rec.next
		}
	}
	var first, last uint32
	n := 0
	for r := cur.origins; r != 0; r = x.orig[r].next {
		rec := &x.orig[r]
		if x.same(rec, o.names[0], o.names[1:], c, cl) {
			if until > rec.until {
				rec.until = until
			}
			return
		}
		if first == 0 || rec.until < x.orig[first].until {
			first = r
		}
		n++
		last = r
	}
	if n < maxOrigins {
		// newRec may move orig: link the record after making it.
		r := x.newRec(originRec{until: until, names: x.intern(o.names), client: c, clientLen: cl, inherited: o.inherited})
		if last == 0 {
			cur.origins = r
		} else {
			x.orig[last].next = r
		}
		return
	}
	rec := &x.orig[first]
	x.release(rec.names)
	rec.until, rec.names, rec.client, rec.clientLen, rec.inherited = until, x.intern(o.names), c, cl, o.inherited
}

// origins lists e's origins, oldest noted first. Needs mu held.
func (x *expiryIndex) origins(e *indexEntry) []origin {
	var out []origin
	for r := e.origins; r != 0; r = x.orig[r].next {
		rec := &x.orig[r]
		out = append(out, origin{names: x.chains[rec.names].names, client: rec.clientAddr(), until: time.Unix(0, rec.until), inherited: rec.inherited})
	}
	return out
}

// originsOf lists the origins of element e (none if not indexed).
func (x *expiryIndex) originsOf(e element) []origin {
	x.mu.RLock()
	defer x.mu.RUnlock()
	cur := x.lookup(e.set, e.key, e.keyEnd)
	if cur == nil {
		return nil
	}
	return x.origins(cur)
}

// sweep forgets elements the kernel has expired, with margin to spare.
func (x *expiryIndex) sweep(now time.Time, margin time.Duration) {
	x.mu.Lock()
	defer x.mu.Unlock()
	limit := now.Add(-margin).UnixNano()
	for k, i := range x.entries {
		if x.slot(i).deadline < limit {
			x.remove(k, i)
		}
	}
}

// entryView is an indexed element as a reload's re-check sees it.
type entryView struct {
	set         string
	key, keyEnd []byte
	origins     []origin
}

func (x *expiryIndex) view(k ikey, e *indexEntry) entryView {
	v := entryView{set: x.setNames[k.set], key: append([]byte(nil), k.key[:k.klen]...), origins: x.origins(e)}
	if k.hasEnd {
		v.keyEnd = append(append([]byte(nil), k.key[:k.klen-endTail]...), k.endTail[:]...)
	}
	return v
}

// carryOver lists every still-live element of the sets in keep, with its
// remaining lifetime however short, and forgets every other element.
// Reload uses it to refill a freshly built table: an element with a
// moment left still backs an answer a client holds. With approved set,
// only elements it approves are carried; dropped counts the others.
func (x *expiryIndex) carryOver(now time.Time, keep map[string]bool, approved func(entryView) bool) (out map[string][]nftables.SetElement, dropped int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	out = map[string][]nftables.SetElement{}
	for k, i := range x.entries {
		e := x.slot(i)
		left := e.left(now)
		set := x.setNames[k.set]
		if !keep[set] || left <= 0 {
			x.remove(k, i)
			continue
		}
		v := x.view(k, e)
		if approved != nil && !approved(v) {
			x.remove(k, i)
			dropped++
			continue
		}
		out[set] = append(out[set], nftables.SetElement{Key: v.key, KeyEnd: v.keyEnd, Timeout: ceilMillis(left), Comment: comment(v.origins)})
	}
	return out, dropped
}

// live lists the still-live elements of the given sets, with their
// remaining lifetime, to add them back after someone else deleted them.
func (x *expiryIndex) live(now time.Time, sets map[string]bool) map[string][]nftables.SetElement {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := map[string][]nftables.SetElement{}
	for k, i := range x.entries {
		e := x.slot(i)
		left := e.left(now)
		set := x.setNames[k.set]
		if !sets[set] || left <= 0 {
			continue
		}
		v := x.view(k, e)
		out[set] = append(out[set], nftables.SetElement{Key: v.key, KeyEnd: v.keyEnd, Timeout: ceilMillis(left), Comment: comment(v.origins)})
	}
	return out
}

// comment is the comment an element is added back with: the query name
// of the newest answer that asked for it, if known.
func comment(origins []origin) string {
	var newest *origin
	for i := range origins {
		if o := &origins[i]; len(o.names) > 0 && (newest == nil || o.until.After(newest.until)) {
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
