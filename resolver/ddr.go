package resolver

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// ddrTarget is the SVCB target when the certificate names no host.
const ddrTarget = "resolver.arpa."

// ddrRecords are the SVCB records answering _dns.resolver.arpa (RFC 9462,
// Discovery of Designated Resolvers): one per port egressd serves DNS over
// TLS on (alpn "dot"), then one per DNS-over-HTTPS port (alpn "h2" and
// "http/1.1", with dohpath), each with the listen addresses as hints.
type ddrRecords struct {
	svcb []*dns.SVCB
}

func newDDRRecords(dot, doh []netip.AddrPort, path string, cert *tls.Certificate) *ddrRecords {
	if len(dot)+len(doh) == 0 {
		return nil
	}
	target := ddrTarget
	if name := certName(cert); name != "" {
		target = name
	}
	d := &ddrRecords{}
	priority := uint16(1)
	add := func(eps []netip.AddrPort, alpn []string, dohpath string) {
		ports := map[uint16][]netip.Addr{}
		var order []uint16
		for _, ep := range eps {
			if _, ok := ports[ep.Port()]; !ok {
				order = append(order, ep.Port())
			}
			ports[ep.Port()] = append(ports[ep.Port()], ep.Addr().Unmap())
		}
		for _, port := range order {
			rr := &dns.SVCB{
				Hdr:      dns.RR_Header{Name: canaryDiscovery, Rrtype: dns.TypeSVCB, Class: dns.ClassINET, Ttl: syntheticTTL},
				Priority: priority,
				Target:   target,
			}
			priority++
			rr.Value = append(rr.Value, &dns.SVCBAlpn{Alpn: alpn}, &dns.SVCBPort{Port: port})
			var v4, v6 []netip.Addr
			for _, a := range ports[port] {
				switch {
				case a.IsUnspecified():
				case a.Is4():
					v4 = append(v4, a)
				default:
					v6 = append(v6, a)
				}
			}
			if len(v4) > 0 {
				h := &dns.SVCBIPv4Hint{}
				for _, a := range v4 {
					h.Hint = append(h.Hint, a.AsSlice())
				}
				rr.Value = append(rr.Value, h)
			}
			if dohpath != "" {
				rr.Value = append(rr.Value, &dns.SVCBDoHPath{Template: dohpath})
			}
			if len(v6) > 0 {
				h := &dns.SVCBIPv6Hint{}
				for _, a := range v6 {
					h.Hint = append(h.Hint, a.AsSlice())
				}
				rr.Value = append(rr.Value, h)
			}
			// SvcParams in key order (RFC 9460 section 2.2).
			slices.SortStableFunc(rr.Value, func(a, b dns.SVCBKeyValue) int { return int(a.Key()) - int(b.Key()) })
			d.svcb = append(d.svcb, rr)
		}
	}
	add(dot, []string{"dot"}, "")
	add(doh, []string{"h2", "http/1.1"}, path+"{?dns}")
	return d
}

// ddrAnswer answers _dns.resolver.arpa: the SVCB records for qtype SVCB
// when encrypted listeners run, NODATA otherwise.
func ddrAnswer(q *query, d *ddrRecords) *answer {
	if d == nil || q.qtype != dns.TypeSVCB {
		return negativeAnswer(q, dns.RcodeSuccess)
	}
	m := reply(q, dns.RcodeSuccess)
	for _, rr := range d.svcb {
		m.Answer = append(m.Answer, dns.Copy(rr))
	}
	return packed(m, q)
}

// certName is the first host name cert is for, as an FQDN, or "" when it
// names none (a wildcard names no host).
func certName(cert *tls.Certificate) string {
	if cert == nil || len(cert.Certificate) == 0 {
		return ""
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return ""
		}
	}
	for _, n := range leaf.DNSNames {
		if !strings.Contains(n, "*") {
			return dns.Fqdn(strings.ToLower(n))
		}
	}
	return ""
}
