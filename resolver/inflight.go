package resolver

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// MaxInFlight bounds the queries waiting for an upstream or the firewall
// at once (Options.MaxInFlight changes it). Each holds a goroutine (a UDP
// worker or a TCP connection's) and may wait seconds, so a flood of slow
// names would otherwise pile them up. Queries the cache answers at once
// take no slot: they never wait behind misses.
const MaxInFlight = 8192

// DefaultMaxInFlightPerClient is one client's share of the slots. A client
// may go over its share only while fewer than half of all slots are
// taken: a server with one client (a host, a pod) can use half of them,
// and a client flooding slow names never takes more than half, whatever
// the others do.
const DefaultMaxInFlightPerClient = 256

// dropWarnInterval spaces out the warning about dropped queries.
const dropWarnInterval = 10 * time.Second

// inFlight counts the queries waiting for an upstream or the firewall, in
// total and per client key, and rate-limits the drop warning.
type inFlight struct {
	limit     int64
	perClient int32
	keys      clientKeys
	n         atomic.Int64
	shards    [rateShards]inFlightShard

	droppedClient atomic.Int64 // since the last warning
	droppedTotal  atomic.Int64
	lastWarn      atomic.Int64 // unix nanoseconds
}

// inFlightShard holds the counters of the clients whose keys hash to it.
// A counter stays after its client's last slot is released, so a client
// with queries coming and going does not allocate; counters at zero are
// swept once the shard has sweepAt of them, so there are at most limit
// counters in use plus sweepAt idle ones per shard.
type inFlightShard struct {
	mu      sync.Mutex
	n       map[netip.Addr]*atomic.Int32
	sweepAt int
}

// inFlightIdleCounters is how many counters a shard holds before it drops
// those at zero.
const inFlightIdleCounters = 256

// inFlightSlot is a slot acquire handed out; release gives it back.
type inFlightSlot struct {
	held *atomic.Int32 // the client's counter
}

// Why acquire refused a slot, as egressd_inflight_dropped_total's label.
const (
	overClientShare = "client"
	overTotal       = "total"
)

func (f *inFlight) init(limit, perClient int, keys clientKeys) {
	if limit <= 0 {
		limit = MaxInFlight
	}
	if perClient <= 0 {
		perClient = DefaultMaxInFlightPerClient
	}
	f.limit, f.perClient, f.keys = int64(limit), int32(min(perClient, limit)), keys
	for i := range f.shards {
		f.shards[i].n = make(map[netip.Addr]*atomic.Int32)
		f.shards[i].sweepAt = inFlightIdleCounters
	}
}

// acquire takes a slot for a query from client, or says why there was
// none: the client's share is checked first (a client over it borrows
// only while under half of the slots are taken), so a flooding client's
// excess counts against its share even when the total is full too.
func (f *inFlight) acquire(client netip.Addr) (slot inFlightSlot, refused string) {
	key := f.keys.key(client)
	sh := &f.shards[shardOf(key)]
	sh.mu.Lock()
	held := sh.n[key]
	if held == nil {
		if len(sh.n) >= sh.sweepAt {
			sh.sweep()
		}
		held = new(atomic.Int32)
		sh.n[key] = held
	}
	if held.Load() >= f.perClient && f.n.Load() >= f.limit/2 {
		sh.mu.Unlock()
		f.droppedClient.Add(1)
		return inFlightSlot{}, overClientShare
	}
	if f.n.Add(1) > f.limit {
		sh.mu.Unlock()
		f.n.Add(-1)
		f.droppedTotal.Add(1)
		return inFlightSlot{}, overTotal
	}
	held.Add(1)
	sh.mu.Unlock()
	return inFlightSlot{held: held}, ""
}

// sweep drops the counters at zero; the next sweep waits until the shard
// has twice as many counters as are left, so sweeps cost O(1) a query.
func (sh *inFlightShard) sweep() {
	for k, c := range sh.n {
		if c.Load() == 0 {
			delete(sh.n, k)
		}
	}
	sh.sweepAt = max(inFlightIdleCounters, 2*len(sh.n))
}

// release gives back a slot acquire returned.
func (f *inFlight) release(slot inFlightSlot) {
	slot.held.Add(-1)
	f.n.Add(-1)
}

// held is how many slots client's key holds.
func (f *inFlight) held(client netip.Addr) int32 {
	key := f.keys.key(client)
	sh := &f.shards[shardOf(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c := sh.n[key]; c != nil {
		return c.Load()
	}
	return 0
}

// warnDue reports, at most once per interval, that drops should be logged,
// and how many happened since the last report over a client's share and
// over the total.
func (f *inFlight) warnDue(now time.Time) (client, total int64, due bool) {
	last := f.lastWarn.Load()
	if now.UnixNano()-last < int64(dropWarnInterval) || !f.lastWarn.CompareAndSwap(last, now.UnixNano()) {
		return 0, 0, false
	}
	return f.droppedClient.Swap(0), f.droppedTotal.Swap(0), true
}

// overInFlight handles a query refused a slot. Over UDP it is dropped like
// a rate-limited one (the client retries; a reply to a forged source would
// feed a reflection attack). Over TCP the client's address is proven and it
// would otherwise wait for its timeout, so it gets SERVFAIL. A warning line
// at most every dropWarnInterval tells how many were dropped, and names the
// client whose share was full.
func (s *Server) overInFlight(w dns.ResponseWriter, q *query, c caller, why string) {
	if m := s.opts.Metrics; m != nil {
		m.InFlightDropped.WithLabelValues(why).Inc()
	}
	if client, total, ok := s.inFlight.warnDue(c.start); ok {
		f := &s.inFlight
		s.log.Warn(msgInFlightDropped, "over_client_share", client, "over_total", total,
			"last_client", f.keys.name(f.keys.key(c.addr)), "last_limit", why,
			"max_in_flight_per_client", f.perClient, "max_in_flight", f.limit)
	}
	if c.udp {
		return
	}
	out, err := rcodeAnswer(q, dns.RcodeServerFailure).render(q, 0, 0)
	if err == nil {
		w.Write(out)
	}
}

// slotState is how a query holds its in-flight slot. A UDP query that
// needs an upstream or the firewall gets one from the reader before a
// worker takes it (not lazy): a slot per worker goroutine. A TCP query
// runs on its connection's goroutine, which the connection limits bound,
// and is lazy: takeSlot gets it a slot just before an upstream exchange.
type slotState struct {
	lazy    bool
	held    bool
	client  netip.Addr
	slot    inFlightSlot // what release needs, once held
	refused string       // why takeSlot got none
}

// takeSlot makes sure q holds an in-flight slot before the request path
// waits for an upstream. It reports false when q has a
// lazy slot and none was free; q.slot.refused then tells why.
func (s *Server) takeSlot(q *query) bool {
	if !q.slot.lazy || q.slot.held {
		return true
	}
	slot, refused := s.inFlight.acquire(q.slot.client)
	if refused != "" {
		q.slot.refused = refused
		return false
	}
	q.slot.slot, q.slot.held = slot, true
	return true
}

// msgInFlightDropped is the log message for queries refused a slot.
const msgInFlightDropped = "queries dropped: too many waiting for upstreams or the firewall"
