package resolver

import (
	"errors"
	"time"
)

// staleTTL is the TTL of a stale answer (RFC 8767 section 4 recommends
// 30 seconds): short, so clients come back soon and get a fresh one.
const staleTTL = 30

// staleAnswerTimeout is how long a query with a stale answer at hand waits
// for the upstreams (RFC 8767's client response timer, 1.8 s suggested):
// stub resolvers give up after a few seconds, and trying every upstream in
// turn can take longer than that.
const staleAnswerTimeout = 1800 * time.Millisecond

// upstreamStale is the query log's upstream for stale answers.
const upstreamStale = "stale-cache"

var errStaleTimer = errors.New("no upstream answer within the stale answer timeout")

// forwardOrStale resolves q upstream like forward. When the cache holds an
// expired answer still inside the stale window, it waits for the upstreams
// at most staleAnswerTimeout and serves that answer if they fail or are
// slower; the exchange goes on in the background and refreshes the cache.
func (s *Server) forwardOrStale(key cacheKey, q *query, o *outcome) (*answer, error) {
	var cached *answer
	if s.cache != nil && s.cache.stale.Load() > 0 {
		cached, _ = s.cache.getStale(key, s.now())
	}
	if cached == nil {
		ans, server, err := s.forward(key, q)
		o.upstream = server
		return ans, err
	}

	type result struct {
		ans    *answer
		server string
		err    error
	}
	done := make(chan result, 1) // buffered: the sender never waits for a reader that gave up
	detached := *q               // a copy, so q itself stays on the caller's stack
	go func() {
		ans, server, err := s.forward(key, &detached)
		done <- result{ans, server, err}
	}()
	timer := time.NewTimer(staleAnswerTimeout)
	defer timer.Stop()
	var err error
	select {
	case r := <-done:
		if r.err == nil {
			o.upstream = r.server
			return r.ans, nil
		}
		err = r.err
	case <-timer.C:
		err = errStaleTimer
	}
	ans, rerr := staleAnswer(cached)
	if rerr != nil {
		return nil, err
	}
	s.log.Warn("serving a stale answer", "qname", q.qname, "err", err)
	o.cached, o.upstream = true, upstreamStale
	return ans, nil
}

// staleAnswer is a copy of a, an expired cached answer, with every TTL set
// to staleTTL. The firewall allowance gets the same TTL.
func staleAnswer(a *answer) (*answer, error) {
	wire := append([]byte(nil), a.wire...)
	if err := rewriteTTLs(wire, func(uint32) uint32 { return staleTTL }); err != nil {
		return nil, err
	}
	stale := *a
	stale.wire, stale.answerTTL, stale.cacheTTL = wire, staleTTL, 0
	return &stale, nil
}
