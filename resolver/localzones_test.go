package resolver

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// ptrUpstream answers every query with a PTR to "public.example." so a
// query that leaks upstream is visible in the answer too.
func ptrUpstream(t testing.TB) upstreamHandler {
	return func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Qtype == dns.TypePTR {
			m.Answer = mustRRs(t, []string{r.Question[0].Name + " 60 IN PTR public.example."})
		}
		w.WriteMsg(m)
	}
}

func reverse(t testing.TB, addr string) string {
	t.Helper()
	name, err := dns.ReverseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// RFC 6303 (and RFC 6761, RFC 6598): reverse names of private, loopback,
// link-local, shared and documentation addresses are answered locally,
// never asked of the public upstream; [hosts] addresses get their PTR;
// an [[upstream.zone]] covering the name forwards it instead.
func TestLocallyServedZones(t *testing.T) {
	def := startUpstream(t, ptrUpstream(t))
	corp := startUpstream(t, ptrUpstream(t))
	env := newEnv(t, Options{
		Upstreams: []string{def.addr},
		Zones:     []Zone{{Name: "1.10.in-addr.arpa", Upstreams: []string{corp.addr}}},
		Settings: Settings{
			Hosts: map[string][]netip.Addr{
				"printer.office.internal": {netip.MustParseAddr("10.0.0.20")},
				"Nas.Office.Internal.":    {netip.MustParseAddr("10.0.0.21"), netip.MustParseAddr("fd00::21")},
				"www.office.example":      {netip.MustParseAddr("198.18.7.7")},
			},
		},
	})

	const (
		local   = ""
		deflt   = "default"
		forward = "zone"
	)
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		ptr    []string // wanted PTR targets
		soa    string   // zone of the SOA in the authority section ("" for none)
		sentTo string
	}{
		{"rfc1918 10/8", reverse(t, "10.9.8.7"), dns.TypePTR, dns.RcodeNameError, nil, "10.in-addr.arpa.", local},
		{"rfc1918 172.16/12 low", reverse(t, "172.16.0.1"), dns.TypePTR, dns.RcodeNameError, nil, "16.172.in-addr.arpa.", local},
		{"rfc1918 172.16/12 high", reverse(t, "172.31.255.1"), dns.TypePTR, dns.RcodeNameError, nil, "31.172.in-addr.arpa.", local},
		{"172.32 is public", reverse(t, "172.32.0.1"), dns.TypePTR, dns.RcodeSuccess, []string{"public.example."}, "", deflt},
		{"rfc1918 192.168/16", reverse(t, "192.168.1.1"), dns.TypePTR, dns.RcodeNameError, nil, "168.192.in-addr.arpa.", local},
		{"this network 0/8", reverse(t, "0.1.2.3"), dns.TypePTR, dns.RcodeNameError, nil, "0.in-addr.arpa.", local},
		{"loopback other", reverse(t, "127.0.0.2"), dns.TypePTR, dns.RcodeNameError, nil, "127.in-addr.arpa.", local},
		{"loopback localhost", reverse(t, "127.0.0.1"), dns.TypePTR, dns.RcodeSuccess, []string{"localhost."}, "", local},
		{"link-local", reverse(t, "169.254.1.1"), dns.TypePTR, dns.RcodeNameError, nil, "254.169.in-addr.arpa.", local},
		{"shared 100.64/10 low", reverse(t, "100.64.0.1"), dns.TypePTR, dns.RcodeNameError, nil, "64.100.in-addr.arpa.", local},
		{"shared 100.64/10 high", reverse(t, "100.127.0.1"), dns.TypePTR, dns.RcodeNameError, nil, "127.100.in-addr.arpa.", local},
		{"100.128 is public", reverse(t, "100.128.0.1"), dns.TypePTR, dns.RcodeSuccess, []string{"public.example."}, "", deflt},
		{"test-net-1", reverse(t, "192.0.2.1"), dns.TypePTR, dns.RcodeNameError, nil, "2.0.192.in-addr.arpa.", local},
		{"test-net-2", reverse(t, "198.51.100.1"), dns.TypePTR, dns.RcodeNameError, nil, "100.51.198.in-addr.arpa.", local},
		{"test-net-3", reverse(t, "203.0.113.1"), dns.TypePTR, dns.RcodeNameError, nil, "113.0.203.in-addr.arpa.", local},
		{"broadcast (zone apex)", reverse(t, "255.255.255.255"), dns.TypePTR, dns.RcodeSuccess, nil, "255.255.255.255.in-addr.arpa.", local},
		{"ipv6 unspecified (zone apex)", reverse(t, "::"), dns.TypePTR, dns.RcodeSuccess, nil, reverse(t, "::"), local},
		{"ipv6 loopback", reverse(t, "::1"), dns.TypePTR, dns.RcodeSuccess, []string{"localhost."}, "", local},
		{"ula fd00::/8", reverse(t, "fd12::1"), dns.TypePTR, dns.RcodeNameError, nil, "d.f.ip6.arpa.", local},
		{"link-local fe80::/10", reverse(t, "fe80::1"), dns.TypePTR, dns.RcodeNameError, nil, "8.e.f.ip6.arpa.", local},
		{"link-local febf::", reverse(t, "febf::1"), dns.TypePTR, dns.RcodeNameError, nil, "b.e.f.ip6.arpa.", local},
		{"documentation 2001:db8::/32", reverse(t, "2001:db8::1"), dns.TypePTR, dns.RcodeNameError, nil, "8.b.d.0.1.0.0.2.ip6.arpa.", local},
		{"global ipv6 is public", reverse(t, "2001:4860::1"), dns.TypePTR, dns.RcodeSuccess, []string{"public.example."}, "", deflt},
		{"hosts ptr", reverse(t, "10.0.0.20"), dns.TypePTR, dns.RcodeSuccess, []string{"printer.office.internal."}, "", local},
		{"hosts ptr ipv6", reverse(t, "fd00::21"), dns.TypePTR, dns.RcodeSuccess, []string{"nas.office.internal."}, "", local},
		{"hosts ptr public address", reverse(t, "198.18.7.7"), dns.TypePTR, dns.RcodeSuccess, []string{"www.office.example."}, "", local},
		{"hosts name, other type", reverse(t, "10.0.0.20"), dns.TypeTXT, dns.RcodeSuccess, nil, "10.in-addr.arpa.", local},
		{"empty non-terminal above a hosts name", "0.0.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, nil, "10.in-addr.arpa.", local},
		{"zone apex SOA", "10.in-addr.arpa.", dns.TypeSOA, dns.RcodeSuccess, nil, "", local},
		{"zone apex other type", "168.192.in-addr.arpa.", dns.TypeA, dns.RcodeSuccess, nil, "168.192.in-addr.arpa.", local},
		{"case folded", strings.ToUpper(reverse(t, "fd12::1")), dns.TypePTR, dns.RcodeNameError, nil, "d.f.ip6.arpa.", local},
		{"forwarded zone wins", reverse(t, "10.1.2.3"), dns.TypePTR, dns.RcodeSuccess, []string{"public.example."}, "", forward},
		{"beside the forwarded zone", reverse(t, "10.2.2.3"), dns.TypePTR, dns.RcodeNameError, nil, "10.in-addr.arpa.", local},
		{"in-addr.arpa itself", "in-addr.arpa.", dns.TypeSOA, dns.RcodeSuccess, nil, "", deflt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := [2]int32{def.queries.Load(), corp.queries.Load()}
			resp := env.serve(t, "127.0.0.1", question(tt.qname, tt.qtype))
			after := [2]int32{def.queries.Load(), corp.queries.Load()}
			sent := local
			switch {
			case after[0] > before[0]:
				sent = deflt
			case after[1] > before[1]:
				sent = forward
			}
			if sent != tt.sentTo {
				t.Fatalf("answered by %q, want %q", sent, tt.sentTo)
			}
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			var ptrs []string
			for _, rr := range resp.Answer {
				if p, ok := rr.(*dns.PTR); ok {
					ptrs = append(ptrs, p.Ptr)
				}
			}
			if !slices.Equal(ptrs, tt.ptr) {
				t.Errorf("PTR %v, want %v", ptrs, tt.ptr)
			}
			if tt.sentTo != local {
				return
			}
			var soa string
			if len(resp.Ns) == 1 {
				if s, ok := resp.Ns[0].(*dns.SOA); ok {
					soa = strings.ToLower(s.Hdr.Name) // compressed against the client's spelling
				}
			}
			if soa != tt.soa {
				t.Errorf("authority %v, want the SOA of %q", resp.Ns, tt.soa)
			}
			if tt.qtype == dns.TypeSOA && (len(resp.Answer) != 1 || !strings.EqualFold(resp.Answer[0].Header().Name, tt.qname)) {
				t.Errorf("apex SOA answer %v", resp.Answer)
			}
			if !resp.RecursionAvailable || resp.Authoritative {
				t.Errorf("RA %v AA %v", resp.RecursionAvailable, resp.Authoritative)
			}
		})
	}
}

// The UDP reader's path (stage 1, answerReady) serves local zones
// without the upstream too.
func TestLocallyServedZonesOverUDP(t *testing.T) {
	up := startUpstream(t, ptrUpstream(t))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
	addr := env.start(t)
	for _, ip := range []string{"10.0.0.1", "192.168.0.1", "fd00::1"} {
		resp := exchange(t, "udp", addr, question(reverse(t, ip), dns.TypePTR))
		if resp.Rcode != dns.RcodeNameError {
			t.Errorf("%s: rcode %s, want NXDOMAIN", ip, dns.RcodeToString[resp.Rcode])
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("%d queries went upstream", n)
	}
}
