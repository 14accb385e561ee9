package firewall

import (
	"bytes"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
)

// The expiry index holds no Go pointers per element, so a large set costs
// the garbage collector nothing to mark, and keeps each element in a few
// dozen bytes (see README.md, "Expiry index layout"):
//
//   - table is an open-addressing hash table (linear probing) of slot ids
//     into slots, chunks of indexEntry that never move; an entry's key
//     bytes are in keys, in runs of one length reused through free lists;
//   - an element's origins are a linked list of originRec in orig;
//   - an origin's names are an interned chain: its bytes in the names
//     slab, found through chainTab, shared by every element the same
//     answer asked for and freed when the last origin naming it goes.
//
// Slots, key runs, origin records and chains are reused through free
// lists; the names slab is compacted once most of it is garbage.

// maxKey is the longest element key: client and destination IPv6
// addresses plus protocol and port.
const maxKey = 40

// endTail is how much of a range end egressd's keys do not share with
// the range start: protocol and port (appendPortKey).
const endTail = 8

// slotChunk is the number of entries per chunk of slots.
const slotChunk = 1024

// Entry flags.
const (
	entryUsed   = 1 << iota
	entryHasEnd // the key is followed by the range end's last endTail bytes
)

// indexEntry is what egressd last told the kernel about one element.
type indexEntry struct {
	deadline int64 // Unix ns when the kernel will expire it
	// askedAhead is when (Unix ms, by the backend's clock, wrapping at 32
	// bits) a refresh of this element ahead of its expiry was last asked
	// for; Allow's callers set it under the read lock, so it is atomic.
	askedAhead atomic.Uint32
	// owner is the client whose answer added the element (clients id, 0:
	// none), whose share of the set it counts against (ownerKeyOf).
	owner uint32
	// origins is the first of the answers that asked for the element
	// (orig index, 0: none), at most maxOrigins, for ReloadRecheck. None:
	// the names are unknown (an element carried over from an earlier
	// process without a comment).
	origins uint32
	koff    uint32 // the key's offset in keys
	set     uint16
	// spread places the element's refresh ahead of expiry within the
	// upper half of the due window (dueBelow), from a hash of its key, so
	// elements pushed together (a burst of answers, a warm cache) do not
	// all come due, and reach the kernel, in the same moment.
	spread uint16
	klen   uint8 // key length, without the range end's tail
	flags  uint8
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
	last, t := e.askedAhead.Load(), uint32(now.UnixMilli())
	return t-last >= uint32(refreshAheadEvery.Milliseconds()) && e.askedAhead.CompareAndSwap(last, t)
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
	// added (names as the comment held them: an earlier version's held
	// the query name only). An answer from this process for that name
	// replaces it.
	inherited bool
	// fromFleet: only other fleet nodes' approvals asked for it
	// (Allowance.FromFleet); an own answer for the same names clears it.
	fromFleet bool
}

// originRec is a stored origin: 24 bytes.
type originRec struct {
	until     int64  // Unix ns
	names     uint32 // chain id
	next      uint32 // next origin of the element, 0: none
	client    uint32 // client id, 0: no client
	inherited bool
	fromFleet bool
}

// recChunk is the number of origin records per chunk of orig.
const recChunk = 1024

// clientKey is a client address as the index interns it: 4 or 16 bytes
// and the length.
type clientKey struct {
	addr [16]byte
	n    uint8
}

// clientKeyOf is a's key; ok is false for no client.
func clientKeyOf(a netip.Addr) (k clientKey, ok bool) {
	switch {
	case a.Is4():
		v := a.As4()
		copy(k.addr[:], v[:])
		k.n = 4
	case a.IsValid():
		k.addr, k.n = a.As16(), 16
	default:
		return k, false
	}
	return k, true
}

func (k clientKey) addr4or16() netip.Addr {
	if k.n == 4 {
		return netip.AddrFrom4([4]byte(k.addr[:4]))
	}
	return netip.AddrFrom16(k.addr)
}

// clientRec is an interned client with the number of origins naming it
// and of elements it owns (an owner's key is ownerKeyOf's).
type clientRec struct {
	key   clientKey
	refs  uint32
	owned uint32
}

// ownerKeyOf is the key elements are counted under for the client a: an
// IPv4 address, or the /64 of an IPv6 one, as the rate limit counts
// clients (a host picks any address of its /64). Its length, 8 for a
// /64, keeps it apart from the addresses origins name; ok is false for no
// client.
func ownerKeyOf(a netip.Addr) (k clientKey, ok bool) {
	a = a.Unmap()
	if a.Is6() {
		v := a.As16()
		copy(k.addr[:8], v[:8])
		k.n = 8
		return k, true
	}
	return clientKeyOf(a)
}

// chainRec is an interned list of names: names[off:off+n] in the slab,
// joined by NUL, with the number of origins naming it (0: free).
type chainRec struct {
	off, n uint32
	refs   uint32
}

// expiryIndex remembers element deadlines so an Allow whose destinations
// are already live long enough costs no netlink round trip. Only the
// goroutine that owns the netlink connection changes it, and only to
// record what the kernel acknowledged (or to forget); Allow reads it from
// any goroutine under mu.
type expiryIndex struct {
	mu sync.RWMutex
	// table holds slot id + 1 in the low 32 bits (0: empty) and the
	// low 32 bits of the key's hash in the high ones, so a lookup skips
	// most other keys without reading their entries and doubling the
	// table moves slots without hashing any key; len a power of two.
	table     []uint64
	n         int // elements indexed
	slots     []*[slotChunk]indexEntry
	freeSlots []uint32
	keys      []byte
	freeKeys  [maxKey + endTail + 1][]uint32 // offsets of free runs, by length
	orig      []*[recChunk]originRec         // record 0 is unused: 0 means none
	freeOrig  []uint32
	clients   []clientRec // clients[0] is unused: 0 means none
	clientIDs map[clientKey]uint32
	freeCli   []uint32
	chains    []chainRec // chains[0] is unused
	chainTab  []uint32   // chain id, 0: empty; len a power of two
	nchains   int        // chains live
	freeChain []uint32
	names     []byte // chain bytes
	garbage   int    // bytes of names no live chain uses
	seed      maphash.Seed
	setIDs    map[string]uint16
	setNames  []string
	perSet    map[string]int // entries per set, for the elements gauge
	sweeps    int            // walks by sweep, so tests can bound them
	// mem holds the chunks, tables, keys, chains and names outside the
	// Go heap (indexmem.go).
	mem *indexMem
}

func newExpiryIndex() *expiryIndex {
	x := &expiryIndex{
		clients:   make([]clientRec, 1),
		clientIDs: map[clientKey]uint32{},
		seed:      maphash.MakeSeed(),
		setIDs:    map[string]uint16{},
		perSet:    map[string]int{},
	}
	x.mem = newIndexMem(x)
	x.chains = grown[chainRec](x.mem, nil, 1)[:1]
	return x
}

// ikey is an element's key as the index compares it: the set id, the
// key, and with a range end its last endTail bytes (egressd's range ends
// share the rest with the start).
type ikey struct {
	set    uint16
	hasEnd bool
	key    []byte // key then end tail, on the caller's stack
	klen   int    // length of the key alone
}

// keyOf is e's index key, built in buf; ok is false for a set never
// seen or a key egressd does not make (longer than maxKey, or a range end
// that differs from its start before the port): such an element is not
// indexed.
func (x *expiryIndex) keyOf(buf *[maxKey + endTail]byte, set string, key, keyEnd []byte) (k ikey, ok bool) {
	id, known := x.setIDs[set]
	if !known || len(key) > maxKey || len(key) == 0 {
		return k, false
	}
	k.set, k.klen = id, len(key)
	k.key = append(buf[:0], key...)
	if len(keyEnd) > 0 {
		n := len(key) - endTail
		if len(keyEnd) != len(key) || n < 0 || string(keyEnd[:n]) != string(key[:n]) {
			return k, false
		}
		k.hasEnd = true
		k.key = append(k.key, keyEnd[n:]...)
	}
	return k, true
}

func (x *expiryIndex) hashKey(k ikey) uint64 {
	var h maphash.Hash
	h.SetSeed(x.seed)
	h.Write([]byte{byte(k.set), byte(k.set >> 8), byte(k.klen)})
	h.Write(k.key)
	return h.Sum64()
}

// storedKey is the key bytes of e (key and end tail).
func (x *expiryIndex) storedKey(e *indexEntry) []byte {
	n := uint32(e.klen)
	if e.flags&entryHasEnd != 0 {
		n += endTail
	}
	return x.keys[e.koff : e.koff+n]
}

func (x *expiryIndex) keyOfEntry(e *indexEntry) ikey {
	return ikey{set: e.set, hasEnd: e.flags&entryHasEnd != 0, key: x.storedKey(e), klen: int(e.klen)}
}

func (x *expiryIndex) matches(e *indexEntry, k ikey) bool {
	return e.set == k.set && int(e.klen) == k.klen && (e.flags&entryHasEnd != 0) == k.hasEnd && string(x.storedKey(e)) == string(k.key)
}

func (x *expiryIndex) slot(i uint32) *indexEntry {
	return &x.slots[i/slotChunk][i%slotChunk]
}

// find returns the table position holding k, or -1.
func (x *expiryIndex) find(k ikey) int {
	return x.findHashed(k, uint32(x.hashKey(k)))
}

// findHashed is find for a key whose hash (its low 32 bits) is h.
func (x *expiryIndex) findHashed(k ikey, h uint32) int {
	if x.n == 0 {
		return -1
	}
	mask := len(x.table) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		v := x.table[i]
		if v == 0 {
			return -1
		}
		if uint32(v>>32) == h && x.matches(x.slot(uint32(v)-1), k) {
			return i
		}
	}
}

// tableEntry is what the table holds for slot id v+1 whose key hashes to
// h.
func tableEntry(v uint32, h uint64) uint64 { return uint64(v) | uint64(uint32(h))<<32 }

// home is the table position a table entry's probe starts at.
func home(entry uint64, mask int) int { return int(entry>>32) & mask }

// placeEntry puts a table entry at the first free position of its probe.
func (x *expiryIndex) placeEntry(entry uint64) {
	mask := len(x.table) - 1
	i := home(entry, mask)
	for x.table[i] != 0 {
		i = (i + 1) & mask
	}
	x.table[i] = entry
}

// grow doubles the table (from 64) and places every element again, by
// the hash each table entry keeps: no key is read.
func (x *expiryIndex) grow() {
	old := x.table
	x.table = offHeap[uint64](x.mem, max(64, 2*len(old)))
	for _, entry := range old {
		if entry != 0 {
			x.placeEntry(entry)
		}
	}
	freeOffHeap(x.mem, old)
}

// unplace empties table position i, moving later entries of the probe
// back so every entry stays reachable from its home (no tombstones).
func (x *expiryIndex) unplace(i int) {
	mask := len(x.table) - 1
	for j := (i + 1) & mask; x.table[j] != 0; j = (j + 1) & mask {
		h := home(x.table[j], mask)
		// Move j to i unless its home lies cyclically in (i, j].
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			x.table[i] = x.table[j]
			i = j
		}
	}
	x.table[i] = 0
}

// lookup needs mu held.
func (x *expiryIndex) lookup(set string, key, keyEnd []byte) *indexEntry {
	var buf [maxKey + endTail]byte
	k, ok := x.keyOf(&buf, set, key, keyEnd)
	if !ok {
		return nil
	}
	i := x.find(k)
	if i < 0 {
		return nil
	}
	return x.slot(uint32(x.table[i]) - 1)
}

func (x *expiryIndex) get(e *element) *indexEntry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.lookup(e.set, e.key, e.keyEnd)
}

// size is the number of elements indexed.
func (x *expiryIndex) size() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}

// remove forgets the element in slot i. Needs mu held for writing.
func (x *expiryIndex) remove(i uint32) {
	e := x.slot(i)
	if p := x.find(x.keyOfEntry(e)); p >= 0 {
		x.unplace(p)
	}
	for r := e.origins; r != 0; {
		next := x.rec(r).next
		x.freeRec(r)
		r = next
	}
	n := len(x.storedKey(e))
	x.freeKeys[n] = append(x.freeKeys[n], e.koff)
	x.releaseOwner(e.owner)
	set := x.setNames[e.set]
	*e = indexEntry{}
	x.freeSlots = append(x.freeSlots, i)
	x.n--
	x.perSet[set]--
	if x.perSet[set] <= 0 {
		delete(x.perSet, set)
	}
}

// each calls f for every element indexed, by slot id; f may remove it.
func (x *expiryIndex) each(f func(i uint32, e *indexEntry)) {
	for c, chunk := range x.slots {
		for j := range chunk {
			if e := &chunk[j]; e.flags&entryUsed != 0 {
				f(uint32(c*slotChunk+j), e)
			}
		}
	}
}

func (x *expiryIndex) count(set string) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.perSet[set]
}

// storeKey copies b into keys, reusing a free run of its length.
func (x *expiryIndex) storeKey(b []byte) uint32 {
	n := len(b)
	if f := x.freeKeys[n]; len(f) > 0 {
		off := f[len(f)-1]
		x.freeKeys[n] = f[:len(f)-1]
		copy(x.keys[off:], b)
		return off
	}
	off := uint32(len(x.keys))
	x.keys = append(grown(x.mem, x.keys, n), b...)
	return off
}

// put records a deadline the kernel has acknowledged; it never shortens
// one already known.
func (x *expiryIndex) put(e element, deadline time.Time) {
	x.putOwned(e, deadline, netip.Addr{})
}

// putOwned is put for an element the answer of client owner asked for:
// a new element counts against that client's share (owned); a known one
// keeps the owner it has.
func (x *expiryIndex) putOwned(e element, deadline time.Time, owner netip.Addr) {
	x.mu.Lock()
	defer x.mu.Unlock()
	id, ok := x.setIDs[e.set]
	if !ok {
		id = uint16(len(x.setNames))
		x.setIDs[e.set] = id
		x.setNames = append(x.setNames, e.set)
	}
	var buf [maxKey + endTail]byte
	k, ok := x.keyOf(&buf, e.set, e.key, e.keyEnd)
	if !ok {
		return
	}
	dl := deadline.UnixNano()
	h := x.hashKey(k)
	if p := x.findHashed(k, uint32(h)); p >= 0 {
		if cur := x.slot(uint32(x.table[p]) - 1); dl > cur.deadline {
			cur.deadline = dl
		}
		return
	}
	if (x.n+1)*4 > len(x.table)*3 {
		x.grow()
	}
	i, ok := popFree(&x.freeSlots)
	if !ok {
		i = uint32(len(x.slots) * slotChunk)
		x.slots = append(x.slots, (*[slotChunk]indexEntry)(offHeap[indexEntry](x.mem, slotChunk)))
		for j := slotChunk - 1; j > 0; j-- {
			x.freeSlots = append(x.freeSlots, i+uint32(j))
		}
	}
	var sb keyBuf
	flags := uint8(entryUsed)
	if k.hasEnd {
		flags |= entryHasEnd
	}
	*x.slot(i) = indexEntry{deadline: dl, set: id, spread: spreadOf(e.appendKey(sb[:0])), klen: uint8(k.klen), flags: flags, koff: x.storeKey(k.key), owner: x.internOwner(owner)}
	x.placeEntry(tableEntry(i+1, h))
	x.n++
	x.perSet[e.set]++
}

// chainKey appends names joined by NUL, the bytes a chain is stored as.
func chainKey(dst []byte, names []string) []byte {
	for i, n := range names {
		if i > 0 {
			dst = append(dst, 0)
		}
		dst = append(dst, n...)
	}
	return dst
}

func (x *expiryIndex) chainBytes(id uint32) []byte {
	c := &x.chains[id]
	return x.names[c.off : c.off+c.n]
}

// chainNames splits chain id into its names (allocating).
func (x *expiryIndex) chainNames(id uint32) []string {
	return strings.Split(string(x.chainBytes(id)), "\x00")
}

// firstName is the query name of chain id, without allocating.
func (x *expiryIndex) firstName(id uint32) []byte {
	b := x.chainBytes(id)
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// findChain returns the chainTab position holding the chain of bytes k
// (hash h), or -1 and the first empty position of its probe.
func (x *expiryIndex) findChain(k []byte, h uint64) (int, int) {
	if len(x.chainTab) == 0 {
		return -1, -1
	}
	mask := len(x.chainTab) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		id := x.chainTab[i]
		if id == 0 {
			return -1, i
		}
		if string(x.chainBytes(id)) == string(k) {
			return i, -1
		}
	}
}

func (x *expiryIndex) growChains() {
	old := x.chainTab
	x.chainTab = offHeap[uint32](x.mem, max(64, 2*len(old)))
	mask := len(x.chainTab) - 1
	for _, id := range old {
		if id == 0 {
			continue
		}
		i := int(maphash.Bytes(x.seed, x.chainBytes(id))) & mask
		for x.chainTab[i] != 0 {
			i = (i + 1) & mask
		}
		x.chainTab[i] = id
	}
	freeOffHeap(x.mem, old)
}

// intern returns the chain id of names, counting one more origin naming
// it. Needs mu held for writing.
func (x *expiryIndex) intern(names []string) uint32 {
	var buf [256]byte
	k := chainKey(buf[:0], names)
	h := maphash.Bytes(x.seed, k)
	if i, _ := x.findChain(k, h); i >= 0 {
		id := x.chainTab[i]
		x.chains[id].refs++
		return id
	}
	if (x.nchains+1)*4 > len(x.chainTab)*3 {
		x.growChains()
	}
	_, empty := x.findChain(k, h)
	id, ok := popFree(&x.freeChain)
	if !ok {
		id = uint32(len(x.chains))
		x.chains = append(grown(x.mem, x.chains, 1), chainRec{})
	}
	x.chains[id] = chainRec{off: uint32(len(x.names)), n: uint32(len(k)), refs: 1}
	x.names = append(grown(x.mem, x.names, len(k)), k...)
	x.chainTab[empty] = id
	x.nchains++
	return id
}

// release counts one origin less naming chain id, freeing it with the
// last.
func (x *expiryIndex) release(id uint32) {
	c := &x.chains[id]
	if c.refs--; c.refs > 0 {
		return
	}
	k := x.chainBytes(id)
	if i, _ := x.findChain(k, maphash.Bytes(x.seed, k)); i >= 0 {
		x.unplaceChain(i)
	}
	x.garbage += int(c.n)
	*c = chainRec{}
	x.freeChain = append(x.freeChain, id)
	x.nchains--
	if x.garbage > 4096 && x.garbage*2 > len(x.names) {
		x.compactNames()
	}
}

// unplaceChain empties chainTab position i as unplace does for table.
func (x *expiryIndex) unplaceChain(i int) {
	mask := len(x.chainTab) - 1
	for j := (i + 1) & mask; x.chainTab[j] != 0; j = (j + 1) & mask {
		home := int(maphash.Bytes(x.seed, x.chainBytes(x.chainTab[j]))) & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			x.chainTab[i] = x.chainTab[j]
			i = j
		}
	}
	x.chainTab[i] = 0
}

// compactNames copies the live chains' bytes into a new slab.
func (x *expiryIndex) compactNames() {
	out := grown[byte](x.mem, nil, len(x.names)-x.garbage)
	for id := range x.chains {
		c := &x.chains[id]
		if c.refs == 0 {
			continue
		}
		off := uint32(len(out))
		out = append(out, x.names[c.off:c.off+c.n]...)
		c.off = off
	}
	freeOffHeap(x.mem, x.names)
	x.names, x.garbage = out, 0
}

func (x *expiryIndex) rec(i uint32) *originRec {
	return &x.orig[i/recChunk][i%recChunk]
}

func (x *expiryIndex) newRec(r originRec) uint32 {
	i, ok := popFree(&x.freeOrig)
	if !ok {
		base := uint32(len(x.orig) * recChunk)
		x.orig = append(x.orig, (*[recChunk]originRec)(offHeap[originRec](x.mem, recChunk)))
		i = base
		if base == 0 {
			i = 1 // record 0 means none
		}
		for j := base + recChunk - 1; j > i; j-- {
			x.freeOrig = append(x.freeOrig, j)
		}
	}
	*x.rec(i) = r
	return i
}

func (x *expiryIndex) freeRec(i uint32) {
	r := x.rec(i)
	x.release(r.names)
	x.releaseClient(r.client)
	*r = originRec{}
	x.freeOrig = append(x.freeOrig, i)
}

// internClient returns the id of client a (0: none), counting one more
// origin naming it.
func (x *expiryIndex) internClient(a netip.Addr) uint32 {
	k, ok := clientKeyOf(a)
	return x.countClient(k, ok, false)
}

func (x *expiryIndex) releaseClient(id uint32) { x.uncountClient(id, false) }

// internOwner returns the id of the client that owns a new element
// (ownerKeyOf of a; 0: none), counting the element.
func (x *expiryIndex) internOwner(a netip.Addr) uint32 {
	k, ok := ownerKeyOf(a)
	return x.countClient(k, ok, true)
}

// releaseOwner counts one element less for its owner id.
func (x *expiryIndex) releaseOwner(id uint32) { x.uncountClient(id, true) }

// countClient counts one more element (owned) or origin naming k and
// returns its record's id; 0 without a key (!ok).
func (x *expiryIndex) countClient(k clientKey, ok, owned bool) uint32 {
	if !ok {
		return 0
	}
	id := x.clientRecord(k)
	if owned {
		x.clients[id].owned++
	} else {
		x.clients[id].refs++
	}
	return id
}

// uncountClient undoes countClient for the record id (0: none), freeing
// it once nothing names it and it owns no element.
func (x *expiryIndex) uncountClient(id uint32, owned bool) {
	if id == 0 {
		return
	}
	c := &x.clients[id]
	if owned {
		c.owned--
	} else {
		c.refs--
	}
	if c.refs > 0 || c.owned > 0 {
		return
	}
	delete(x.clientIDs, c.key)
	*c = clientRec{}
	x.freeCli = append(x.freeCli, id)
}

// clientRecord returns the id of k's record, made with nothing counted
// if there is none.
func (x *expiryIndex) clientRecord(k clientKey) uint32 {
	if id, ok := x.clientIDs[k]; ok {
		return id
	}
	id, ok := popFree(&x.freeCli)
	if !ok {
		id = uint32(len(x.clients))
		x.clients = append(x.clients, clientRec{})
	}
	x.clients[id] = clientRec{key: k}
	x.clientIDs[k] = id
	return id
}

// owned is the number of elements indexed whose answers came from the
// client of owner key k (ownerKeyOf), live or not yet swept.
func (x *expiryIndex) owned(k clientKey) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if id, ok := x.clientIDs[k]; ok {
		return int(x.clients[id].owned)
	}
	return 0
}

// maxOwned is the most live elements any one client owns.
func (x *expiryIndex) maxOwned() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	most := uint32(0)
	for i := range x.clients {
		most = max(most, x.clients[i].owned)
	}
	return int(most)
}

// clientID is the id origins from client a carry; ok is false for a
// client no origin names.
func (x *expiryIndex) clientID(a netip.Addr) (uint32, bool) {
	k, ok := clientKeyOf(a)
	if !ok {
		return 0, true
	}
	id, ok := x.clientIDs[k]
	return id, ok
}

func (x *expiryIndex) clientAddr(id uint32) netip.Addr {
	if id == 0 {
		return netip.Addr{}
	}
	return x.clients[id].key.addr4or16()
}

// same reports whether r is the answer for name and targets (from the
// client of id), without allocating.
func (x *expiryIndex) same(r *originRec, name string, targets []string, client uint32) bool {
	if r.client != client {
		return false
	}
	b := x.chainBytes(r.names)
	for i := -1; i < len(targets); i++ {
		n := name
		if i >= 0 {
			if len(b) == 0 || b[0] != 0 {
				return false
			}
			b = b[1:]
			n = targets[i]
		}
		if len(b) < len(n) || string(b[:len(n)]) != n {
			return false
		}
		b = b[len(n):]
	}
	return len(b) == 0
}

// remembers reports whether an answer for name and targets (from client)
// is among e's origins with at least need left at now. Needs mu held.
func (x *expiryIndex) remembers(e *indexEntry, name string, targets []string, client netip.Addr, need time.Duration, now time.Time) bool {
	_, ok := x.rememberedUntil(e, name, targets, client, need, now)
	return ok
}

// rememberedUntil is remembers, with the deadline (Unix ns) the answer
// was remembered with.
func (x *expiryIndex) rememberedUntil(e *indexEntry, name string, targets []string, client netip.Addr, need time.Duration, now time.Time) (int64, bool) {
	c, known := x.clientID(client)
	if !known {
		return 0, false
	}
	for r := e.origins; r != 0; r = x.rec(r).next {
		rec := x.rec(r)
		if x.same(rec, name, targets, c) && time.Duration(rec.until-now.UnixNano()) >= need {
			return rec.until, true
		}
	}
	return 0, false
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
	// Interned now, released below if no new record keeps it.
	c := x.internClient(o.client)
	defer x.releaseClient(c)
	if !o.inherited {
		// What this process learned about the name is the whole answer:
		// the name alone read from a comment no longer counts.
		for p := &cur.origins; *p != 0; {
			rec := x.rec(*p)
			if rec.inherited && rec.client == c && string(x.firstName(rec.names)) == o.names[0] {
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
	for r := cur.origins; r != 0; r = x.rec(r).next {
		rec := x.rec(r)
		if x.same(rec, o.names[0], o.names[1:], c) {
			if until > rec.until {
				rec.until = until
			}
			rec.fromFleet = rec.fromFleet && o.fromFleet
			return
		}
		if first == 0 || rec.until < x.rec(first).until {
			first = r
		}
		n++
		last = r
	}
	if c != 0 {
		x.clients[c].refs++ // the record's own reference
	}
	if n < maxOrigins {
		r := x.newRec(originRec{until: until, names: x.intern(o.names), client: c, inherited: o.inherited, fromFleet: o.fromFleet})
		if last == 0 {
			cur.origins = r
		} else {
			x.rec(last).next = r
		}
		return
	}
	// intern before release: the chain may be the one released.
	names := x.intern(o.names)
	rec := x.rec(first)
	x.release(rec.names)
	x.releaseClient(rec.client)
	rec.until, rec.names, rec.client, rec.inherited, rec.fromFleet = until, names, c, o.inherited, o.fromFleet
}

// origins lists e's origins, oldest noted first. Needs mu held.
func (x *expiryIndex) origins(e *indexEntry) []origin {
	var out []origin
	for r := e.origins; r != 0; r = x.rec(r).next {
		rec := x.rec(r)
		out = append(out, origin{names: x.chainNames(rec.names), client: x.clientAddr(rec.client), until: time.Unix(0, rec.until), inherited: rec.inherited, fromFleet: rec.fromFleet})
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
	x.sweeps++
	limit := now.Add(-margin).UnixNano()
	x.each(func(i uint32, e *indexEntry) {
		if e.deadline < limit {
			x.remove(i)
		}
	})
}

// sweepCount is how many times sweep walked the index.
func (x *expiryIndex) sweepCount() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.sweeps
}

// entryView is an indexed element as a reload's re-check sees it.
type entryView struct {
	set         string
	key, keyEnd []byte
	origins     []origin
	owner       netip.Addr // the client whose share it counts against (ownerAddr), or none
}

func (x *expiryIndex) view(e *indexEntry) entryView {
	k := x.storedKey(e)
	v := entryView{set: x.setNames[e.set], key: append([]byte(nil), k[:e.klen]...), origins: x.origins(e), owner: x.clientAddr(e.owner)}
	if e.flags&entryHasEnd != 0 {
		v.keyEnd = append(append([]byte(nil), k[:e.klen-endTail]...), k[e.klen:]...)
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
	x.each(func(i uint32, e *indexEntry) {
		left := e.left(now)
		set := x.setNames[e.set]
		if !keep[set] || left <= 0 {
			x.remove(i)
			return
		}
		v := x.view(e)
		if approved != nil && !approved(v) {
			x.remove(i)
			dropped++
			return
		}
		out[set] = append(out[set], nftables.SetElement{Key: v.key, KeyEnd: v.keyEnd, Timeout: ceilMillis(left), Comment: comment(v.origins, v.owner)})
	})
	return out, dropped
}

// live lists the still-live elements of the given sets, with their
// remaining lifetime, to add them back after someone else deleted them.
func (x *expiryIndex) live(now time.Time, sets map[string]bool) map[string][]nftables.SetElement {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := map[string][]nftables.SetElement{}
	x.each(func(_ uint32, e *indexEntry) {
		left := e.left(now)
		set := x.setNames[e.set]
		if !sets[set] || left <= 0 {
			return
		}
		v := x.view(e)
		out[set] = append(out[set], nftables.SetElement{Key: v.key, KeyEnd: v.keyEnd, Timeout: ceilMillis(left), Comment: comment(v.origins, v.owner)})
	})
	return out
}

// comment is the comment an element is added back with: the names of the
// newest of this node's answers that asked for it, else of the newest
// fleet approval (marked as one), if known, and the client it counts
// against (elementComment).
func comment(origins []origin, owner netip.Addr) string {
	var newest *origin
	for i := range origins {
		o := &origins[i]
		if len(o.names) == 0 {
			continue
		}
		// An own answer, if any, before fleet approvals: a restart
		// publishes again what this node approved.
		if newest == nil || newest.fromFleet && !o.fromFleet ||
			newest.fromFleet == o.fromFleet && o.until.After(newest.until) {
			newest = o
		}
	}
	if newest == nil {
		return ""
	}
	return elementComment(newest.names[0], newest.names[1:], newest.fromFleet, owner)
}

// ceilMillis rounds up to the milliseconds netlink carries, so the kernel
// never expires a carried element before the index's deadline.
func ceilMillis(d time.Duration) time.Duration {
	if r := d % time.Millisecond; r > 0 {
		d += time.Millisecond - r
	}
	return d
}

// popFree takes the most recently freed id off a free list, if any.
func popFree(free *[]uint32) (uint32, bool) {
	n := len(*free)
	if n == 0 {
		return 0, false
	}
	id := (*free)[n-1]
	*free = (*free)[:n-1]
	return id, true
}
