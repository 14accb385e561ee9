package resolver

import (
	"encoding/binary"
	"math"
	"net/netip"

	"github.com/miekg/dns"
)

// maxChainHops bounds the CNAME chain walk, so a looping chain ends.
const maxChainHops = 16

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
	// negative caching TTL. It is the TTL of the firewall allowance.
	answerTTL uint32
	// cacheTTL is how long the answer may be cached; 0 means never.
	cacheTTL uint32

	targets []string     // CNAME targets from the query name, normalized
	addrs   []netip.Addr // addresses at the end of the CNAME chain
}

// newAnswer packs m (which it does not modify) for qname and records what
// the request path needs to know about it without unpacking again.
func newAnswer(m *dns.Msg, qname string) (*answer, error) {
	out := *m
	out.Id = 0
	out.Response = true
	out.RecursionAvailable = true
	out.Compress = true
	out.Rcode = m.Rcode & 0xF
	out.Extra = withoutOPT(m.Extra)
	wire, err := out.Pack()
	if err != nil {
		return nil, err
	}
	a := &answer{wire: wire, rcode: m.Rcode & 0xF, extRcode: uint8(m.Rcode >> 4)}
	c := followChain(m.Answer, qname)
	a.targets, a.addrs = c.targets, c.addrs
	a.answerTTL, a.cacheTTL = answerTTLs(&out)
	if c.found {
		a.answerTTL = c.ttl
	}
	return a, nil
}

func withoutOPT(rrs []dns.RR) []dns.RR {
	var kept []dns.RR
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			kept = append(kept, rr)
		}
	}
	return kept
}

// chain is what an answer says about the name the client asked for.
type chain struct {
	targets []string     // CNAME targets, in order, normalized
	addrs   []netip.Addr // addresses owned by the last name
	// ttl is the smallest TTL of the records on the chain: the CNAMEs
	// followed and the records of the last name. A client must ask again
	// once any of them expires, so the answer is usable for that long.
	ttl   uint32
	found bool // at least one record on the chain
}

// followChain walks the CNAME chain that starts at qname and collects the
// addresses owned by its last name: A and AAAA records and the address
// hints of HTTPS and SVCB records. Records owned by other names are not
// what the client will connect to and are ignored.
func followChain(rrs []dns.RR, qname string) chain {
	c := chain{ttl: math.MaxUint32}
	name := qname
	for range maxChainHops {
		next := ""
		for _, rr := range rrs {
			if cname, ok := rr.(*dns.CNAME); ok && equalName(cname.Hdr.Name, name) {
				next = normalizeName(cname.Target)
				c.ttl, c.found = min(c.ttl, cname.Hdr.Ttl), true
				break
			}
		}
		if next == "" {
			break
		}
		c.targets = append(c.targets, next)
		name = next
	}
	for _, rr := range rrs {
		if !equalName(rr.Header().Name, name) {
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
		case *dns.SVCB:
			c.addrs = appendHints(c.addrs, v)
		}
	}
	return c
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
