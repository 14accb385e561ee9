package resolver

import (
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/querylog"
)

// qtypeLabels are the query types counted by name; every other type is
// "other", which keeps the metric's label set bounded.
var qtypeLabels = map[uint16]string{
	dns.TypeA: "A", dns.TypeAAAA: "AAAA", dns.TypeCNAME: "CNAME", dns.TypeMX: "MX",
	dns.TypeTXT: "TXT", dns.TypeNS: "NS", dns.TypeSOA: "SOA", dns.TypePTR: "PTR",
	dns.TypeSRV: "SRV", dns.TypeHTTPS: "HTTPS", dns.TypeSVCB: "SVCB", dns.TypeCAA: "CAA",
	dns.TypeDS: "DS", dns.TypeDNSKEY: "DNSKEY", dns.TypeNAPTR: "NAPTR", dns.TypeANY: "ANY",
}

func qtypeLabel(t uint16) string {
	if l, ok := qtypeLabels[t]; ok {
		return l
	}
	return "other"
}

// rcodeLabel names an RCODE, "other" for unassigned ones. Code 16 is
// BADSIG in TSIG and BADVERS in EDNS; egressd only ever means BADVERS.
func rcodeLabel(rcode int) string {
	if rcode == dns.RcodeBadVers {
		return "BADVERS"
	}
	if l, ok := dns.RcodeToString[rcode]; ok {
		return l
	}
	return "other"
}

func cachedLabel(cached bool) string {
	if cached {
		return "true"
	}
	return "false"
}

// record writes the query log entry and the per-query metrics.
func (s *Server) record(start time.Time, client netip.Addr, q *query, o *outcome) {
	elapsed := time.Since(start)
	rcode := o.ans.rcode | int(o.ans.extRcode)<<4
	if o.cacheHit {
		s.countCache(true)
	}
	if m := s.opts.Metrics; m != nil {
		h := s.handles.forRecord(m, recordKey{o.group, o.decision, q.qtype, rcode, o.cached})
		h.query.Inc()
		h.response.Inc()
		h.duration.Observe(elapsed.Seconds())
		s.enc.byTransport.inc(q.transport)
	}
	if s.opts.QueryLog == nil || !s.opts.QueryLog.Keep(o.decision) {
		return
	}
	e := &querylog.Entry{
		Time:       start,
		Client:     client.String(),
		Group:      o.group,
		QName:      q.qname,
		QType:      typeName(q.qtype),
		Decision:   o.decision,
		Rule:       o.rule,
		Source:     o.source,
		Action:     o.action,
		RCode:      rcodeLabel(rcode),
		TTL:        o.ans.remainingTTL(o.age, q.cfg.maxTTL),
		Cached:     o.cached,
		Upstream:   o.upstream,
		Transport:  q.transport.String(),
		DurationMS: float64(elapsed.Microseconds()) / 1000,
	}
	if n := len(o.ans.targets) + len(o.ans.addrs); n > 0 {
		e.Answers = make([]string, 0, n)
	}
	for _, t := range o.ans.targets {
		e.Answers = append(e.Answers, "CNAME "+t)
	}
	for _, a := range o.ans.addrs {
		e.Answers = append(e.Answers, a.String())
	}
	s.opts.QueryLog.Write(e)
}

// typeName is the query type as written in zone files, TYPEnnn when
// unassigned (RFC 3597).
func typeName(t uint16) string {
	if n, ok := dns.TypeToString[t]; ok {
		return n
	}
	return dns.Type(t).String()
}

func (s *Server) countCache(hit bool) {
	m := s.opts.Metrics
	if m == nil {
		return
	}
	if hit {
		m.CacheHits.Inc()
	} else {
		m.CacheMisses.Inc()
	}
}

func (s *Server) countCacheEntries() {
	if m := s.opts.Metrics; m != nil {
		m.CacheEntries.Set(float64(s.cache.len()))
		m.CacheBytes.Set(float64(s.cache.bytes()))
	}
}
