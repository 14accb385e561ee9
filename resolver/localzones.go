package resolver

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// upstreamLocal is the query log's upstream for answers from the locally
// served zones.
const upstreamLocal = "local"

// localZones are the zones egressd answers itself, as unbound does by
// default: RFC 6303 (reverse zones for RFC 1918, loopback, link-local,
// "this network", documentation and broadcast addresses, ULA, the IPv6
// unspecified and loopback addresses), the RFC 6598 shared address space
// 100.64.0.0/10 (RFC 7793) and the RFC 6761 special-use reverse names.
// Their names mean nothing outside the local network, so asking the
// public DNS leaks which private addresses clients talk to and loads the
// AS112 servers.
var localZones = buildLocalZones()

func buildLocalZones() map[string]struct{} {
	zones := []string{
		"10.in-addr.arpa.",
		"168.192.in-addr.arpa.",
		"0.in-addr.arpa.",
		"127.in-addr.arpa.",
		"254.169.in-addr.arpa.",
		"2.0.192.in-addr.arpa.",
		"100.51.198.in-addr.arpa.",
		"113.0.203.in-addr.arpa.",
		"255.255.255.255.in-addr.arpa.",
		"d.f.ip6.arpa.",
		"8.e.f.ip6.arpa.",
		"9.e.f.ip6.arpa.",
		"a.e.f.ip6.arpa.",
		"b.e.f.ip6.arpa.",
		"8.b.d.0.1.0.0.2.ip6.arpa.",
		strings.Repeat("0.", 32) + "ip6.arpa.",        // ::/128
		"1." + strings.Repeat("0.", 31) + "ip6.arpa.", // ::1/128
	}
	for i := 16; i <= 31; i++ { // 172.16.0.0/12
		zones = append(zones, strconv.Itoa(i)+".172.in-addr.arpa.")
	}
	for i := 64; i <= 127; i++ { // 100.64.0.0/10
		zones = append(zones, strconv.Itoa(i)+".100.in-addr.arpa.")
	}
	m := make(map[string]struct{}, len(zones))
	for _, z := range zones {
		m[z] = struct{}{}
	}
	return m
}

// localZoneOf returns the locally served zone qname (normalized) is in or
// below, or "".
func localZoneOf(qname string) string {
	if !strings.HasSuffix(qname, ".arpa.") {
		return ""
	}
	for off, end := 0, false; !end; off, end = dns.NextLabel(qname, off) {
		if _, ok := localZones[qname[off:]]; ok {
			return qname[off:]
		}
	}
	return ""
}

// reverseHosts holds the PTR records [hosts] implies, plus localhost for
// 127.0.0.1 and ::1 (RFC 6761 section 6.3), and every name that exists
// because one of them does (empty non-terminals answer NODATA, not
// NXDOMAIN, RFC 8020).
type reverseHosts struct {
	ptr    map[string][]string // reverse name → host names
	exists map[string]struct{} // reverse names and their ancestors
}

func newReverseHosts(hosts map[string][]netip.Addr) reverseHosts {
	r := reverseHosts{ptr: map[string][]string{}, exists: map[string]struct{}{}}
	add := func(host string, a netip.Addr) {
		name, err := dns.ReverseAddr(a.Unmap().String())
		if err != nil {
			return
		}
		for _, h := range r.ptr[name] {
			if h == host {
				return
			}
		}
		r.ptr[name] = append(r.ptr[name], host)
		for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
			r.exists[name[off:]] = struct{}{}
		}
	}
	for name, addrs := range hosts {
		for _, a := range addrs {
			add(name, a)
		}
	}
	for _, a := range []string{"127.0.0.1", "::1"} {
		if name, _ := dns.ReverseAddr(a); len(r.ptr[name]) == 0 {
			add("localhost.", netip.MustParseAddr(a))
		}
	}
	return r
}

// localAnswer answers q from the [hosts] PTR records and the locally served
// zones. It reports false for names neither covers, and for names an
// [[upstream.zone]] covers: forwarding configured by the operator wins.
func (s *Server) localAnswer(q *query) (*answer, bool) {
	if s.forwarder.InZone(q.qname) {
		return nil, false
	}
	if q.qtype == dns.TypePTR {
		if hosts, ok := q.cfg.reverse.ptr[q.qname]; ok {
			return ptrAnswer(q, hosts), true
		}
	}
	zone := localZoneOf(q.qname)
	if zone == "" {
		return nil, false
	}
	m := reply(q, dns.RcodeSuccess)
	soa := localSOA(zone)
	_, exists := q.cfg.reverse.exists[q.qname]
	switch {
	case q.qname == zone && q.qtype == dns.TypeSOA:
		m.Answer = []dns.RR{soa}
		return packed(m, q), true
	case q.qname == zone && q.qtype == dns.TypeNS:
		m.Answer = []dns.RR{&dns.NS{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: soa.Minttl}, Ns: zone}}
		return packed(m, q), true
	case q.qname != zone && !exists:
		m.Rcode = dns.RcodeNameError
	}
	m.Ns = []dns.RR{soa}
	return packed(m, q), true
}

// localSOA is the SOA RFC 6303 section 3 gives the locally served zones.
func localSOA(zone string) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 10800},
		Ns:      zone,
		Mbox:    "nobody.invalid.",
		Serial:  1,
		Refresh: 3600,
		Retry:   1200,
		Expire:  604800,
		Minttl:  10800,
	}
}

// ptrAnswer answers a PTR query with the given host names.
func ptrAnswer(q *query, hosts []string) *answer {
	m := reply(q, dns.RcodeSuccess)
	for _, h := range hosts {
		m.Answer = append(m.Answer, &dns.PTR{
			Hdr: dns.RR_Header{Name: q.qname, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: syntheticTTL},
			Ptr: h,
		})
	}
	return packed(m, q)
}
