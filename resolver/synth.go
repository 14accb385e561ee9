package resolver

import (
	"encoding/binary"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	"golang.org/x/net/publicsuffix"

	"github.com/egressd/egressd/policy"
)

// Answers egressd makes up itself.
const (
	syntheticTTL = 60   // sinkhole, hosts and negative answers
	anyTTL       = 3600 // the RFC 8482 HINFO answer
	soaMinimum   = 60
)

// DoH canary names and how they are answered.
const (
	canaryDoH       = "use-application-dns.net." // browsers keep DoH off on NXDOMAIN
	canaryDiscovery = "_dns.resolver.arpa."      // RFC 9462 designated resolvers
)

// reply starts a response to q carrying q's question (when it had exactly
// one), q's opcode and rcode. The opcode is copied from the request as
// RFC 1035 section 4.1.1 requires (dig and nsupdate discard a reply
// whose opcode differs); RA is set only on answers to QUERY, the one
// opcode recursion applies to, as unbound does.
func reply(q *query, rcode int) *dns.Msg {
	m := &dns.Msg{}
	m.Response = true
	m.Opcode = q.opcode
	m.RecursionAvailable = q.opcode == dns.OpcodeQuery
	m.Rcode = rcode
	if q.name != "" {
		m.Question = []dns.Question{{Name: q.qname, Qtype: q.qtype, Qclass: q.qclass}}
	}
	return m
}

// packed turns a synthesized message into an answer. Packing a message we
// built only fails on a programming error; SERVFAIL is the honest reply.
func packed(m *dns.Msg, q *query) *answer {
	a, err := newAnswer(m, q.qname)
	if err != nil {
		return headerOnly(dns.RcodeServerFailure)
	}
	if q.opcode != dns.OpcodeQuery { // newAnswer sets RA, right for QUERY only
		flags := binary.BigEndian.Uint16(a.wire[offFlags:])
		binary.BigEndian.PutUint16(a.wire[offFlags:], flags&^flagRA)
	}
	return a
}

// headerOnly is a response without a question section, which cannot fail
// to build.
func headerOnly(rcode int) *answer {
	wire := make([]byte, headerLen)
	binary.BigEndian.PutUint16(wire[offFlags:], flagQR|flagRA|uint16(rcode&0xF))
	return &answer{wire: wire, rcode: rcode & 0xF}
}

func rcodeAnswer(q *query, rcode int) *answer { return packed(reply(q, rcode), q) }

// negativeAnswer is NXDOMAIN (rcode NameError) or NODATA (rcode Success),
// with an SOA in the authority section so clients cache it sanely
// (RFC 2308).
func negativeAnswer(q *query, rcode int) *answer {
	m := reply(q, rcode)
	m.Ns = []dns.RR{syntheticSOA(q.qname)}
	return packed(m, q)
}

// syntheticSOA is an SOA for the zone the name most likely lives in: its
// registrable domain, or the name itself when that is unknown.
func syntheticSOA(qname string) *dns.SOA {
	zone := qname
	if etld1, err := publicsuffix.EffectiveTLDPlusOne(strings.TrimSuffix(qname, ".")); err == nil {
		zone = etld1 + "."
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: soaMinimum},
		Ns:      "egressd.invalid.",
		Mbox:    "hostmaster.egressd.invalid.",
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  soaMinimum,
	}
}

// denyAnswer answers a query policy denied, the way decision says.
func denyAnswer(q *query, d policy.Decision) *answer {
	switch d.Action {
	case policy.ActionNoData:
		return negativeAnswer(q, dns.RcodeSuccess)
	case policy.ActionRefused:
		return rcodeAnswer(q, dns.RcodeRefused)
	case policy.ActionSinkhole:
		return addressAnswer(q, d.Sinkhole)
	default:
		return negativeAnswer(q, dns.RcodeNameError)
	}
}

// addressAnswer answers A or AAAA from addrs, and NODATA when no address
// fits the query type. Sinkhole and hosts answers are built this way.
func addressAnswer(q *query, addrs []netip.Addr) *answer {
	m := reply(q, dns.RcodeSuccess)
	hdr := dns.RR_Header{Name: q.qname, Rrtype: q.qtype, Class: dns.ClassINET, Ttl: syntheticTTL}
	for _, a := range addrs {
		switch {
		case q.qtype == dns.TypeA && a.Unmap().Is4():
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.Unmap().AsSlice()})
		case q.qtype == dns.TypeAAAA && a.Is6() && !a.Is4In6():
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	if len(m.Answer) == 0 {
		return negativeAnswer(q, dns.RcodeSuccess)
	}
	return packed(m, q)
}

// canaryAnswer answers the DoH canary names, or reports that name is not
// one of them.
func canaryAnswer(q *query) (*answer, bool) {
	switch q.qname {
	case canaryDoH:
		return negativeAnswer(q, dns.RcodeNameError), true
	case canaryDiscovery:
		return ddrAnswer(q, q.cfg.ddr.Load()), true
	}
	return nil, false
}

// anyAnswer is the minimal answer RFC 8482 allows for qtype ANY.
func anyAnswer(q *query) *answer {
	m := reply(q, dns.RcodeSuccess)
	m.Answer = []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: q.qname, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: anyTTL},
		Cpu: "RFC8482",
	}}
	return packed(m, q)
}
