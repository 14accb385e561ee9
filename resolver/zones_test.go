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
