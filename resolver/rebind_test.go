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
		"public.example.":             {"public.example. 60 IN A 192.0.2.1"},
		"rfc1918.example.":            {"rfc1918.example. 60 IN A 10.1.2.3"},
		"cgnat.example.":              {"cgnat.example. 60 IN A 100.64.1.1"},
		"linklocal.example.":          {"linklocal.example. 60 IN A 169.254.169.254"},
		"loopback.example.":           {"loopback.example. 60 IN A 127.0.0.1"},
		"unspecified.example.":        {"unspecified.example. 60 IN A 0.0.0.0"},
		"mixed.example.":              {"mixed.example. 60 IN A 192.0.2.1", "mixed.example. 60 IN A 192.168.1.1"},
		"cname.example.":              {"cname.example. 60 IN CNAME inside.example.", "inside.example. 60 IN A 172.16.0.1"},
		"v6loopback.example.":         {"v6loopback.example. 60 IN AAAA ::1"},
		"ula.example.":                {"ula.example. 60 IN AAAA fd12:3456::1"},
		"v6linklocal.example.":        {"v6linklocal.example. 60 IN AAAA fe80::1"},
		"mapped.example.":             {"mapped.example. 60 IN AAAA ::ffff:10.0.0.1"},
		"v6public.example.":           {"v6public.example. 60 IN AAAA 2001:db8::1"},
		"printer.lan.":                {"printer.lan. 60 IN A 192.168.1.5"},
		"nas.home.arpa.":              {"nas.home.arpa. 60 IN A 192.168.1.6"},
		"db.corp.internal.":           {"db.corp.internal. 60 IN A 10.0.0.7"},
		"tv.local.":                   {"tv.local. 60 IN A 169.254.1.1"},
		"db.corp.example.":            {"db.corp.example. 60 IN A 10.0.0.8"},
		"5.10.18.198.in-addr.arpa.":   {"5.10.18.198.in-addr.arpa. 60 IN A 192.168.1.5"},
		"x.7.10.18.198.in-addr.arpa.": {"x.7.10.18.198.in-addr.arpa. 60 IN A 10.0.0.5"},
		"x.0.0.0.0.0.0.a.2.ip6.arpa.": {"x.0.0.0.0.0.0.a.2.ip6.arpa. 60 IN AAAA fd00::5"},
		"9.0.0.10.in-addr.arpa.":      {"9.0.0.10.in-addr.arpa. 60 IN A 10.0.0.9"},
		"multicast.example.":          {"multicast.example. 60 IN A 224.0.0.251"},
		"broadcast.example.":          {"broadcast.example. 60 IN A 255.255.255.255"},
		"v6multicast.example.":        {"v6multicast.example. 60 IN AAAA ff02::fb"},
		"v6unspecified.example.":      {"v6unspecified.example. 60 IN AAAA ::"},
		"nat64private.example.":       {"nat64private.example. 60 IN AAAA 64:ff9b::a00:5"},
		"nat64public.example.":        {"nat64public.example. 60 IN AAAA 64:ff9b::c633:6401"},
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
		never bool // never pushed, even where private answers are allowed
	}{
		{"public.example.", dns.TypeA, false, false},
		{"v6public.example.", dns.TypeAAAA, false, false},
		{"rfc1918.example.", dns.TypeA, true, false},
		{"cgnat.example.", dns.TypeA, true, false},
		{"linklocal.example.", dns.TypeA, true, false},
		{"loopback.example.", dns.TypeA, true, false},
		{"unspecified.example.", dns.TypeA, true, true},
		{"multicast.example.", dns.TypeA, true, true},
		{"broadcast.example.", dns.TypeA, true, true},
		{"v6multicast.example.", dns.TypeAAAA, true, true},
		{"v6unspecified.example.", dns.TypeAAAA, true, true},
		{"nat64private.example.", dns.TypeAAAA, true, false}, // NAT64 reaches 10.0.0.5
		{"nat64public.example.", dns.TypeAAAA, false, false},
		{"mixed.example.", dns.TypeA, true, false},
		{"cname.example.", dns.TypeA, true, false}, // the chain ends on a private address
		{"v6loopback.example.", dns.TypeAAAA, true, false},
		{"ula.example.", dns.TypeAAAA, true, false},
		{"v6linklocal.example.", dns.TypeAAAA, true, false},
		{"mapped.example.", dns.TypeAAAA, true, false},
		// Local zones are exempt.
		{"printer.lan.", dns.TypeA, false, false},
		{"nas.home.arpa.", dns.TypeA, false, false},
		{"db.corp.internal.", dns.TypeA, false, false},
		{"tv.local.", dns.TypeA, false, false},
		// Reverse zones are delegated publicly: whoever holds an address
		// block can put any record under its reverse name.
		{"5.10.18.198.in-addr.arpa.", dns.TypeA, true, false},
		{"x.7.10.18.198.in-addr.arpa.", dns.TypeA, true, false},
		{"x.0.0.0.0.0.0.a.2.ip6.arpa.", dns.TypeAAAA, true, false},
		// Zones forwarded to the operator's own servers are trusted.
		{"db.corp.example.", dns.TypeA, false, false},
		{"9.0.0.10.in-addr.arpa.", dns.TypeA, false, false},
		// Static hosts entries are egressd's own answers.
		{"router.example.", dns.TypeA, false, false},
	}
	groups := []struct {
		name        string
		allowGroups map[string]bool
		mode        policy.Mode
		action      policy.Action
	}{
		{"protected, nxdomain", nil, policy.ModeEnforce, policy.ActionNXDomain},
		{"protected, refused", map[string]bool{"other": true}, policy.ModeEnforce, policy.ActionRefused},
		{"group allows private answers", map[string]bool{testGroup: true}, policy.ModeEnforce, policy.ActionNXDomain},
		{"audit mode", nil, policy.ModeAudit, policy.ActionNXDomain},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			env := newEnv(t, Options{
				Upstreams: []string{up.addr},
				CacheSize: 100,
				Zones:     []Zone{{Name: "corp.example", Upstreams: []string{up.addr}}, {Name: "10.in-addr.arpa", Upstreams: []string{up.addr}}},
				Settings: Settings{
					PrivateAnswers: g.allowGroups,
					Hosts:          map[string][]netip.Addr{"router.example.": {netip.MustParseAddr("10.0.0.1")}},
				},
			})
			env.policy.names = map[string]policy.Decision{}
			for _, tt := range tests {
				env.policy.names[tt.qname] = policy.Decision{Verdict: policy.Allow, Group: testGroup, Rule: "default", Mode: g.mode, Action: g.action}
			}
			protected := !g.allowGroups[testGroup]
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
				if pushed := len(env.enforcer.allowances()) > before; pushed != (!blocked && !tt.never) {
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
		{"224.0.0.1", true}, {"239.255.255.250", true}, {"255.255.255.255", true}, {"ff02::1", true}, {"ff0e::1", true},
		{"64:ff9b::a00:1", true}, {"64:ff9b::7f00:1", true}, {"64:ff9b::c0a8:101", true}, {"64:ff9b::c633:6401", false},
		{"192.0.2.1", false}, {"8.8.8.8", false}, {"172.32.0.1", false}, {"2001:db8::1", false}, {"fe00::1", false},
	} {
		if got := localAddr(netip.MustParseAddr(tt.addr)); got != tt.local {
			t.Errorf("localAddr(%s) = %v, want %v", tt.addr, got, tt.local)
		}
	}
}

// TestRebindingLocalNAT64: an address under the network's own NAT64
// prefix (server.nat64_prefixes) reaches the IPv4 address it embeds, so
// one embedding a private address is denied like that address; without
// the prefix set it is an ordinary public IPv6 address.
func TestRebindingLocalNAT64(t *testing.T) {
	t.Cleanup(func() { policy.SetNAT64Prefixes(nil) })
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = mustRRs(t, []string{r.Question[0].Name + " 60 IN AAAA 64:ff9b:1::a00:5"})
		w.WriteMsg(m)
	})
	for _, tc := range []struct {
		name     string
		prefixes []netip.Prefix
		want     int
	}{
		{"local-use prefix not set", nil, dns.RcodeSuccess},
		{"local-use prefix set", []netip.Prefix{netip.MustParsePrefix("64:ff9b:1::/96")}, dns.RcodeNameError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy.SetNAT64Prefixes(tc.prefixes)
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
			env.policy.names = map[string]policy.Decision{"nat64local.example.": {Verdict: policy.Allow, Group: testGroup, Rule: "default", Mode: policy.ModeEnforce, Action: policy.ActionNXDomain}}
			resp := env.serve(t, "127.0.0.1", question("nat64local.example.", dns.TypeAAAA))
			if resp.Rcode != tc.want {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.want])
			}
			if e := env.log.last(t); tc.want != dns.RcodeSuccess && e.Rule != ruleRebinding {
				t.Errorf("logged rule %q, want %q", e.Rule, ruleRebinding)
			}
		})
	}
}
