package resolver

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Every Settings field applies to queries admitted after Configure, with
// nothing else rebuilt: the same server answers the same question
// differently before and after.
func TestConfigureAppliesToNewQueries(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 3600 IN A 192.0.2.1", "private.example. 3600 IN A 10.0.0.1"}, nil))
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	base := Settings{Clients: loopback, MaxTTL: time.Hour, DoHCanary: true}
	tests := []struct {
		name   string
		change func(*Settings)
		qname  string
		before func(*dns.Msg) bool
		after  func(*dns.Msg) bool
	}{
		{"clients narrowed", func(s *Settings) { s.Clients = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")} }, "a.example.",
			rcodeIs(dns.RcodeSuccess), rcodeIs(dns.RcodeRefused)},
		{"max_ttl lowered", func(s *Settings) { s.MaxTTL = 30 * time.Second }, "a.example.",
			ttlAtMost(3600), ttlAtMost(30)},
		{"doh canary off", func(s *Settings) { s.DoHCanary = false }, "use-application-dns.net.",
			rcodeIs(dns.RcodeNameError), rcodeIs(dns.RcodeSuccess)},
		{"hosts added", func(s *Settings) {
			s.Hosts = map[string][]netip.Addr{"printer.lan.": {netip.MustParseAddr("192.0.2.9")}}
		}, "printer.lan.", rcodeIs(dns.RcodeSuccess), answersWith("192.0.2.9")},
		{"private answers allowed", func(s *Settings) { s.PrivateAnswers = map[string]bool{testGroup: true} }, "private.example.",
			rcodeIs(dns.RcodeNameError), answersWith("10.0.0.1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, Settings: base})
			if resp := env.serve(t, "127.0.0.1", question(tt.qname, dns.TypeA)); !tt.before(resp) {
				t.Fatalf("before Configure: %v", resp)
			}
			next := base
			tt.change(&next)
			env.srv.Configure(next)
			if resp := env.serve(t, "127.0.0.1", question(tt.qname, dns.TypeA)); !tt.after(resp) {
				t.Errorf("after Configure: %v", resp)
			}
		})
	}
}

// fail_open, the cache's lifetimes and the rate limit follow Configure too.
func TestConfigureFailOpenCacheAndRateLimit(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 3600 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
	env.enforcer.err = errors.New("netlink: no buffer space")
	st := env.srv.settings().Settings
	if resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA)); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("fail_open false: rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	st.FailOpen = true
	env.srv.Configure(st)
	if resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("fail_open true: rcode %s, want NOERROR", dns.RcodeToString[resp.Rcode])
	}

	st.CacheMaxTTL, st.ServeStale = time.Minute, time.Hour
	env.srv.Configure(st)
	if got, stale := env.srv.cache.maxTTL.Load(), env.srv.cache.stale.Load(); got != 60 || stale != 3600 {
		t.Errorf("cache lifetimes %d s, stale %d s; want 60 and 3600", got, stale)
	}

	if env.srv.settings().limiter != nil {
		t.Fatal("a limiter without rate_limit")
	}
	st.RateLimit, st.RateBurst = 1, 1
	env.srv.Configure(st)
	l := env.srv.settings().limiter
	if l == nil {
		t.Fatal("rate_limit set by Configure built no limiter")
	}
	env.srv.Configure(st) // same rate: the buckets stay
	if env.srv.settings().limiter != l {
		t.Error("Configure with the same rate_limit dropped the limiter's buckets")
	}
}

func rcodeIs(rcode int) func(*dns.Msg) bool {
	return func(m *dns.Msg) bool { return m.Rcode == rcode }
}

func ttlAtMost(ttl uint32) func(*dns.Msg) bool {
	return func(m *dns.Msg) bool {
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
			return false
		}
		for _, rr := range m.Answer {
			if rr.Header().Ttl > ttl {
				return false
			}
		}
		return true
	}
}

func answersWith(addr string) func(*dns.Msg) bool {
	return func(m *dns.Msg) bool {
		for _, rr := range m.Answer {
			if a, ok := rr.(*dns.A); ok && a.A.String() == addr {
				return true
			}
		}
		return false
	}
}
