package resolver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/policy"
)

// rebindUpstream answers A and AAAA from a fixed table of names.
func rebindUpstream(t *testing.T) *testUpstream {
	zone := map[string][]string{
		"public.example.":           {"public.example. 60 IN A 192.0.2.1"},
		"rfc1918.example.":          {"rfc1918.example. 60 IN A 10.1.2.3"},
		"cgnat.example.":            {"cgnat.example. 60 IN A 100.64.1.1"},
		"linklocal.example.":        {"linklocal.example. 60 IN A 169.254.169.254"},
		"loopback.example.":         {"loopback.example. 60 IN A 127.0.0.1"},
		"unspecified.example.":      {"unspecified.example. 60 IN A 0.0.0.0"},
		"mixed.example.":            {"mixed.example. 60 IN A 192.0.2.1", "mixed.example. 60 IN A 192.168.1.1"},
		"cname.example.":            {"cname.example. 60 IN CNAME inside.example.", "inside.example. 60 IN A 172.16.0.1"},
		"v6loopback.example.":       {"v6loopback.example. 60 IN AAAA ::1"},
		"ula.example.":              {"ula.example. 60 IN AAAA fd12:3456::1"},
		"v6linklocal.example.":      {"v6linklocal.example. 60 IN AAAA fe80::1"},
		"mapped.example.":           {"mapped.example. 60 IN AAAA ::ffff:10.0.0.1"},
		"v6public.example.":         {"v6public.example. 60 IN AAAA 2001:db8::1"},
		"printer.lan.":              {"printer.lan. 60 IN A 192.168.1.5"},
		"nas.home.arpa.":            {"nas.home.arpa. 60 IN A 192.168.1.6"},
		"db.corp.internal.":         {"db.corp.internal. 60 IN A 10.0.0.7"},
		"tv.local.":                 {"tv.local. 60 IN A 169.254.1.1"},
		"db.corp.example.":          {"db.corp.example. 60 IN A 10.0.0.8"},
		"5.10.18.198.in-addr.arpa.": {"5.10.18.198.in-addr.arpa. 60 IN A 192.168.1.5"},
	}
	return startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, rr := range mustRRs(t, zone[r.Question[0].Name]) {
			if rr.Header().Rrtype == r.Question[0].Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})
}

func TestRebindingProtection(t *testing.T) {
	up := rebindUpstream(t)
	tests := []struct {
		qname string
		qtype uint16
		deny  bool
	}{
		{"public.example.", dns.TypeA, false},
		{"v6public.example.", dns.TypeAAAA, false},
		{"rfc1918.example.", dns.TypeA, true},
		{"cgnat.example.", dns.TypeA, true},
		{"linklocal.example.", dns.TypeA, true},
		{"loopback.example.", dns.TypeA, true},
		{"unspecified.example.", dns.TypeA, true},
		{"mixed.example.", dns.TypeA, true},
		{"cname.example.", dns.TypeA, true}, // the chain ends on a private address
		{"v6loopback.example.", dns.TypeAAAA, true},
		{"ula.example.", dns.TypeAAAA, true},
		{"v6linklocal.example.", dns.TypeAAAA, true},
		{"mapped.example.", dns.TypeAAAA, true},
		// Local zones are exempt.
		{"printer.lan.", dns.TypeA, false},
		{"nas.home.arpa.", dns.TypeA, false},
		{"db.corp.internal.", dns.TypeA, false},
		{"tv.local.", dns.TypeA, false},
		{"5.10.18.198.in-addr.arpa.", dns.TypeA, false}, // outside the locally served zones
		// Zones forwarded to the operator's own servers are trusted.
		{"db.corp.example.", dns.TypeA, false},
		// Static hosts entries are egressd's own answers.
		{"router.example.", dns.TypeA, false},
	}
	groups := []struct {
		name        string
		allowGroups func(string) bool
		mode        policy.Mode
		action      policy.Action
	}{
		{"protected, nxdomain", nil, policy.ModeEnforce, policy.ActionNXDomain},
		{"protected, refused", func(g string) bool { return g == "other" }, policy.ModeEnforce, policy.ActionRefused},
		{"group allows private answers", func(g string) bool { return g == testGroup }, policy.ModeEnforce, policy.ActionNXDomain},
		{"audit mode", nil, policy.ModeAudit, policy.ActionNXDomain},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			env := newEnv(t, Options{
				Upstreams:           []string{up.addr},
				CacheSize:           100,
				AllowPrivateAnswers: g.allowGroups,
				Hosts:               map[string][]netip.Addr{"router.example.": {netip.MustParseAddr("10.0.0.1")}},
				Zones:               []Zone{{Name: "corp.example", Upstreams: []string{up.addr}}},
			})
			env.policy.names = map[string]policy.Decision{}
			for _, tt := range tests {
				env.policy.names[tt.qname] = policy.Decision{Verdict: policy.Allow, Group: testGroup, Rule: "default", Mode: g.mode, Action: g.action}
			}
			protected := g.allowGroups == nil || !g.allowGroups(testGroup)
			for _, tt := range tests {
				before := len(env.enforcer.allowances())
				resp := env.serve(t, "127.0.0.1", question(tt.qname, tt.qtype))
				e := env.log.last(t)
				blocked := tt.deny && protected && g.mode == policy.ModeEnforce
				wantRcode := dns.RcodeSuccess
				switch {
				case blocked && g.action == policy.ActionRefused:
					wantRcode = dns.RcodeRefused
				case blocked:
					wantRcode = dns.RcodeNameError
				}
				if resp.Rcode != wantRcode {
					t.Errorf("%s: rcode %s, want %s", tt.qname, dns.RcodeToString[resp.Rcode], dns.RcodeToString[wantRcode])
				}
				if pushed := len(env.enforcer.allowances()) > before; pushed == blocked {
					t.Errorf("%s: firewall push %v, blocked %v", tt.qname, pushed, blocked)
				}
				wantDecision, wantRule := decisionAllow, "default"
				if tt.deny && protected {
					wantRule, wantDecision = ruleRebinding, decisionWouldDeny
					if blocked {
						wantDecision = decisionDeny
					}
				}
				if e.Decision != wantDecision || e.Rule != wantRule {
					t.Errorf("%s: logged %s by %q, want %s by %q", tt.qname, e.Decision, e.Rule, wantDecision, wantRule)
				}
			}
		})
	}
}

func TestLocalAddr(t *testing.T) {
	for _, tt := range []struct {
		addr  string
		local bool
	}{
		{"10.0.0.1", true}, {"172.31.255.255", true}, {"192.168.0.1", true},
		{"100.64.0.1", true}, {"100.127.255.255", true}, {"100.128.0.1", false},
		{"169.254.169.254", true}, {"127.1.2.3", true}, {"0.0.0.0", true}, {"0.1.2.3", true},
		{"::", true}, {"::1", true}, {"fc00::1", true}, {"fdff::1", true}, {"fe80::1", true},
		{"::ffff:192.168.1.1", true},
		{"192.0.2.1", false}, {"8.8.8.8", false}, {"172.32.0.1", false}, {"2001:db8::1", false}, {"fe00::1", false},
	} {
		if got := localAddr(netip.MustParseAddr(tt.addr)); got != tt.local {
			t.Errorf("localAddr(%s) = %v, want %v", tt.addr, got, tt.local)
		}
	}
}
