package resolver

import (
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// addressFor answers every A query with ip for the name asked.
func addressFor(t testing.TB, ip string) upstreamHandler {
	return func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = mustRRs(t, []string{r.Question[0].Name + " 60 IN A " + ip})
		w.WriteMsg(m)
	}
}

func TestZoneRouting(t *testing.T) {
	def := startUpstream(t, addressFor(t, "192.0.2.1"))
	corp := startUpstream(t, addressFor(t, "10.0.0.1"))
	lab := startUpstream(t, addressFor(t, "10.0.0.2"))
	env := newEnv(t, Options{
		Upstreams: []string{def.addr},
		Zones: []Zone{
			{Name: "Corp.Internal", Upstreams: []string{corp.addr}},
			{Name: "lab.corp.internal.", Upstreams: []string{lab.addr, def.addr}},
		},
		CacheSize: 100,
	})
	tests := []struct {
		qname    string
		want     string
		upstream string
	}{
		{"corp.internal.", "10.0.0.1", corp.addr},
		{"host.corp.internal.", "10.0.0.1", corp.addr},
		{"Other.CORP.Internal.", "10.0.0.1", corp.addr},
		{"a.b.c.corp.internal.", "10.0.0.1", corp.addr},
		{"lab.corp.internal.", "10.0.0.2", lab.addr},
		{"x.lab.corp.internal.", "10.0.0.2", lab.addr},
		{"notcorp.internal.", "192.0.2.1", def.addr},
		{"internal.", "192.0.2.1", def.addr},
		{"corp.internal.example.", "192.0.2.1", def.addr},
		{"www.example.com.", "192.0.2.1", def.addr},
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
	if n := lab.queries.Load(); n != 2 {
		t.Errorf("lab server asked %d times, want 2", n)
	}
}

// A server listed both by default and in a zone is one Upstream, so both
// share its connections.
func TestZoneSharesUpstreams(t *testing.T) {
	env := newEnv(t, Options{
		Upstreams: []string{"127.0.0.1:53", "tls://127.0.0.1:853"},
		Zones:     []Zone{{Name: "corp.internal", Upstreams: []string{"tls://127.0.0.1:853"}}},
	})
	z := env.srv.zones.match("corp.internal.")
	if z == nil || len(z.upstreams) != 1 {
		t.Fatalf("zone servers %v", z)
	}
	if z.upstreams[0] != env.srv.upstreams[1] {
		t.Error("the zone has its own instance of a default upstream")
	}
	if z.health == env.srv.health {
		t.Error("the zone shares the default servers' health order")
	}
}

// The whole server with encrypted upstreams given by host name: the default
// goes over DoH, a zone over DoT, both found through the bootstrap server.
func TestServerEncryptedUpstreamsByName(t *testing.T) {
	pki := newTestPKI(t)
	dot := startDoT(t, pki, addressFor(t, "10.0.0.1"))
	doh := startDoH(t, pki, addressFor(t, "192.0.2.1"), nil)
	boot := startUpstream(t, bootstrapAnswers(t, nil))
	dohURL, dotURL := doh.url(testServerName, "/dns-query"), dot.url(testServerName, "")
	env := newEnv(t, Options{
		Upstreams: []string{dohURL},
		Zones:     []Zone{{Name: "corp.internal", Upstreams: []string{dotURL}}},
		Bootstrap: []string{boot.addr},
		RootCAs:   pki.roots,
	})
	t.Cleanup(env.srv.closeIdleUpstreams)
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
	if n := dot.accepted.Load(); n != 1 {
		t.Errorf("DoT server accepted %d connections, want 1", n)
	}
	if n := doh.accepted.Load(); n != 1 {
		t.Errorf("DoH server accepted %d connections, want 1", n)
	}
	if n := boot.queries.Load(); n != 2 {
		t.Errorf("bootstrap server asked %d times, want 2 (one name, A and AAAA)", n)
	}
}
