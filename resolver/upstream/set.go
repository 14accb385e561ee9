package upstream

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

// Options configures a Set.
type Options struct {
	// Servers are tried in order for names in no zone: HOST:PORT, IP,
	// tls://HOST[:PORT][#NAME] or https://HOST[:PORT]/PATH (ParseAddr).
	Servers []string
	// Zones send queries for a domain and the names below it to their own
	// servers; the longest matching zone wins.
	Zones []Zone
	// Bootstrap lists plain DNS servers (IP[:PORT], port 53 by default)
	// that resolve the host names of tls:// and https:// servers; IP
	// literals need none.
	Bootstrap []string
	Timeout   time.Duration  // per attempt; DefaultTimeout when 0
	Mark      uint32         // SO_MARK for every socket when non-zero
	RootCAs   *x509.CertPool // verifies DoT and DoH servers; nil: system roots
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
	// Now is the clock of the servers' health (backoff); nil is time.Now.
	Now func() time.Time
	// Answered, when set, is called each time a server answers at all,
	// whatever the RCODE: the server is reachable.
	Answered func()
	// Tap, when set, sees each query sent to a server and each reply
	// (dnstap).
	Tap Tap
}

// Tap receives each query Exchange sent to a server, once the attempt is
// over, with the server as configured (IP:PORT, tls://…, https://…), and
// the reply, nil when there was none (an error, a timeout). The query
// carries the ID the resolver gave it; the transport sent it with the
// reply's (plain DNS picks a random one). Forwarded must return at once
// and must not modify or keep the messages.
type Tap interface {
	Forwarded(server string, sent, received time.Time, query, reply *dns.Msg)
}

// DefaultTimeout is the per-attempt timeout when Options.Timeout is 0.
const DefaultTimeout = 2 * time.Second

// Set is the configured servers: the default list and one list per zone,
// each with its health order. It is safe for concurrent use.
type Set struct {
	def      *serverList
	zones    zoneRoutes // nil without zones
	timeout  time.Duration
	metrics  *metrics.Metrics
	now      func() time.Time
	answered func()
	tap      Tap
}

// New builds the clients for o. Nothing is dialed until the first
// exchange.
func New(o Options) (*Set, error) {
	if len(o.Servers) == 0 {
		return nil, errors.New("no upstream servers")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Set{timeout: o.Timeout, metrics: o.Metrics, now: o.Now, answered: o.Answered, tap: o.Tap}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.now == nil {
		s.now = time.Now
	}
	build, err := newUpstreamBuilder(o, log)
	if err != nil {
		return nil, err
	}
	ups, err := build.list(o.Servers)
	if err != nil {
		return nil, err
	}
	s.def = newServerList(ups)
	if s.zones, err = newZoneRoutes(o.Zones, build); err != nil {
		return nil, err
	}
	return s, nil
}

// Upstream results, as counted in egressd_upstream_requests_total.
const (
	resultOK       = "ok"
	resultError    = "error"
	resultTimeout  = "timeout"
	resultServfail = "servfail"
	resultRefused  = "refused"
)

// Exchange asks each server in order and returns the first usable reply
// and the server (as configured) that gave it. A name in a configured
// zone goes to that zone's servers, anything else to the default ones; m's
// question name must be normalized (lower case, fully qualified). A server
// that fails, times out, or answers SERVFAIL or REFUSED hands on to the
// next, so the whole exchange takes at most Timeout per server. Servers
// that recently failed to answer are tried last. m is not modified.
func (s *Set) Exchange(parent context.Context, m *dns.Msg) (*dns.Msg, string, error) {
	resp, _, server, err := s.exchange(parent, m, false)
	return resp, server, err
}

// ExchangeWire is Exchange returning a plain reply from a plain DNS server
// over UDP (see ParsePlain) in wire form, owned by the caller, with a nil
// reply; any other reply comes unpacked, as from Exchange. With a tap
// every reply is unpacked.
func (s *Set) ExchangeWire(parent context.Context, m *dns.Msg) (*dns.Msg, []byte, string, error) {
	return s.exchange(parent, m, s.tap == nil)
}

// wireServer is a server that can return plain replies unparsed.
type wireServer interface {
	ExchangeWire(ctx context.Context, query *dns.Msg) (*dns.Msg, []byte, error)
}

func (s *Set) exchange(parent context.Context, m *dns.Msg, wire bool) (*dns.Msg, []byte, string, error) {
	list := s.def
	if z := s.zones.match(m.Question[0].Name); z != nil {
		list = z
	}
	var errs []error
	for _, i := range list.health.order(s.now()) {
		u := list.upstreams[i]
		if err := parent.Err(); err != nil {
			return nil, nil, "", err
		}
		start := time.Now()
		var resp *dns.Msg
		var raw []byte
		var err error
		if parent.Done() == nil && enforcesDeadline(u) {
			// Nothing can cancel the exchange and the server stops at
			// the deadline by itself: no context timer needed.
			resp, raw, err = exchangeWith(deadlineOnly{parent, start.Add(s.timeout)}, u, m, wire)
		} else {
			ctx, cancel := context.WithTimeout(parent, s.timeout)
			resp, raw, err = exchangeWith(ctx, u, m, wire)
			cancel()
		}
		if s.tap != nil {
			s.tap.Forwarded(u.String(), start, time.Now(), m, resp)
		}
		result := resultOK // a plain reply's RCODE is NOERROR or NXDOMAIN
		if raw == nil {
			result = classify(resp, err)
		}
		s.count(u.String(), result, time.Since(start))
		list.health.observe(i, err == nil, s.now())
		if err == nil && s.answered != nil {
			s.answered()
		}
		if result == resultOK {
			return resp, raw, u.String(), nil
		}
		if err == nil {
			err = fmt.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	return nil, nil, "", errors.Join(errs...)
}

// exchangeWith asks u, for a plain reply unparsed when wire is set and u
// can.
func exchangeWith(ctx context.Context, u server, m *dns.Msg, wire bool) (*dns.Msg, []byte, error) {
	if w, ok := u.(wireServer); ok && wire {
		return w.ExchangeWire(ctx, m)
	}
	resp, err := u.Exchange(ctx, m)
	return resp, nil, err
}

// deadlineOnly is a context that carries a deadline and nothing to wait
// on: no Done channel, no timer. Set.Exchange passes it, for a parent
// that can never be cancelled, to servers that stop at the deadline by
// themselves (enforcesDeadline), sparing each miss a timer and the
// allocations of context.WithTimeout and context.AfterFunc.
type deadlineOnly struct {
	context.Context
	deadline time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.deadline, true }

// deadlineKeeper is a server whose Exchange ends by the context's
// deadline through its sockets' own deadlines, without waiting on the
// context's Done channel.
type deadlineKeeper interface{ keepsDeadline() }

func enforcesDeadline(u server) bool {
	_, ok := u.(deadlineKeeper)
	return ok
}

// InZone reports whether qname (normalized) is in or below a configured
// zone, so its servers are the zone's.
func (s *Set) InZone(qname string) bool { return s.zones.match(qname) != nil }

func (s *Set) count(server, result string, d time.Duration) {
	if m := s.metrics; m != nil {
		m.UpstreamRequests.WithLabelValues(server, result).Inc()
		m.UpstreamDuration.WithLabelValues(server).Observe(d.Seconds())
	}
}

func classify(resp *dns.Msg, err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return resultTimeout
	case err != nil:
		return resultError
	case resp.Rcode == dns.RcodeServerFailure:
		return resultServfail
	case resp.Rcode == dns.RcodeRefused:
		return resultRefused
	case resp.Rcode > 0xF:
		// Extended RCODEs (BADVERS and friends) mean the exchange itself
		// went wrong.
		return resultError
	}
	return resultOK
}

// CloseIdle closes the connections DNS-over-TLS and DNS-over-HTTPS
// clients and the plain UDP pools keep open between queries. The Set
// stays usable: later queries open new ones.
func (s *Set) CloseIdle() {
	all := s.def.upstreams
	for _, z := range s.zones {
		all = append(all[:len(all):len(all)], z.upstreams...)
	}
	for _, u := range all {
		if c, ok := u.(idleCloser); ok {
			c.closeIdle()
		}
	}
}

// AdvertisedUDPSize is the EDNS(0) UDP payload size queries advertise:
// 1232 bytes avoids IP fragmentation on common paths (DNS Flag Day 2020).
const AdvertisedUDPSize = 1232

// NewQuery is a recursive query for name (qtype, qclass) with an OPT
// record advertising AdvertisedUDPSize, the DO bit set when do, and the
// CD bit when cd. It carries no EDNS options.
//
// The message, its question and its OPT record are one allocation (a miss
// builds one for every upstream exchange): the same message as building
// it with dns.Msg's SetQuestion and SetEdns0, in one object instead of
// five.
func NewQuery(name string, qtype, qclass uint16, cd, do bool) *dns.Msg {
	q := new(Query)
	q.fill(name, qtype, qclass, cd, do)
	return &q.Msg
}

// Query is NewQuery's message with its parts, from a pool (AcquireQuery):
// a miss asks upstream once, so a resolver under load would otherwise
// leave one behind for the collector at every miss.
type Query struct {
	Msg      dns.Msg
	question [1]dns.Question
	extra    [1]dns.RR
	opt      dns.OPT
}

var queries = sync.Pool{New: func() any { return new(Query) }}

// AcquireQuery is NewQuery's message, taken from a pool. Release it once
// the exchange is over: Exchange and ExchangeWire of a Set (and of every
// server in it) keep nothing of the message they were given after they
// return, and neither do their replies.
func AcquireQuery(name string, qtype, qclass uint16, cd, do bool) *Query {
	q := queries.Get().(*Query)
	q.fill(name, qtype, qclass, cd, do)
	return q
}

// Release returns q to the pool; nothing may use q.Msg afterwards.
func (q *Query) Release() {
	*q = Query{} // keeps no name alive
	queries.Put(q)
}

func (q *Query) fill(name string, qtype, qclass uint16, cd, do bool) {
	q.question[0] = dns.Question{Name: name, Qtype: qtype, Qclass: qclass}
	q.opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	q.opt.SetUDPSize(AdvertisedUDPSize)
	if do {
		q.opt.SetDo()
	}
	q.extra[0] = &q.opt
	q.Msg = dns.Msg{Question: q.question[:], Extra: q.extra[:]}
	q.Msg.RecursionDesired = true
	q.Msg.CheckingDisabled = cd
}

// normalizeName is the form zones and bootstrap hosts are keyed on, the
// same as policy's.
func normalizeName(name string) string { return policy.NormalizeName(name) }

// EqualName compares DNS names, in presentation form or as wire labels,
// ignoring ASCII case: the match a reply's question must meet, and the
// resolver's for names in an answer and in a client's query.
func EqualName[T ~string | ~[]byte](a, b T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if LowerASCII(a[i]) != LowerASCII(b[i]) {
			return false
		}
	}
	return true
}

// LowerASCII folds one byte of a DNS name; other bytes stay as they are.
func LowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
