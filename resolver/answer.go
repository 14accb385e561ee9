package resolver

import (
	"encoding/binary"
	"math"
	"net/netip"
	"slices"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/enforce"
)

// maxChainHops bounds the CNAME chain walk. An answer whose chain goes on
// past it (a loop does) cannot be checked to its end and is never sent:
// the client gets SERVFAIL, logged with rule ruleChainTooLong.
const maxChainHops = 16

const (
	ruleChainTooLong   = "cname-chain-too-long"
	sourceChainTooLong = "server.max_cname_hops"
)

// answer is a response in wire form, independent of the client that asked:
// ID zero, no OPT record. Answers are immutable once built, so one can be
// shared between the cache and concurrent queries; render stamps a copy for
// each client.
type answer struct {
	wire     []byte
	rcode    int   // the header's 4-bit RCODE
	extRcode uint8 // upper RCODE bits, carried in the OPT record

	// answerTTL is the smallest TTL on the CNAME chain from the query name
	// (see chain.ttl), else the smallest in the answer section, else the
	// negative caching TTL. It is the TTL of the firewall allowance, and
	// no record in wire carries a larger one.
	answerTTL uint32
	// cacheTTL is how long the answer may be cached; 0 means never.
	cacheTTL uint32

	targets    []string // CNAME targets from the query name, normalized
	svcTargets []string // HTTPS/SVCB target names on the chain, normalized
	// approvedBy is targets and svcTargets together: besides the query
	// name, the names the firewall remembers an element by for re-checks.
	approvedBy []string
	addrs      []netip.Addr // every address a client can take from the answer
	push       []netip.Addr // addrs without those never pushed (see neverPushed)
	local      bool         // an address in addrs is local (see localAddr)
	// overlong: the CNAME chain goes on past maxChainHops.
	overlong bool
	// effect is where the firewall notes that push is in effect (see
	// enforce.Allowance.Memo), so a hit need not look it up; nil without
	// push. Copies of the answer share it: the firewall tells them apart.
	effect *enforce.EffectMemo
}

// newAnswer packs m (which it does not modify) for qname and records what
// the request path needs to know about it without unpacking again.
//
// Only addresses the request path checks may reach a client: the address
// records (A, AAAA, HTTPS, SVCB and their RRSIGs) kept are those of the
// names on the CNAME chain from qname, in the answer section. Address
// records of other names, and every address record in the authority and
// additional sections, are stripped. Every TTL is clamped to answerTTL, so
// no record outlives the firewall allowance the answer creates; rendering
// only ages and lowers TTLs, so this holds for cache hits too.
func newAnswer(m *dns.Msg, qname string) (*answer, error) {
	c := followChain(m.Answer, qname)
	out := *m
	out.Id = 0
	out.Response = true
	out.RecursionAvailable = true
	out.Compress = true
	out.Rcode = m.Rcode & 0xF
	// OPT records go from every section: the additional one's is the
	// upstream's EDNS, not the client's, and one anywhere else breaks
	// RFC 6891 and would carry a TTL field no clamp applies to.
	out.Answer = onChainOnly(withoutOPT(m.Answer), c.names)
	out.Ns = onChainOnly(withoutOPT(m.Ns), nil)
	out.Extra = onChainOnly(withoutOPT(m.Extra), nil)
	wire, err := out.Pack()
	if err != nil {
		return nil, err
	}
	a := &answer{wire: wire, rcode: m.Rcode & 0xF, extRcode: uint8(m.Rcode >> 4)}
	a.targets, a.svcTargets, a.addrs, a.overlong = c.targets, c.svcTargets, c.addrs, c.overlong
	a.push, a.local = pushable(c.addrs), anyLocal(c.addrs)
	a.effect = newEffectMemo(a.push)
	a.approvedBy = c.targets
	if len(c.svcTargets) > 0 {
		a.approvedBy = append(slices.Clip(c.targets), c.svcTargets...)
	}
	a.answerTTL, a.cacheTTL = answerTTLs(&out)
	if c.found {
		a.answerTTL = c.ttl
	}
	if a.overlong {
		a.cacheTTL = 0
	}
	if err := rewriteTTLs(a.wire, func(ttl uint32) uint32 { return min(ttl, a.answerTTL) }); err != nil {
		return nil, err
	}
	return a, nil
}

// withoutOPT returns rrs without OPT records: rrs itself when there is
// none.
func withoutOPT(rrs []dns.RR) []dns.RR {
	if !slices.ContainsFunc(rrs, isOPT) {
		return rrs
	}
	kept := make([]dns.RR, 0, len(rrs)-1)
	for _, rr := range rrs {
		if !isOPT(rr) {
			kept = append(kept, rr)
		}
	}
	return kept
}

func isOPT(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT }

// addressType reports whether records of type t carry addresses a client
// may connect to.
func addressType(t uint16) bool {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS, dns.TypeSVCB:
		return true
	}
	return false
}

// onChainOnly returns rrs without the address records (and the signatures
// over them) whose owner is not one of names. It returns rrs itself when
// nothing goes.
func onChainOnly(rrs []dns.RR, names []string) []dns.RR {
	strip := func(rr dns.RR) bool {
		t := rr.Header().Rrtype
		if sig, ok := rr.(*dns.RRSIG); ok {
			t = sig.TypeCovered
		}
		return addressType(t) && !onChain(names, rr.Header().Name)
	}
	if !slices.ContainsFunc(rrs, strip) {
		return rrs
	}
	kept := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		if !strip(rr) {
			kept = append(kept, rr)
		}
	}
	return kept
}

func onChain(names []string, owner string) bool {
	for _, n := range names {
		if equalName(owner, n) {
			return true
		}
	}
	return false
}

// chain is what an answer says about the name the client asked for.
type chain struct {
	names      []string     // the query name and every CNAME target, in order
	targets    []string     // CNAME targets, in order, normalized
	svcTargets []string     // HTTPS/SVCB targets of names on the chain, normalized
	addrs      []netip.Addr // addresses owned by names on the chain
	// ttl is the smallest TTL of the records on the chain: the CNAMEs
	// followed and the records of the names on it. A client must ask again
	// once any of them expires, so the answer is usable for that long.
	ttl      uint32
	found    bool // at least one record on the chain
	overlong bool // a CNAME goes on past maxChainHops
}

// followCNAMEs walks the CNAME chain from qname through n records, of
// which cname(i, owner) returns record i's target and TTL when it is a
// CNAME owned by owner; it collects the targets (normalized), the
// smallest TTL, and whether the chain goes on past maxChainHops.
func (c *chain) followCNAMEs(qname string, n int, cname func(i int, owner string) (target string, ttl uint32, ok bool)) {
	name := qname
	for hop := 0; ; hop++ {
		next := ""
		for i := range n {
			if target, ttl, ok := cname(i, name); ok {
				next = normalizeName(target)
				c.ttl, c.found = min(c.ttl, ttl), true
				break
			}
		}
		if next == "" {
			return
		}
		if hop == maxChainHops {
			c.overlong = true
			return
		}
		c.targets = append(c.targets, next)
		name = next
	}
}

// followChain walks the CNAME chain that starts at qname and collects the
// addresses owned by the names on it: A and AAAA records and the address
// hints of HTTPS and SVCB records, whose target names it collects too. A
// stub resolver may take the address records of any name on the chain,
// so all of them count; records of other names are stripped (onChainOnly).
func followChain(rrs []dns.RR, qname string) chain {
	c := chain{ttl: math.MaxUint32}
	c.followCNAMEs(qname, len(rrs), func(i int, owner string) (string, uint32, bool) {
		if cname, ok := rrs[i].(*dns.CNAME); ok && equalName(cname.Hdr.Name, owner) {
			return cname.Target, cname.Hdr.Ttl, true
		}
		return "", 0, false
	})
	c.names = append(append(make([]string, 0, 1+len(c.targets)), qname), c.targets...)
	for _, rr := range rrs {
		owner := rr.Header().Name
		if !onChain(c.names, owner) {
			continue
		}
		c.ttl, c.found = min(c.ttl, rr.Header().Ttl), true
		switch v := rr.(type) {
		case *dns.A:
			c.addrs = appendIP(c.addrs, v.A)
		case *dns.AAAA:
			c.addrs = appendIP(c.addrs, v.AAAA)
		case *dns.HTTPS:
			c.addrs = appendHints(c.addrs, &v.SVCB)
			c.svcTargets = appendTarget(c.svcTargets, &v.SVCB)
		case *dns.SVCB:
			c.addrs = appendHints(c.addrs, v)
			c.svcTargets = appendTarget(c.svcTargets, v)
		}
	}
	return c
}

// appendTarget adds the target name of s, in ServiceMode (where the hints
// are its addresses) and AliasMode (an alias like a CNAME) alike. "." means
// the owner itself in ServiceMode and "no service" in AliasMode; neither
// adds a name.
func appendTarget(targets []string, s *dns.SVCB) []string {
	t := normalizeName(s.Target)
	if t == "." || equalName(t, s.Hdr.Name) || slices.Contains(targets, t) {
		return targets
	}
	return append(targets, t)
}

func appendHints(addrs []netip.Addr, s *dns.SVCB) []netip.Addr {
	for _, kv := range s.Value {
		switch h := kv.(type) {
		case *dns.SVCBIPv4Hint:
			for _, ip := range h.Hint {
				addrs = appendIP(addrs, ip)
			}
		case *dns.SVCBIPv6Hint:
			for _, ip := range h.Hint {
				addrs = appendIP(addrs, ip)
			}
		}
	}
	return addrs
}

func appendIP(addrs []netip.Addr, ip []byte) []netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return addrs
	}
	a = a.Unmap()
	for _, have := range addrs {
		if have == a {
			return addrs
		}
	}
	return append(addrs, a)
}

// answerTTLs returns the smallest answer-section TTL and the time the
// response may be cached. Following RFC 2308, a negative answer (NXDOMAIN,
// or NOERROR without answer records) is cached only when it carries an SOA,
// for the smaller of the SOA's TTL and MINIMUM; without an SOA it is not
// cached at all. Truncated answers and error RCODEs are never cached.
func answerTTLs(m *dns.Msg) (answerTTL, cacheTTL uint32) {
	answerTTL = math.MaxUint32
	for _, rr := range m.Answer {
		answerTTL = min(answerTTL, rr.Header().Ttl)
	}
	soaTTL, hasSOA := uint32(math.MaxUint32), false
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			soaTTL, hasSOA = min(soaTTL, soa.Hdr.Ttl, soa.Minttl), true
		}
	}
	if len(m.Answer) == 0 {
		answerTTL = 0
		if hasSOA {
			answerTTL = soaTTL
		}
	}

	negative := m.Rcode == dns.RcodeNameError || (m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0)
	switch {
	case m.Truncated:
		return answerTTL, 0
	case negative && !hasSOA:
		return answerTTL, 0
	case m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError:
		return answerTTL, 0
	}
	cacheTTL = soaTTL
	for _, section := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range section {
			if _, ok := rr.(*dns.SOA); !ok {
				cacheTTL = min(cacheTTL, rr.Header().Ttl)
			}
		}
	}
	if cacheTTL == math.MaxUint32 {
		cacheTTL = 0
	}
	return answerTTL, cacheTTL
}

// remainingTTL is the answer TTL a client gets after age seconds in the
// cache, clamped to maxTTL when that is set.
func (a *answer) remainingTTL(age, maxTTL uint32) uint32 {
	return ageTTL(a.answerTTL, age, maxTTL)
}

func ageTTL(ttl, age, maxTTL uint32) uint32 {
	if ttl > age {
		ttl -= age
	} else {
		ttl = 0
	}
	if maxTTL > 0 && ttl > maxTTL {
		ttl = maxTTL
	}
	return ttl
}

// optLen is the size of the OPT record appendOPT writes.
const optLen = 11

// render builds the bytes sent to one client: its ID and header flags, its
// spelling of the question name, TTLs aged by age seconds and clamped to
// maxTTL, an OPT record when the client sent one, and truncation to the
// size the client can receive.
func (a *answer) render(q *query, age, maxTTL uint32) ([]byte, error) {
	return a.renderTo(nil, q, age, maxTTL)
}

// renderTo is render writing into dst's array when it has room, so a
// caller that sends the bytes before rendering again can reuse one buffer.
func (a *answer) renderTo(dst []byte, q *query, age, maxTTL uint32) ([]byte, error) {
	if cap(dst) < len(a.wire)+optLen {
		dst = make([]byte, 0, len(a.wire)+optLen)
	}
	buf := append(dst[:0], a.wire...)
	binary.BigEndian.PutUint16(buf, q.id)
	flags := binary.BigEndian.Uint16(buf[offFlags:])
	flags &^= flagAA | flagZ | flagRD | flagCD
	if !q.do && !q.ad {
		// RFC 6840 section 5.8: AD only for clients that asked for it.
		flags &^= flagAD
	}
	if q.rd {
		flags |= flagRD
	}
	if q.cd {
		flags |= flagCD
	}
	binary.BigEndian.PutUint16(buf[offFlags:], flags)
	q.patchQuestion(buf)
	if age > 0 || maxTTL > 0 {
		err := rewriteTTLs(buf, func(ttl uint32) uint32 { return ageTTL(ttl, age, maxTTL) })
		if err != nil {
			return nil, err
		}
	}
	if q.opt {
		buf = appendOPT(buf, advertisedUDPSize, q.do, a.extRcode)
	}
	if len(buf) > q.maxSize {
		return truncateWire(buf, q.maxSize)
	}
	return buf, nil
}

// truncateWire drops records until msg fits size and sets TC. It unpacks,
// which is slow, but only answers too large for UDP get here.
func truncateWire(msg []byte, size int) ([]byte, error) {
	var m dns.Msg
	if err := m.Unpack(msg); err != nil {
		return nil, err
	}
	m.Truncate(size)
	m.Truncated = true
	return m.Pack()
}

// newEffectMemo is an answer's memo for the firewall: only for addresses
// that are pushed.
func newEffectMemo(push []netip.Addr) *enforce.EffectMemo {
	if len(push) == 0 {
		return nil
	}
	return new(enforce.EffectMemo)
}
