package resolver

import (
	"context"
	"fmt"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/resolver/upstream"
)

// Forwarder sends queries upstream; *upstream.Set is the real one.
type Forwarder interface {
	// Exchange returns the first usable reply to m and the server that
	// gave it, trying the servers for m's (normalized) name in turn. It
	// keeps nothing of m once it returns (m is reused for the next miss).
	Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, string, error)
	// InZone reports whether qname goes to a configured zone's servers.
	InZone(qname string) bool
	// CloseIdle closes connections kept open between queries.
	CloseIdle()
}

// upstreamQuery is the message egressd sends for q. It is built fresh: the
// client's OPT record is never forwarded, so its EDNS options (client
// subnet above all) stay on this side. Release it after the exchange.
func upstreamQuery(q *query) *upstream.Query {
	return upstream.AcquireQuery(q.qname, q.qtype, q.qclass, q.cd, q.do)
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
		ans, server, err := s.exchange(q)
		if err != nil {
			return nil, err
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

// wireForwarder is a Forwarder that can return plain replies unparsed
// (*upstream.Set).
type wireForwarder interface {
	ExchangeWire(ctx context.Context, m *dns.Msg) (*dns.Msg, []byte, string, error)
}

// exchange asks upstream for q and builds its answer: from the wire for a
// plain reply (newAnswerWire), else by unpacking it (newAnswer).
func (s *Server) exchange(q *query) (*answer, string, error) {
	var resp *dns.Msg
	var server string
	var err error
	uq := upstreamQuery(q)
	defer uq.Release()
	if fw, ok := s.forwarder.(wireForwarder); ok {
		var raw []byte
		resp, raw, server, err = fw.ExchangeWire(context.Background(), &uq.Msg)
		if err == nil && raw != nil {
			if ans, ok := newAnswerWire(raw, q.qname); ok {
				return ans, server, nil
			}
			resp = new(dns.Msg)
			if err := resp.Unpack(raw); err != nil {
				return nil, "", fmt.Errorf("%s: %w", server, err)
			}
		}
	} else {
		resp, server, err = s.forwarder.Exchange(context.Background(), &uq.Msg)
	}
	if err != nil {
		return nil, "", err
	}
	ans, err := newAnswer(resp, q.qname)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", server, err)
	}
	return ans, server, nil
}
