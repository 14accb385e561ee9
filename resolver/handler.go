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
// record about it. Nothing reaches the client until reply writes it.
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
}

// progress is how far a query has come through the steps of the request
// path. decide fills in the policy, read once, and its decision; every later
// step checks against those two, never against a policy a reload swapped in
// meanwhile, just as q.cfg is the configuration read once at admission.
// When stage 1 (answerReady) hands a query over, its progress goes with it
// and stage 2 (resolve) carries on from there.
type progress struct {
	pol     Policy
	d       policy.Decision
	decided bool // decide let the query on
	// redecided is set once the firewall refused an answer as decided
	// under a replaced policy and the query was decided again (redecide).
	redecided bool
	// found is an answer find had at hand and vet let through: only the
	// firewall push is left to do.
	found *answer
	o     outcome // o.ans is set once the answer is final
}

// ServeDNS implements dns.Handler: TCP, and UDP where the reader does not
// run (see udpWorkers). It runs the whole path (stage 2) on the caller's
// goroutine.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	c := s.callerOf(w)
	q := parseQuery(req, c.udp)
	s.tapQuery(w, req, c)
	q.transport = transportOf(w, c.udp)
	if s.admitQuery(w, &q, c) {
		q.slot = slotState{lazy: true, client: c.addr}
		var p progress
		s.serve(w, &q, c, &p)
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
// rate limit, once per query, before either stage.
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

// The request path runs in two stages over the same steps, in this order:
//
//	decide  ACL, request checks, policy, DoH canary, denials
//	find    ANY, hosts, locally served zones, the cache: never waits
//	fetch   the upstreams, or a stale cache entry: may wait
//	vet     chain length, denied targets, deny_addresses, rebinding
//	push    the firewall allowance, in effect before the answer is sent
//
// Stage 1, answerReady, is the UDP reader's: it answers what is at hand
// without waiting (find instead of fetch, and instead of push only asking
// whether the addresses are already in effect). Stage 2, resolve, is the
// whole path, for the workers the reader hands the rest to and for TCP.
// Each step either settles the outcome (done) or hands on to the next;
// nothing is written to the client until the outcome is final.

// answerReady is stage 1: it answers q from what is at hand, in p.o, or
// reports false when q needs an upstream exchange or a firewall push that
// may wait, having sent and counted nothing; p then holds what stage 2
// carries on from.
func (s *Server) answerReady(client netip.Addr, q *query, p *progress) bool {
	if s.decide(client, q, p) {
		return true
	}
	ans, ok := s.find(q, &p.o)
	if !ok {
		return false // fetch: stage 2 looks again first, the cache may have it by then
	}
	if s.vet(client, q, p, ans) {
		return true
	}
	if !s.inEffect(client, q, p, ans) {
		p.found = ans
		return false // push
	}
	p.o.ans = ans
	return true
}

// resolve is stage 2, the whole request path, carrying on from what stage
// 1 left in p (nothing, for TCP). It settles p.o, unless fetch found no
// in-flight slot for q: then q.slot.refused says why and there is no
// answer.
func (s *Server) resolve(client netip.Addr, q *query, p *progress) {
	if !p.decided && s.decide(client, q, p) {
		return
	}
	ans := p.found // found and vetted by stage 1: only the push is left
	if ans == nil {
		var ok bool
		if ans, ok = s.find(q, &p.o); !ok {
			var err error
			ans, err = s.fetch(q, &p.o)
			switch {
			case err == errNoSlot:
				return // no answer: serve hands the query to overInFlight
			case err != nil:
				s.log.Warn("upstream failed", "qname", q.qname, "qtype", dns.TypeToString[q.qtype], "err", err)
				p.o.ans = rcodeAnswer(q, dns.RcodeServerFailure)
				return
			}
		}
		if s.vet(client, q, p, ans) {
			return
		}
	}
	if s.push(client, q, p, ans) {
		return
	}
	p.o.ans = ans
}

// serve runs stage 2 for an admitted query, then answers it. A query with
// a lazy slot (TCP, whose goroutines the connection limits bound) takes one
// only in fetch, so its cache hits never wait for one.
func (s *Server) serve(w dns.ResponseWriter, q *query, c caller, p *progress) {
	s.resolve(c.addr, q, p)
	if q.slot.held {
		defer s.inFlight.release(q.slot.slot)
	}
	if q.slot.refused != "" {
		s.overInFlight(w, q, c, q.slot.refused)
		return
	}
	s.reply(w, q, c, &p.o)
}

// reply renders o's answer for q, writes it and records it.
func (s *Server) reply(w dns.ResponseWriter, q *query, c caller, o *outcome) {
	out, err := o.ans.renderTo(answerBuffer(w), q, o.age, q.cfg.maxTTL)
	if err != nil {
		s.log.Error("cannot render answer", "qname", q.qname, "err", err)
		o.ans, o.age = rcodeAnswer(q, dns.RcodeServerFailure), 0
		out, _ = o.ans.render(q, 0, q.cfg.maxTTL)
	}
	if _, err := w.Write(out); err != nil {
		s.log.Debug("cannot write answer", "client", c.addr, "err", err)
	}
	s.tapResponse(w, c, out)
	s.record(c.start, c.addr, q, o)
}

// answerBuffer returns the buffer w lends for rendering answers, if any.
func answerBuffer(w dns.ResponseWriter) []byte {
	if b, ok := w.(interface{ answerBuffer() []byte }); ok {
		return b.answerBuffer()
	}
	return nil
}

// decide is the first step: the ACL, the request checks, then the policy,
// read once into p with its decision. It reports true when that settles the
// answer (REFUSED, a check's RCODE, the DoH canary, a denial in enforce
// mode); otherwise the query goes on, logged allow or would_deny.
func (s *Server) decide(client netip.Addr, q *query, p *progress) (done bool) {
	if !q.cfg.allows(client) {
		p.o = outcome{ans: rcodeAnswer(q, dns.RcodeRefused), decision: decisionRefused}
		return true
	}
	if rcode, ok := checkRequest(q); !ok {
		p.o = outcome{ans: rcodeAnswer(q, rcode), decision: decisionRefused}
		return true
	}

	p.pol = s.currentPolicy()
	p.d = p.pol.Decide(client, q.qname, q.qtype)
	d, o := &p.d, &p.o
	*o = outcome{decision: decisionAllow, group: d.Group, rule: d.Rule, source: d.Source}
	if d.Group == "" {
		o.decision, o.ans = decisionRefused, rcodeAnswer(q, dns.RcodeRefused)
		return true
	}
	if q.cfg.DoHCanary {
		if ans, ok := canaryAnswer(q); ok {
			o.decision, o.rule, o.source, o.ans = decisionDeny, q.qname, "server.doh_canary", ans
			return true
		}
	}
	if d.Verdict == policy.Deny {
		o.action = d.Action.String()
		if d.Mode == policy.ModeEnforce {
			o.decision, o.ans = decisionDeny, denyAnswer(q, *d)
			return true
		}
		o.decision = decisionWouldDeny
	}
	p.decided = true
	return false
}

// find returns the answer to a permitted query that is at hand: RFC 8482
// for ANY, static hosts, the locally served zones, a fresh cache entry. It
// never waits, and a miss is counted by fetch, so stage 1 counts nothing.
func (s *Server) find(q *query, o *outcome) (*answer, bool) {
	if q.qtype == dns.TypeANY {
		return anyAnswer(q), true
	}
	if addrs, ok := q.cfg.hosts[q.qname]; ok {
		o.upstream = upstreamHosts
		return addressAnswer(q, addrs), true
	}
	if ans, ok := s.localAnswer(q); ok {
		o.upstream = upstreamLocal
		return ans, true
	}
	if s.cache != nil {
		if ans, age, ok := s.cache.get(keyOf(q), s.now()); ok {
			o.cached, o.cacheHit, o.age = true, true, age // counted in record, once
			return ans, true
		}
	}
	return nil, false
}

// fetch asks the upstreams for q (or answers a stale cache entry, see
// forwardOrStale), after counting the cache miss. A query with a lazy
// slot takes its in-flight slot here, and gets errNoSlot when none is
// free.
func (s *Server) fetch(q *query, o *outcome) (*answer, error) {
	if s.cache != nil {
		s.countCache(false)
		s.countCacheEntries() // get drops expired entries
	}
	if !s.takeSlot(q) {
		return nil, errNoSlot
	}
	return s.forwardOrStale(keyOf(q), q, o)
}

// errNoSlot stops a query that found no in-flight slot free.
var errNoSlot = errors.New("no in-flight slot free")

// vet checks an answer against the policy and decision decide read: a
// chain too long to check, denied CNAME and HTTPS/SVCB targets, the
// group's deny_addresses, rebinding. It reports true when one denies the
// answer in enforce mode (p.o is then the denial); in audit mode the
// query goes on, logged would_deny.
func (s *Server) vet(client netip.Addr, q *query, p *progress, ans *answer) (done bool) {
	d, o := &p.d, &p.o
	// A chain too long to follow to its end cannot be checked: never
	// answer part of one.
	if ans.overlong {
		s.log.Warn("CNAME chain too long; answering SERVFAIL", "rule", ruleChainTooLong, "limit", maxChainHops, "client", client, "qname", q.qname)
		o.decision, o.rule, o.source, o.action = decisionDeny, ruleChainTooLong, sourceChainTooLong, ""
		o.ans, o.age = rcodeAnswer(q, dns.RcodeServerFailure), 0
		return true
	}

	// A permitted name may alias a denied one; the client would connect to
	// the target, so the target's policy counts. HTTPS/SVCB target names
	// are where the client connects too.
	if td, denied := deniedTarget(p.pol, d.Group, ans); denied {
		o.rule, o.source, o.action = td.Rule, td.Source, td.Action.String()
		if td.Mode == policy.ModeEnforce {
			o.decision, o.ans, o.age = decisionDeny, denyAnswer(q, td), 0
			return true
		}
		o.decision = decisionWouldDeny
	}

	// The group's deny_addresses hold whatever name leads there.
	if pfx, denied := deniedAddress(d.DenyAddresses, ans.addrs); denied {
		s.log.Info("answer with a denied address", "rule", pfx.String(), "group", d.Group, "client", client, "qname", q.qname)
		o.rule, o.source, o.action = pfx.String(), "group["+d.Group+"].deny_addresses", d.Action.String()
		if d.Mode == policy.ModeEnforce {
			o.decision, o.ans, o.age = decisionDeny, denyAnswer(q, *d), 0
			return true
		}
		o.decision = decisionWouldDeny
	}

	if o.upstream != upstreamHosts && s.rebinding(q.cfg, d.Group, q.qname, ans.local) {
		s.log.Info("answer with local addresses denied", "rule", ruleRebinding, "group", d.Group, "client", client, "qname", q.qname, "addrs", ans.addrs)
		o.rule, o.source, o.action = ruleRebinding, sourceRebinding, d.Action.String()
		if d.Mode == policy.ModeEnforce {
			o.decision, o.ans, o.age = decisionDeny, denyAnswer(q, *d), 0
			return true
		}
		o.decision = decisionWouldDeny
	}
	return false
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

// push puts the answer's addresses (but those never pushed, see
// neverPushed) into the firewall and returns once they are in effect.
// It reports true when that fails and the answer is SERVFAIL: always at
// an enforcer's cap (a cap keeps clients from filling the sets, so it
// fails closed whatever fail_open says; the firewall counts and logs it,
// rate-limited), and for other errors unless fail_open.
func (s *Server) push(client netip.Addr, q *query, p *progress, ans *answer) (done bool) {
	enf := s.firewall(ans)
	if enf == nil {
		return false
	}
	// A context shared with other queries: a timer per query costs more
	// than the push itself when the firewall already has the addresses.
	ctx := s.fwDeadline.context(time.Now())
	a := s.allowance(client, q, p, ans)
	a.IPs = slices.Clone(ans.push) // the answer is shared; the enforcer may sort or keep its copy
	err := enf.Allow(ctx, a)
	switch {
	case err == nil:
		return false
	case errors.Is(err, enforce.ErrStale) && !p.redecided:
		s.countStale("redecided")
		return s.redecide(client, q, p, ans, err)
	case errors.Is(err, enforce.ErrStale):
		// A policy that changed again while deciding anew, or a cap:
		// fail closed whatever fail_open says.
		s.countStale("servfail")
	case errors.Is(err, enforce.ErrLimit):
	default:
		s.logPushFailed(client, q, p, err)
		if q.cfg.FailOpen {
			return false
		}
	}
	p.o.ans, p.o.age = rcodeAnswer(q, dns.RcodeServerFailure), 0
	return true
}

// logPushFailed logs a firewall update that failed. Out of line: its
// arguments would otherwise take room in push's frame, which is on the
// stack of every UDP worker that waits for the firewall.
//
//go:noinline
func (s *Server) logPushFailed(client netip.Addr, q *query, p *progress, err error) {
	s.log.Error("firewall update failed", "group", p.d.Group, "client", client, "qname", q.qname, "err", err, "fail_open", q.cfg.FailOpen)
}

// inEffect is push's stand-in in stage 1: it reports, without waiting,
// whether the answer's addresses are already in effect for as long as it
// lives (or it has none to push); false when they are not or the enforcer
// cannot tell.
func (s *Server) inEffect(client netip.Addr, q *query, p *progress, ans *answer) bool {
	enf := s.firewall(ans)
	if enf == nil {
		return true
	}
	c, ok := enf.(enforce.InEffectChecker)
	return ok && c.InEffect(s.allowance(client, q, p, ans))
}

// countStale counts an answer the firewall refused as stale
// (egressd_stale_answers_total).
func (s *Server) countStale(result string) {
	if m := s.opts.Metrics; m != nil {
		m.StaleAnswers.WithLabelValues(result).Inc()
	}
}

// redecide serves an answer the firewall refused because it was decided
// under a policy a reload has replaced since, and the new policy denies
// it (enforce.ErrStale): the query is decided and vetted again under the
// policy and settings now in force, as if it had arrived after the
// reload, so the client gets what the new policy says (its denial, or
// the answer pushed under the new policy). It reports true when that
// settles the answer; should the firewall refuse the second push as
// stale too (another reload meanwhile), the answer is SERVFAIL.
func (s *Server) redecide(client netip.Addr, q *query, p *progress, ans *answer, err error) (done bool) {
	s.log.Info("answer decided before a policy reload is denied by the new policy; deciding again",
		"group", p.d.Group, "client", client, "qname", q.qname, "err", err)
	p.redecided = true
	found := p.o // where the answer came from, which decide resets
	q.cfg = s.cur.Load()
	if s.decide(client, q, p) || s.vet(client, q, p, ans) {
		return true
	}
	p.o.age, p.o.cached, p.o.cacheHit, p.o.upstream = found.age, found.cached, found.cacheHit, found.upstream
	return s.push(client, q, p, ans)
}

// firewall returns the enforcer ans must be pushed to, or nil when it has
// no addresses to push or the enforcer is the none backend, which never
// waits for anything.
func (s *Server) firewall(ans *answer) enforce.Enforcer {
	if len(ans.push) == 0 {
		return nil
	}
	enf := s.currentEnforcer()
	if enf == nil {
		return nil
	}
	if _, none := enf.(*enforce.None); none {
		return nil
	}
	return enf
}

// allowance is what the firewall is asked to let client reach for ans,
// aged p.o.age seconds: its addresses (shared with the answer), the
// group's ports, the smallest remaining TTL, and what the answer was
// approved for, so a reload can re-check it (Targets is shared too; the
// enforcer copies what it keeps), and under which policy (Generation).
// When the settings q was admitted with (rebinding protection) have been
// replaced since, the generation is 1, older than any reload's, so the
// firewall asks the policy in force about it too.
func (s *Server) allowance(client netip.Addr, q *query, p *progress, ans *answer) enforce.Allowance {
	gen := p.pol.Generation()
	if gen > 1 && q.cfg != s.cur.Load() {
		gen = 1
	}
	return enforce.Allowance{
		Group:      p.d.Group,
		Client:     client,
		IPs:        ans.push,
		Ports:      p.d.Ports,
		TTL:        time.Duration(ans.remainingTTL(p.o.age, q.cfg.maxTTL)) * time.Second,
		Name:       q.qname,
		Targets:    ans.approvedBy,
		Generation: gen,
		Memo:       ans.effect,
	}
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
