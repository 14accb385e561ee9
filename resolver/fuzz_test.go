package resolver

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// fuzzUpstream answers from the question alone, without a network: a
// CNAME and an address for most names, a private address for names
// starting "private", a hundred records for names starting "big", and
// NXDOMAIN with an SOA for other types.
type fuzzUpstream struct{}

func (fuzzUpstream) InZone(string) bool { return false }
func (fuzzUpstream) CloseIdle()         {}

func (fuzzUpstream) Exchange(_ context.Context, q *dns.Msg) (*dns.Msg, string, error) {
	m := new(dns.Msg)
	m.SetReply(q)
	qq := q.Question[0]
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: 60}
	}
	target := "edge." + strings.TrimPrefix(qq.Name, ".")
	switch {
	case qq.Qtype != dns.TypeA && qq.Qtype != dns.TypeAAAA:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{&dns.SOA{Hdr: hdr(qq.Name, dns.TypeSOA), Ns: "ns.", Mbox: "h.", Minttl: 30}}
	case strings.HasPrefix(qq.Name, "big"):
		for i := range 100 {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(qq.Name, dns.TypeA), A: net.IPv4(192, 0, 2, byte(i))})
		}
	case strings.HasPrefix(qq.Name, "private"):
		m.Answer = []dns.RR{&dns.A{Hdr: hdr(qq.Name, dns.TypeA), A: net.IPv4(10, 0, 0, 1)}}
	case qq.Qtype == dns.TypeA:
		m.Answer = []dns.RR{
			&dns.CNAME{Hdr: hdr(qq.Name, dns.TypeCNAME), Target: target},
			&dns.A{Hdr: hdr(target, dns.TypeA), A: net.IPv4(192, 0, 2, 1)},
		}
	default:
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr(qq.Name, dns.TypeAAAA), AAAA: net.ParseIP("2001:db8::1")}}
	}
	return m, "fuzz", nil
}

// FuzzServeDNS feeds arbitrary bytes through what miekg/dns does with a
// datagram (header check, unpack, dropping responses) and then the
// handler, over UDP and TCP. Whatever comes out must be one well-formed
// response with the query's ID that fits the client's buffer. The seeds in
// testdata/fuzz/FuzzServeDNS are named after what they exercise: normal
// and oversized answers, the RFC 8906 cases, damaged names and headers.
func FuzzServeDNS(f *testing.F) {
	env := newEnv(f, Options{
		Upstreams: []string{"127.0.0.1:1"}, // replaced below; never dialled
		CacheSize: 100,
		Enforcer:  nopEnforcer{},
		QueryLog:  nopLog{},
		Settings: Settings{
			DoHCanary: true,
		},
	})
	env.srv.forwarder = fuzzUpstream{}
	udp := udpClient("127.0.0.1")
	tcp := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

	f.Fuzz(func(t *testing.T, raw []byte) {
		var req dns.Msg
		if len(raw) < headerLen || req.Unpack(raw) != nil || raw[2]&0x80 != 0 {
			return // never reaches the handler
		}
		for _, remote := range []net.Addr{udp, tcp} {
			w := fakeWriter(remote)
			env.srv.ServeDNS(w, &req)
			if w.Out == nil {
				t.Fatalf("no reply over %s", remote.Network())
			}
			var resp dns.Msg
			if err := resp.Unpack(w.Out); err != nil {
				t.Fatalf("reply over %s does not parse: %v", remote.Network(), err)
			}
			if resp.Id != req.Id || !resp.Response {
				t.Fatalf("reply ID %d QR %v, query ID %d", resp.Id, resp.Response, req.Id)
			}
			q := parseQuery(&req, remote.Network() == "udp")
			if len(w.Out) > q.maxSize {
				t.Fatalf("reply of %d bytes over %s, client takes %d", len(w.Out), remote.Network(), q.maxSize)
			}
		}
	})
}
