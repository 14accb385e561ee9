package resolver

import "github.com/miekg/dns"

// checkRequest decides whether a query may go on, and if not which RCODE
// answers it. It follows RFC 8906 (a server must answer every query it
// does not implement with a clear RCODE rather than stay silent) and
// RFC 6891 for EDNS. Unknown flags and EDNS options are ignored, as both
// require.
func checkRequest(q *query) (rcode int, ok bool) {
	switch {
	case q.opcode == dns.OpcodeUpdate:
		// RFC 2136: egressd is no primary for any zone. REFUSED tells
		// nsupdate plainly ("update failed: REFUSED").
		return dns.RcodeRefused, false
	case q.opcode != dns.OpcodeQuery: // IQUERY, STATUS, NOTIFY, DSO, unassigned
		return dns.RcodeNotImplemented, false
	case q.questions != 1:
		return dns.RcodeFormatError, false
	case q.optCount > 1: // RFC 6891 section 6.1.1
		return dns.RcodeFormatError, false
	case q.opt && q.ednsVersion > 0: // RFC 6891 section 6.1.3
		return dns.RcodeBadVers, false
	case q.qclass == dns.ClassANY:
		return dns.RcodeNotImplemented, false
	case q.qclass != dns.ClassINET: // CHAOS (version.bind) and HESIOD are not served
		return dns.RcodeRefused, false
	}
	switch q.qtype {
	case dns.TypeAXFR, dns.TypeIXFR: // no zones to transfer
		return dns.RcodeRefused, false
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY: // meta types never asked for
		return dns.RcodeFormatError, false
	case dns.TypeMAILA, dns.TypeMAILB:
		return dns.RcodeNotImplemented, false
	}
	return dns.RcodeSuccess, true
}
