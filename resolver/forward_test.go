package resolver

// Whole-server tests of forwarding: what the upstream package returns
// reaches the cache, the firewall and the query log.

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
)

func TestSpoofedRepliesIgnored(t *testing.T) {
	up := dnstest.Start(t, dnstest.Spoofing(t, true))
	env := newEnv(t, Options{Upstreams: []string{up.Addr}})
	resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
	if got := answerData(resp); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("answers %v, want the genuine reply only", got)
	}
	allows := env.enforcer.allowances()
	if len(allows) != 1 || !slices.Equal(allows[0].IPs, []netip.Addr{netip.MustParseAddr("192.0.2.1")}) {
		t.Errorf("firewall got %v, want only the genuine address", allows)
	}
}

func TestTruncatedReplyRetriedOverTCP(t *testing.T) {
	var udpQueries, tcpQueries atomic.Int32
	answer := dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1", "a.example. 300 IN A 192.0.2.2"}, nil)
	up := dnstest.Start(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		if udp {
			udpQueries.Add(1)
			m := new(dns.Msg)
			m.SetReply(r)
			m.Truncated = true
			w.WriteMsg(m)
			return
		}
		tcpQueries.Add(1)
		answer(w, r, udp)
	})
	env := newEnv(t, Options{Upstreams: []string{up.Addr}, CacheSize: 10})
	addr := env.start(t)
	resp := exchange(t, "udp", addr, question("a.example.", dns.TypeA))
	if resp.Truncated || !slices.Equal(answerData(resp), []string{"192.0.2.1", "192.0.2.2"}) {
		t.Fatalf("got %v", resp)
	}
	if udpQueries.Load() != 1 || tcpQueries.Load() != 1 {
		t.Errorf("upstream saw %d UDP and %d TCP queries, want 1 and 1", udpQueries.Load(), tcpQueries.Load())
	}
	if env.srv.cache.len() != 1 {
		t.Error("the full TCP answer was not cached")
	}
}

// Through the whole server: the first DoT upstream fails certificate
// verification, the second answers, and the answer reaches the firewall.
func TestServerDoTFailover(t *testing.T) {
	pki := dnstest.NewPKI(t)
	srv := dnstest.StartDoT(t, pki, dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil))
	bad, good := srv.URL("127.0.0.1", "other.test"), srv.URL("127.0.0.1", dnstest.ServerName)
	env := newEnv(t, Options{Upstreams: []string{bad, good}, RootCAs: pki.Roots, CacheSize: 10})
	t.Cleanup(env.srv.forwarder.CloseIdle)
	addr := env.start(t)
	resp := exchange(t, "udp", addr, question("a.example.", dns.TypeA))
	if resp.Rcode != dns.RcodeSuccess || !slices.Equal(answerData(resp), []string{"192.0.2.1"}) {
		t.Fatalf("got %v", resp)
	}
	waitFor(t, func() bool { // the log entry is written after the answer
		env.log.mu.Lock()
		defer env.log.mu.Unlock()
		return len(env.log.entries) > 0
	})
	if e := env.log.last(t); e.Upstream != good {
		t.Errorf("logged upstream %q, want %q", e.Upstream, good)
	}
	if allows := env.enforcer.allowances(); len(allows) != 1 || allows[0].IPs[0].String() != "192.0.2.1" {
		t.Errorf("firewall got %v", allows)
	}
	if n := srv.Queries.Load(); n != 1 {
		t.Errorf("DoT server answered %d queries, want 1 (the bad name must fail before any query)", n)
	}
}

func TestZoneRouting(t *testing.T) {
	def := dnstest.Start(t, dnstest.AddressFor(t, "192.0.2.1"))
	corp := dnstest.Start(t, dnstest.AddressFor(t, "10.0.0.1"))
	lab := dnstest.Start(t, dnstest.AddressFor(t, "10.0.0.2"))
	env := newEnv(t, Options{
		Upstreams: []string{def.Addr},
		Zones: []Zone{
			{Name: "Corp.Internal", Upstreams: []string{corp.Addr}},
			{Name: "lab.corp.internal.", Upstreams: []string{lab.Addr, def.Addr}},
		},
		CacheSize: 100,
	})
	tests := []struct {
		qname    string
		want     string
		upstream string
	}{
		{"corp.internal.", "10.0.0.1", corp.Addr},
		{"host.corp.internal.", "10.0.0.1", corp.Addr},
		{"Other.CORP.Internal.", "10.0.0.1", corp.Addr},
		{"a.b.c.corp.internal.", "10.0.0.1", corp.Addr},
		{"lab.corp.internal.", "10.0.0.2", lab.Addr},
		{"x.lab.corp.internal.", "10.0.0.2", lab.Addr},
		{"notcorp.internal.", "192.0.2.1", def.Addr},
		{"internal.", "192.0.2.1", def.Addr},
		{"corp.internal.example.", "192.0.2.1", def.Addr},
		{"www.example.com.", "192.0.2.1", def.Addr},
	}
	for _, tt := range tests {
		t.Run(tt.qname, func(t *testing.T) {
			resp := env.serve(t, "127.0.0.1", question(tt.qname, dns.TypeA))
			if got := answerData(resp); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("answers %v, want %s", got, tt.want)
			}
			if e := env.log.last(t); e.Upstream != tt.upstream {
				t.Errorf("answered by %q, want %q", e.Upstream, tt.upstream)
			}
		})
	}
	if n := lab.Queries.Load(); n != 2 {
		t.Errorf("lab server asked %d times, want 2", n)
	}
}

// The whole server with encrypted upstreams given by host name: the default
// goes over DoH, a zone over DoT, both found through the bootstrap server.
func TestServerEncryptedUpstreamsByName(t *testing.T) {
	pki := dnstest.NewPKI(t)
	dot := dnstest.StartDoT(t, pki, dnstest.AddressFor(t, "10.0.0.1"))
	doh := dnstest.StartDoH(t, pki, dnstest.AddressFor(t, "192.0.2.1"), nil)
	boot := dnstest.Start(t, dnstest.BootstrapAnswers(t, nil))
	dohURL, dotURL := doh.URL(dnstest.ServerName, "/dns-query"), dot.URL(dnstest.ServerName, "")
	env := newEnv(t, Options{
		Upstreams: []string{dohURL},
		Zones:     []Zone{{Name: "corp.internal", Upstreams: []string{dotURL}}},
		Bootstrap: []string{boot.Addr},
		RootCAs:   pki.Roots,
	})
	t.Cleanup(env.srv.forwarder.CloseIdle)
	addr := env.start(t)
	for _, tt := range []struct{ name, want string }{
		{"www.example.com.", "192.0.2.1"},
		{"host.corp.internal.", "10.0.0.1"},
		{"mail.example.com.", "192.0.2.1"},
		{"db.corp.internal.", "10.0.0.1"},
	} {
		resp := exchange(t, "udp", addr, question(tt.name, dns.TypeA))
		if got := answerData(resp); !slices.Equal(got, []string{tt.want}) {
			t.Errorf("%s: answers %v, want %s", tt.name, got, tt.want)
		}
	}
	if n := dot.Accepted.Load(); n != 1 {
		t.Errorf("DoT server accepted %d connections, want 1", n)
	}
	if n := doh.Accepted.Load(); n != 1 {
		t.Errorf("DoH server accepted %d connections, want 1", n)
	}
	if n := boot.Queries.Load(); n != 2 {
		t.Errorf("bootstrap server asked %d times, want 2 (one name, A and AAAA)", n)
	}
}
