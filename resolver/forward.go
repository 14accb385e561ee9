package resolver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/miekg/dns"
)

// upstreamQuery is the message egressd sends for q. It is built fresh: the
// client's OPT record is never forwarded, so its EDNS options (client
// subnet above all) stay on this side.
func upstreamQuery(q *query) *dns.Msg {
	m := new(dns.Msg)
	m.Question = []dns.Question{{Name: q.qname, Qtype: q.qtype, Qclass: q.qclass}}
	m.RecursionDesired = true
	m.CheckingDisabled = q.cd
	m.SetEdns0(advertisedUDPSize, q.do)
	return m
}

type forwarded struct {
	ans    *answer
	server string
}

// forward resolves q upstream and caches the result. Identical concurrent
// misses share one exchange; each of them still does its own policy check
// and firewall push, since those depend on the client.
func (s *Server) forward(key cacheKey, q *query) (*answer, string, error) {
	v, err, _ := s.flights.Do(key.String(), func() (any, error) {
		resp, server, err := s.exchange(context.Background(), upstreamQuery(q))
		if err != nil {
			return nil, err
		}
		ans, err := newAnswer(resp, q.qname)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", server, err)
		}
		if s.cache != nil && s.cache.put(key, ans, s.now()) {
			s.countCacheEntries()
		}
		return forwarded{ans, server}, nil
	})
	if err != nil {
		return nil, "", err
	}
	f := v.(forwarded)
	return f.ans, f.server, nil
}

// Upstream results, as counted in egressd_upstream_requests_total.
const (
	resultOK       = "ok"
	resultError    = "error"
	resultTimeout  = "timeout"
	resultServfail = "servfail"
	resultRefused  = "refused"
)

// exchange asks each upstream in order and returns the first usable reply.
// A name in a configured zone goes to that zone's servers, anything else
// to the default ones. A server that fails, times out, or answers SERVFAIL
// or REFUSED hands on to the next, so the whole exchange takes at most
// Timeout per server. Servers that recently failed to answer are tried
// last.
func (s *Server) exchange(parent context.Context, m *dns.Msg) (*dns.Msg, string, error) {
	upstreams, health := s.upstreams, s.health
	if z := s.zones.match(m.Question[0].Name); z != nil {
		upstreams, health = z.upstreams, z.health
	}
	var errs []error
	for _, i := range health.order(s.now()) {
		u := upstreams[i]
		if err := parent.Err(); err != nil {
			return nil, "", err
		}
		ctx, cancel := context.WithTimeout(parent, s.opts.Timeout)
		start := time.Now()
		resp, err := u.Exchange(ctx, m)
		cancel()
		result := classify(resp, err)
		s.countUpstream(u.String(), result, time.Since(start))
		health.observe(i, err == nil, s.now())
		if err == nil {
			s.ready.Store(true)
		}
		if result == resultOK {
			return resp, u.String(), nil
		}
		if err == nil {
			err = fmt.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	return nil, "", errors.Join(errs...)
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

// closeIdleUpstreams closes the connections DNS-over-TLS and DNS-over-HTTPS
// upstreams keep open between queries.
func (s *Server) closeIdleUpstreams() {
	all := s.upstreams
	for _, z := range s.zones {
		all = append(all[:len(all):len(all)], z.upstreams...)
	}
	for _, u := range all {
		if c, ok := u.(idleCloser); ok {
			c.closeIdle()
		}
	}
}
