package resolver

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/policy"
)

// Query log decisions.
const (
	decisionAllow     = "allow"
	decisionDeny      = "deny"
	decisionWouldDeny = "would_deny"
	decisionRefused   = "refused"
)

// upstreamHosts is the query log's upstream for answers from Options.Hosts.
const upstreamHosts = "hosts"

// outcome is what the request path decided: the answer to send and what to
// record about it. Nothing reaches the client until ServeDNS writes it.
type outcome struct {
	ans      *answer
	age      uint32 // seconds the answer spent in the cache
	decision string
	group    string
	rule     string
	source   string
	action   string
	cached   bool
	cacheHit bool // a fresh cache entry, not a stale one
	upstream string
	// mustWait: the query is cacheOnly and its answer needs an upstream
	// exchange or a firewall push; nothing has been sent or counted.
	mustWait bool
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	c := s.callerOf(w)
	q := parseQuery(req, c.udp)
	q.transport = transportOf(w, c.udp)
	if s.admitQuery(w, &q, c) {
		q.slot = slotState{lazy: true, client: c.addr}
		s.serve(w, &q, c, false)
	}
}

// caller is who sent a query, over what, and when it arrived.
type caller struct {
	start time.Time
	addr  netip.Addr
	udp   bool
}

// callerOf describes the sender of the message w answers, as it arrives.
func (s *Server) callerOf(w dns.ResponseWriter) caller {
	c := caller{start: time.Now()}
	if u, ok := w.(*udpResponse); ok {
		c.addr, c.udp = u.client(), true
	} else {
		c.addr, c.udp = remote(w.RemoteAddr())
	}
	return c
}

// admitQuery fixes the configuration q is served under and applies the
// rate limit, which must run once per query even when a query is served
// in two attempts (see serve).
func (s *Server) admitQuery(w dns.ResponseWriter, q *query, c caller) bool {
	q.cfg = s.cur.Load()
	if l := q.cfg.limiter; l != nil {
		if ok, report := l.allow(c.addr, s.now()); !ok {
			s.rateLimited(w, q, c.addr, c.udp, report)
			return false
		}
	}
	return true
}

// serve runs the request path for an admitted query, writes the answer and
// records it. With cacheOnly the path stops before anything that may wait
// (an upstream exchange, a firewall push of addresses not yet in effect)
// and serve then returns false having sent and recorded nothing, so the UDP
// reader can answer cache hits itself and pass only the rest, each with an
// in-flight slot (see inFlight), to a worker, which serves them again.
// A query with a lazy slot (TCP, whose goroutines the connection limits
// bound) takes one only before an upstream exchange, so its cache hits
// never wait for one.
func (s *Server) serve(w dns.ResponseWriter, q *query, c caller, cacheOnly bool) bool {
	q.cacheOnly = cacheOnly
	o := s.resolve(c.addr, q)
	if q.slot.held {
		defer s.inFlight.release(q.slot.slot)
	}
	if o.mustWait {
		if q.slot.refused != "" {
			s.overInFlight(w, q, c, q.slot.refused)
			return true
		}
		return false
	}
	out, err := o.ans.renderTo(answerBuffer(w), q, o.age, q.cfg.maxTTL)
	if err != nil {
		s.log.Error("cannot render answer", "qname", q.qname, "err", err)
		o.ans, o.age = rcodeAnswer(q, dns.RcodeServerFailure), 0
		out, _ = o.ans.render(q, 0, q.cfg.maxTTL)
	}
	if _, err := w.Write(out); err != nil {
		s.log.Debug("cannot write answer", "client", c.addr, "err", err)
	}
	s.record(c.start, c.addr, q, &o)
	return true
}

// answerBuffer returns the buffer w lends for rendering answers, if any.
func answerBuffer(w dns.ResponseWriter) []byte {
	if b, ok := w.(interface{ answerBuffer() []byte }); ok {
		return b.answerBuffer()
	}
	return nil
}

// resolve is the whole request path, in order. Each step either produces
// the final outcome or hands on to the next; the firewall push happens
// after the answer is known and before anything is sent.
func (s *Server) resolve(client netip.Addr, q *query) outcome {
	if !q.cfg.allows(client) {
		return outcome{ans: rcodeAnswer(q, dns.RcodeRefused), decision: decisionRefused}
	}
	if rcode, ok := checkRequest(q); !ok {
		return outcome{ans: rcodeAnswer(q, rcode), decision: decisionRefused}
	}

	pol := s.currentPolicy()
	d := pol.Decide(client, q.qname, q.qtype)
	o := outcome{decision: decisionAllow, group: d.Group, rule: d.Rule, source: d.Source}
	if d.Group == "" {
		o.decision, o.ans = decisionRefused, rcodeAnswer(q, dns.RcodeRefused)
		return o
	}
	if q.cfg.DoHCanary {
		if ans, ok := canaryAnswer(q); ok {
			o.decision, o.rule, o.source, o.ans = decisionDeny, q.qname, "server.doh_canary", ans
			return o
		}
	}
	if d.Verdict == policy.Deny {
		o.action = d.Action.String()
		if d.Mode == policy.ModeEnforce {
			o.decision, o.ans = decisionDeny, denyAnswer(q, d)
			return o
		}
		o.decision = decisionWouldDeny
	}

	ans, err := s.lookup(q, &o)
	if err == errMustWait {
		return outcome{mustWait: true}
	}
	if err != nil {
		s.log.Warn("upstream failed", "qname", q.qname, "qtype", dns.TypeToString[q.qtype], "err", err)
		o.ans = rcodeAnswer(q, dns.RcodeServerFailure)
		return o
	}

	// A chain too long to follow to its end cannot be checked: never
	// answer part of one.
	if ans.overlong {
		s.log.Warn("CNAME chain too long; answering SERVFAIL", "rule", ruleChainTooLong, "limit", maxChainHops, "client", client, "qname", q.qname)
		o.decision, o.rule, o.source, o.action = decisionDeny, ruleChainTooLong, sourceChainTooLong, ""
		o.ans, o.age = rcodeAnswer(q, dns.RcodeServerFailure), 0
		return o
	}

	// A permitted name may alias a denied one; the client would connect to
	// the target, so the target's policy counts. HTTPS/SVCB target names
	// are where the client connects too.
	if td, denied := deniedTarget(pol, d.Group, ans); denied {
		o.rule, o.source, o.action = td.Rule, td.Source, td.Action.String()
		if td.Mode == policy.ModeEnforce {
			o.decision, o.ans, o.age = decisionDeny, denyAnswer(q, td), 0
			return o
		}
		o.decision = decisionWouldDeny
	}

	// The group's deny_addresses hold whatever name leads there.
	if p, denied := deniedAddress(d.DenyAddresses, ans.addrs); denied {
		s.log.Info("answer with a denied address", "rule", p.String(), "group", d.Group, "client", client, "qname", q.qname)
		o.rule, o.source, o.action = p.String(), "group["+d.Group+"].deny_addresses", d.Action.String()
		if d.Mode == policy.ModeEnforce {
			o.decision, o.ans, o.age = decisionDeny, denyAnswer(q, d), 0
			return o
		}
		o.decision = decisionWouldDeny
	}

	if o.upstream != upstreamHosts && s.rebinding(q.cfg, d.Group, q.qname, ans.local) {
		s.log.Info("answer with local addresses denied", "rule", ruleRebinding, "group", d.Group, "client", client, "qname", q.qname, "addrs", ans.addrs)
		o.rule, o.source, o.action = ruleRebinding, sourceRebinding, d.Action.String()
		if d.Mode == policy.ModeEnforce {
			o.decision, o.ans, o.age = decisionDeny, denyAnswer(q, d), 0
			return o
		}
		o.decision = decisionWouldDeny
	}

	if err := s.allowDestinations(client, q, d, ans, o.age); err == errMustWait {
		return outcome{mustWait: true}
	} else if errors.Is(err, enforce.ErrLimit) {
		// A cap keeps clients from filling the sets: fail closed whatever
		// fail_open says. The firewall counts and logs it, rate-limited.
		o.ans, o.age = rcodeAnswer(q, dns.RcodeServerFailure), 0
		return o
	} else if err != nil {
		s.log.Error("firewall update failed", "group", d.Group, "client", client, "qname", q.qname, "err", err, "fail_open", q.cfg.FailOpen)
		if !q.cfg.FailOpen {
			o.ans, o.age = rcodeAnswer(q, dns.RcodeServerFailure), 0
			return o
		}
	}
	o.ans = ans
	return o
}

// deniedTarget reports the first CNAME or HTTPS/SVCB target name of ans
// that group may not resolve.
func deniedTarget(pol Policy, group string, ans *answer) (policy.Decision, bool) {
	for _, targets := range [2][]string{ans.targets, ans.svcTargets} {
		for _, target := range targets {
			if td, denied := pol.DeniesTarget(group, target); denied {
				return td, true
			}
		}
	}
	return policy.Decision{}, false
}

// lookup finds the answer for a permitted query: RFC 8482 for ANY, static
// hosts, the cache, then the upstream servers (or a stale cache entry).
// A cacheOnly query gets errMustWait instead of an upstream exchange, and
// before the cache counts it, so the second attempt counts it once.
func (s *Server) lookup(q *query, o *outcome) (*answer, error) {
	if q.qtype == dns.TypeANY {
		return anyAnswer(q), nil
	}
	if addrs, ok := q.cfg.hosts[q.qname]; ok {
		o.upstream = upstreamHosts
		return addressAnswer(q, addrs), nil
	}
	if ans, ok := s.localAnswer(q); ok {
		o.upstream = upstreamLocal
		return ans, nil
	}
	key := keyOf(q)
	if s.cache != nil {
		if ans, age, ok := s.cache.get(key, s.now()); ok {
			o.cached, o.cacheHit, o.age = true, true, age // counted in record, once
			return ans, nil
		}
		if q.cacheOnly {
			return nil, errMustWait
		}
		s.countCache(false)
		s.countCacheEntries() // get drops expired entries
	} else if q.cacheOnly {
		return nil, errMustWait
	}
	if !s.takeSlot(q) {
		return nil, errMustWait
	}
	return s.forwardOrStale(key, q, o)
}

// errMustWait stops a cacheOnly query that needs the upstream.
var errMustWait = errors.New("answer needs an upstream exchange or a firewall push")

// pushesToFirewall reports whether allowed answers go to an enforcer that
// may have to wait for the kernel.
func (s *Server) pushesToFirewall() bool {
	enf := s.currentEnforcer()
	if enf == nil {
		return false
	}
	_, none := enf.(*enforce.None)
	return !none
}

// allowDestinations pushes the answer's addresses (but those never pushed,
// see neverPushed) into the firewall and returns once they are in effect.
// Answers without addresses need nothing. With cacheOnly it only checks, without waiting, that they already are,
// and returns errMustWait when they are not or it cannot tell.
func (s *Server) allowDestinations(client netip.Addr, q *query, d policy.Decision, ans *answer, age uint32) error {
	if len(ans.push) == 0 || !s.pushesToFirewall() {
		return nil
	}
	enf := s.currentEnforcer()
	ttl := time.Duration(ans.remainingTTL(age, q.cfg.maxTTL)) * time.Second
	if q.cacheOnly {
		c, ok := enf.(enforce.InEffectChecker)
		if ok && c.InEffect(enforce.Allowance{Group: d.Group, Client: client, IPs: ans.push, Ports: d.Ports, TTL: ttl, Name: q.qname, Targets: ans.approvedBy}) {
			return nil
		}
		return errMustWait
	}
	// A context shared with other queries: a timer per query costs more
	// than the push itself when the firewall already has the addresses.
	ctx := s.fwDeadline.context(time.Now())
	return enf.Allow(ctx, enforce.Allowance{
		Group:  d.Group,
		Client: client,
		IPs:    slices.Clone(ans.push), // the answer is shared; the enforcer may sort or keep its copy
		Ports:  d.Ports,
		TTL:    ttl,
		// What the answer was approved for, so a reload can re-check it.
		Name:    q.qname,
		Targets: ans.approvedBy, // shared; the enforcer copies what it keeps
	})
}

// remote returns the client's address (IPv4-mapped addresses unmapped, so
// IPv4 ACLs match on dual-stack sockets) and whether it came over UDP.
func remote(addr net.Addr) (netip.Addr, bool) {
	switch a := addr.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), true
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), false
	}
	return netip.Addr{}, false
}
