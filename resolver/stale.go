package resolver

// staleTTL is the TTL of a stale answer (RFC 8767 section 4 recommends
// 30 seconds): short, so clients come back soon and get a fresh one.
const staleTTL = 30

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

// serveStale answers q from an expired cache entry after the upstreams
// failed with err, when the stale window allows it.
func (s *Server) serveStale(key cacheKey, q *query, o *outcome, err error) (*answer, bool) {
	if s.cache == nil || s.cache.stale == 0 {
		return nil, false
	}
	cached, ok := s.cache.getStale(key, s.now())
	if !ok {
		return nil, false
	}
	ans, rerr := staleAnswer(cached)
	if rerr != nil {
		return nil, false
	}
	s.log.Warn("upstreams failed; serving a stale answer", "qname", q.qname, "err", err)
	o.cached, o.upstream = true, upstreamStale
	return ans, true
}

// upstreamStale is the query log's upstream for stale answers.
const upstreamStale = "stale-cache"
