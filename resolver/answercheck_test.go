package resolver

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/policy"
)

// pushedIPs is every address the enforcer was given, in push order.
func pushedIPs(e *fakeEnforcer) []netip.Addr {
	var ips []netip.Addr
	for _, a := range e.allowances() {
		ips = append(ips, a.IPs...)
	}
	return ips
}

func addrs(texts ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range texts {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// longChain is a CNAME chain of hops records from start, ending at last,
// which owns an A record with addr.
func longChain(start string, hops int, last, addr string) []string {
	var rrs []string
	name := start
	for i := 1; i <= hops; i++ {
		next := fmt.Sprintf("hop%d.chain.example.", i)
		if i == hops {
			next = last
		}
		rrs = append(rrs, fmt.Sprintf("%s 60 IN CNAME %s", name, next))
		name = next
	}
	return append(rrs, fmt.Sprintf("%s 60 IN A %s", last, addr))
}

// A chain longer than maxChainHops cannot be checked to its end, so it is
// never answered: whatever it ends at, the client gets SERVFAIL and the
// firewall nothing.
func TestCNAMEChainHopLimit(t *testing.T) {
	bad := denied(policy.ActionNXDomain)
	bad.Rule, bad.Source = "evil.example", "group[servers].deny"
	loop := []string{
		"www.example. 60 IN CNAME a.example.",
		"a.example. 60 IN CNAME b.example.",
		"b.example. 60 IN CNAME a.example.",
		"a.example. 60 IN A 198.51.100.9",
	}
	tests := []struct {
		name     string
		chain    []string
		rcode    int
		decision string
		rule     string
		pushed   []netip.Addr
	}{
		{"16 hops to a public address", longChain("www.example.", maxChainHops, "end.example.", "198.51.100.1"), dns.RcodeSuccess, decisionAllow, "default", addrs("198.51.100.1")},
		{"16 hops to a denied name", longChain("www.example.", maxChainHops, "evil.example.", "198.51.100.1"), dns.RcodeNameError, decisionDeny, "evil.example", nil},
		{"16 hops to a private address", longChain("www.example.", maxChainHops, "end.example.", "10.0.0.5"), dns.RcodeNameError, decisionDeny, ruleRebinding, nil},
		{"17 hops to a public address", longChain("www.example.", maxChainHops+1, "end.example.", "198.51.100.1"), dns.RcodeServerFailure, decisionDeny, ruleChainTooLong, nil},
		{"17 hops to a denied name", longChain("www.example.", maxChainHops+1, "evil.example.", "198.51.100.1"), dns.RcodeServerFailure, decisionDeny, ruleChainTooLong, nil},
		{"17 hops to a private address", longChain("www.example.", maxChainHops+1, "end.example.", "10.0.0.5"), dns.RcodeServerFailure, decisionDeny, ruleChainTooLong, nil},
		{"40 hops to a private address", longChain("www.example.", 40, "end.example.", "10.0.0.5"), dns.RcodeServerFailure, decisionDeny, ruleChainTooLong, nil},
		{"a loop", loop, dns.RcodeServerFailure, decisionDeny, ruleChainTooLong, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, tt.chain, nil))
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
			env.policy.targets = map[string]policy.Decision{"evil.example.": bad}
			for i := range 2 { // a miss, then a cache hit
				resp := env.serve(t, "127.0.0.1", question("www.example.", dns.TypeA))
				if resp.Rcode != tt.rcode {
					t.Fatalf("query %d: rcode %s, want %s", i, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
				}
				if tt.rcode != dns.RcodeSuccess && len(resp.Answer) != 0 {
					t.Errorf("query %d: refused chain still answered: %v", i, resp.Answer)
				}
				if e := env.log.last(t); e.Decision != tt.decision || e.Rule != tt.rule {
					t.Errorf("query %d: logged %q by %q, want %q by %q", i, e.Decision, e.Rule, tt.decision, tt.rule)
				}
			}
			want := slices.Concat(tt.pushed, tt.pushed) // once per query
			if got := pushedIPs(env.enforcer); !slices.Equal(got, want) {
				t.Errorf("pushed %v, want %v", got, want)
			}
		})
	}
}

// Address records beside the chain: an upstream may put records for the
// query name next to its CNAME, or for names off the chain anywhere in
// the message. Records of names on the chain are checked and pushed like
// the chain's end; address records of other names are stripped, so no
// client can use an address that was not checked.
func TestRecordsBesideTheChain(t *testing.T) {
	tests := []struct {
		name     string
		answer   []string
		extra    []string
		rcode    int
		rule     string
		sent     []string // addresses in the response, any section
		pushed   []netip.Addr
		stripped []string // owner names whose records must not reach the client
	}{
		{
			name:   "private A beside the CNAME of the query name",
			answer: []string{"x.example. 60 IN A 10.0.0.5", "x.example. 60 IN CNAME pub.example.", "pub.example. 60 IN A 198.51.100.1"},
			rcode:  dns.RcodeNameError, rule: ruleRebinding,
		},
		{
			name:   "public A beside the CNAME of the query name",
			answer: []string{"x.example. 60 IN A 203.0.113.7", "x.example. 60 IN CNAME pub.example.", "pub.example. 60 IN A 198.51.100.1"},
			rcode:  dns.RcodeSuccess, rule: "default",
			sent: []string{"203.0.113.7", "198.51.100.1"}, pushed: addrs("203.0.113.7", "198.51.100.1"),
		},
		{
			name:   "A of a middle name of the chain",
			answer: []string{"x.example. 60 IN CNAME mid.example.", "mid.example. 60 IN A 10.0.0.6", "mid.example. 60 IN CNAME pub.example.", "pub.example. 60 IN A 198.51.100.1"},
			rcode:  dns.RcodeNameError, rule: ruleRebinding,
		},
		{
			name:   "records of names off the chain are stripped",
			answer: []string{"x.example. 60 IN CNAME pub.example.", "pub.example. 60 IN A 198.51.100.1", "other.example. 60 IN A 10.0.0.7", "other.example. 60 IN AAAA 2001:db8::7", "other.example. 60 IN HTTPS 1 . ipv4hint=10.0.0.8"},
			extra:  []string{"glue.example. 60 IN A 203.0.113.9", "pub.example. 60 IN AAAA 2001:db8::9"},
			rcode:  dns.RcodeSuccess, rule: "default",
			sent: []string{"198.51.100.1"}, pushed: addrs("198.51.100.1"),
			stripped: []string{"other.example.", "glue.example."},
		},
		{
			name:   "other record types off the chain stay",
			answer: []string{"x.example. 60 IN A 198.51.100.1", "other.example. 60 IN TXT \"hello\""},
			rcode:  dns.RcodeSuccess, rule: "default",
			sent: []string{"198.51.100.1"}, pushed: addrs("198.51.100.1"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := mustRRs(t, tt.extra)
			an := mustRRs(t, tt.answer)
			up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
				m := new(dns.Msg)
				m.SetReply(r)
				m.Answer, m.Extra = an, extra
				w.WriteMsg(m)
			})
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
			for i := range 2 { // a miss, then a cache hit
				resp := env.serve(t, "127.0.0.1", question("x.example.", dns.TypeA))
				if resp.Rcode != tt.rcode {
					t.Fatalf("query %d: rcode %s, want %s", i, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
				}
				if e := env.log.last(t); e.Rule != tt.rule {
					t.Errorf("query %d: logged rule %q, want %q", i, e.Rule, tt.rule)
				}
				var sent []string
				for _, rr := range slices.Concat(resp.Answer, resp.Ns, resp.Extra) {
					switch v := rr.(type) {
					case *dns.A:
						sent = append(sent, v.A.String())
					case *dns.AAAA:
						sent = append(sent, v.AAAA.String())
					}
					if slices.Contains(tt.stripped, rr.Header().Name) {
						if _, txt := rr.(*dns.TXT); !txt {
							t.Errorf("query %d: record off the chain reached the client: %v", i, rr)
						}
					}
				}
				if !slices.Equal(sent, tt.sent) {
					t.Errorf("query %d: addresses sent %v, want %v", i, sent, tt.sent)
				}
			}
			want := slices.Concat(tt.pushed, tt.pushed)
			if got := pushedIPs(env.enforcer); !slices.Equal(got, want) {
				t.Errorf("pushed %v, want %v", got, want)
			}
		})
	}
}

// The target of an HTTPS or SVCB record is where the client connects (with
// the record's address hints), so it is checked like a CNAME target, in
// ServiceMode and in AliasMode.
func TestSVCBTargetChecked(t *testing.T) {
	bad := denied(policy.ActionNXDomain)
	bad.Rule, bad.Source = "evil.example", "group[servers].deny"
	audit := bad
	audit.Mode = policy.ModeAudit
	tests := []struct {
		name     string
		qtype    uint16
		answer   []string
		targets  map[string]policy.Decision
		rcode    int
		decision string
		pushed   []netip.Addr
	}{
		{"service mode, denied target", dns.TypeHTTPS, []string{"svc.example. 60 IN HTTPS 1 evil.example. alpn=h2 ipv4hint=198.51.100.7"},
			map[string]policy.Decision{"evil.example.": bad}, dns.RcodeNameError, decisionDeny, nil},
		{"service mode, denied target in audit mode", dns.TypeHTTPS, []string{"svc.example. 60 IN HTTPS 1 evil.example. alpn=h2 ipv4hint=198.51.100.7"},
			map[string]policy.Decision{"evil.example.": audit}, dns.RcodeSuccess, decisionWouldDeny, addrs("198.51.100.7")},
		{"alias mode, denied target", dns.TypeHTTPS, []string{"svc.example. 60 IN HTTPS 0 evil.example."},
			map[string]policy.Decision{"evil.example.": bad}, dns.RcodeNameError, decisionDeny, nil},
		{"SVCB, denied target", dns.TypeSVCB, []string{"_dns.svc.example. 60 IN SVCB 1 evil.example. ipv6hint=2001:db8::7"},
			map[string]policy.Decision{"evil.example.": bad}, dns.RcodeNameError, decisionDeny, nil},
		{"denied target behind a CNAME", dns.TypeHTTPS, []string{"svc.example. 60 IN CNAME cdn.example.", "cdn.example. 60 IN HTTPS 1 evil.example. ipv4hint=198.51.100.7"},
			map[string]policy.Decision{"evil.example.": bad}, dns.RcodeNameError, decisionDeny, nil},
		{"allowed target", dns.TypeHTTPS, []string{"svc.example. 60 IN HTTPS 1 pool.example. ipv4hint=198.51.100.7"},
			nil, dns.RcodeSuccess, decisionAllow, addrs("198.51.100.7")},
		{"dot target is the owner", dns.TypeHTTPS, []string{"svc.example. 60 IN HTTPS 1 . ipv4hint=198.51.100.7"},
			map[string]policy.Decision{".": bad}, dns.RcodeSuccess, decisionAllow, addrs("198.51.100.7")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, tt.answer, nil))
			env := newEnv(t, Options{Upstreams: []string{up.addr}})
			env.policy.targets = tt.targets
			qname := strings.Fields(tt.answer[0])[0]
			resp := env.serve(t, "127.0.0.1", question(qname, tt.qtype))
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if e := env.log.last(t); e.Decision != tt.decision {
				t.Errorf("logged %q by %q, want %q", e.Decision, e.Rule, tt.decision)
			}
			if got := pushedIPs(env.enforcer); !slices.Equal(got, tt.pushed) {
				t.Errorf("pushed %v, want %v", got, tt.pushed)
			}
		})
	}
}

// No TTL a client gets may outlive the firewall element its answer
// created: every record, whoever owns it and whatever section it is in,
// carries at most the allowance TTL, on a miss, on a cache hit served by a
// worker and on one the UDP reader answers itself.
func TestTTLsAtMostTheAllowance(t *testing.T) {
	answer := []string{
		"www.example. 300 IN CNAME edge.example.",
		"edge.example. 30 IN A 198.51.100.1",
		"www.example. 3600 IN TXT \"beside\"",
		"other.example. 86400 IN TXT \"off the chain\"",
	}
	authority := []string{"example. 86400 IN NS ns.example."}
	const allowance = 30 // the smallest TTL on the chain
	for _, tc := range []struct {
		name     string
		inEffect bool // the reader answers hits itself
	}{{"hits served by a worker", false}, {"hits served by the reader", true}} {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, answer, authority))
			enf := &checkingEnforcer{inEffect: tc.inEffect}
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, Enforcer: enf, Settings: Settings{MaxTTL: time.Hour}})
			addr := env.start(t)
			start := env.clock.Now()
			for i, age := range []uint32{0, 10, 29} {
				env.clock.Advance(start.Add(time.Duration(age) * time.Second).Sub(env.clock.Now()))
				resp := exchange(t, "udp", addr, question("www.example.", dns.TypeA))
				if len(resp.Answer) != len(answer) {
					t.Fatalf("age %d: answer %v", age, resp.Answer)
				}
				limit := uint32(allowance) - age
				for _, rr := range slices.Concat(resp.Answer, resp.Ns, resp.Extra) {
					if rr.Header().Rrtype != dns.TypeOPT && rr.Header().Ttl > limit {
						t.Errorf("age %d: %v has TTL %d, more than the allowance's %d", age, rr, rr.Header().Ttl, limit)
					}
				}
				// The entry is written after the answer is sent.
				waitFor(t, func() bool {
					env.log.mu.Lock()
					defer env.log.mu.Unlock()
					return len(env.log.entries) == i+1
				})
				if e := env.log.last(t); e.TTL != limit {
					t.Errorf("age %d: logged TTL %d, want %d", age, e.TTL, limit)
				}
			}
			allows := enf.allowances()
			if len(allows) == 0 || allows[0].TTL != allowance*time.Second {
				t.Fatalf("allowances %v, want the first with TTL %ds", allows, allowance)
			}
			wantChecks := int32(0)
			if tc.inEffect {
				wantChecks = 2 // both hits answered by the reader
			}
			if n := enf.checks.Load(); tc.inEffect && n != wantChecks {
				t.Errorf("InEffect asked %d times, want %d", n, wantChecks)
			}
			if !tc.inEffect && len(allows) != 3 {
				t.Errorf("%d pushes, want 3 (hits not in effect go to a worker)", len(allows))
			}
		})
	}
}

// TestUpstreamOPTNotPassedOn: newAnswer keeps no OPT record of the
// upstream's, in any section. In the answer or authority section one
// breaks RFC 6891, and its TTL field (extended RCODE, version, flags) is
// no TTL the allowance clamps: it used to reach clients unclamped.
func TestUpstreamOPTNotPassedOn(t *testing.T) {
	opt := func() *dns.OPT {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(4096)
		o.SetVersion(48)
		o.SetDo()
		return o
	}
	for _, section := range []string{"answer", "authority", "additional"} {
		m := new(dns.Msg)
		m.SetQuestion("x.example.", dns.TypeA)
		m.Response = true
		m.Answer = mustRRs(t, []string{"x.example. 60 IN A 198.51.100.1"})
		switch section {
		case "answer":
			m.Answer = append(m.Answer, opt())
		case "authority":
			m.Ns = append(m.Ns, opt())
		default:
			m.Extra = append(m.Extra, opt())
		}
		a, err := newAnswer(m, "x.example.")
		if err != nil {
			t.Fatalf("%s: %v", section, err)
		}
		var out dns.Msg
		if err := out.Unpack(a.wire); err != nil {
			t.Fatalf("%s: %v", section, err)
		}
		for _, rr := range slices.Concat(out.Answer, out.Ns, out.Extra) {
			if rr.Header().Rrtype == dns.TypeOPT {
				t.Errorf("an OPT record in the upstream's %s section is kept: %v", section, rr)
			}
		}
		if len(out.Answer) != 1 || a.answerTTL != 60 {
			t.Errorf("OPT in the %s section: answer section %v, allowance TTL %d; want the A record alone, 60", section, out.Answer, a.answerTTL)
		}
	}
}

// deny_addresses: addresses a group never gets, whatever name leads there
// and whichever record carries them.
func TestDenyAddresses(t *testing.T) {
	zone := map[string][]string{
		"meta.example.":   {"meta.example. 60 IN A 169.254.169.254"},
		"doh.example.":    {"doh.example. 60 IN A 192.0.2.53"},
		"doh6.example.":   {"doh6.example. 60 IN AAAA 2001:db8:53::1"},
		"nat64.example.":  {"nat64.example. 60 IN AAAA 64:ff9b::c000:235"},
		"hint.example.":   {"hint.example. 60 IN HTTPS 1 . ipv4hint=198.51.100.1,192.0.2.53"},
		"cname.example.":  {"cname.example. 60 IN CNAME doh.example.", "doh.example. 60 IN A 192.0.2.53"},
		"public.example.": {"public.example. 60 IN A 198.51.100.1"},
	}
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = mustRRs(t, zone[r.Question[0].Name])
		w.WriteMsg(m)
	})
	deny := []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32"), netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:53::/48")}
	tests := []struct {
		qname string
		qtype uint16
		rule  string // "" when allowed
	}{
		{"meta.example.", dns.TypeA, "169.254.169.254/32"},
		{"doh.example.", dns.TypeA, "192.0.2.0/24"},
		{"doh6.example.", dns.TypeAAAA, "2001:db8:53::/48"},
		{"nat64.example.", dns.TypeAAAA, "192.0.2.0/24"}, // NAT64 reaches the embedded IPv4 address
		{"hint.example.", dns.TypeHTTPS, "192.0.2.0/24"},
		{"cname.example.", dns.TypeA, "192.0.2.0/24"},
		{"public.example.", dns.TypeA, ""},
		{"hosts.example.", dns.TypeA, "192.0.2.0/24"}, // static hosts are no exception
	}
	for _, mode := range []policy.Mode{policy.ModeEnforce, policy.ModeAudit} {
		t.Run(mode.String(), func(t *testing.T) {
			env := newEnv(t, Options{
				Upstreams: []string{up.addr},
				CacheSize: 100,
				Settings: Settings{
					PrivateAnswers: map[string]bool{testGroup: true},
					Hosts:          map[string][]netip.Addr{"hosts.example.": addrs("192.0.2.80")},
				},
			})
			env.policy.names = map[string]policy.Decision{}
			for _, tt := range tests {
				env.policy.names[tt.qname] = policy.Decision{Verdict: policy.Allow, Group: testGroup, Rule: "default", Action: policy.ActionRefused, Mode: mode, DenyAddresses: deny}
			}
			for _, tt := range tests {
				before := len(env.enforcer.allowances())
				resp := env.serve(t, "127.0.0.1", question(tt.qname, tt.qtype))
				e := env.log.last(t)
				blocked := tt.rule != "" && mode == policy.ModeEnforce
				wantRcode, wantDecision, wantRule, wantSource := dns.RcodeSuccess, decisionAllow, "default", ""
				if tt.rule != "" {
					wantDecision, wantRule, wantSource = decisionWouldDeny, tt.rule, "group[servers].deny_addresses"
				}
				if blocked {
					wantRcode, wantDecision = dns.RcodeRefused, decisionDeny
				}
				if resp.Rcode != wantRcode {
					t.Errorf("%s: rcode %s, want %s", tt.qname, dns.RcodeToString[resp.Rcode], dns.RcodeToString[wantRcode])
				}
				if e.Decision != wantDecision || e.Rule != wantRule || (wantSource != "" && e.Source != wantSource) {
					t.Errorf("%s: logged %s by %q from %q, want %s by %q from %q", tt.qname, e.Decision, e.Rule, e.Source, wantDecision, wantRule, wantSource)
				}
				if pushed := len(env.enforcer.allowances()) > before; pushed == blocked {
					t.Errorf("%s: firewall push %v, blocked %v", tt.qname, pushed, blocked)
				}
			}
		})
	}
}

// Multicast, broadcast and unspecified addresses are never destinations a
// group may be granted, even where private answers are allowed: the answer
// goes out, the firewall gets nothing for them.
func TestNeverPushedAddresses(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{
		"x.example. 60 IN A 198.51.100.1",
		"x.example. 60 IN A 224.0.0.251",
		"x.example. 60 IN A 255.255.255.255",
		"x.example. 60 IN A 0.0.0.0",
		"x.example. 60 IN A 10.0.0.5",
	}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, Settings: Settings{PrivateAnswers: map[string]bool{testGroup: true}}})
	resp := env.serve(t, "127.0.0.1", question("x.example.", dns.TypeA))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 5 {
		t.Fatalf("got %v", resp)
	}
	if got, want := pushedIPs(env.enforcer), addrs("198.51.100.1", "10.0.0.5"); !slices.Equal(got, want) {
		t.Errorf("pushed %v, want %v", got, want)
	}
}

// FuzzNewAnswer holds newAnswer to what the request path relies on, for
// any upstream message: every address a client can find in the packed
// answer is one the path checks (answer.addrs), no TTL exceeds the
// allowance TTL, and an overlong chain is never cached.
func FuzzNewAnswer(f *testing.F) {
	seeds := [][]string{
		{"x.example. 60 IN A 10.0.0.5", "x.example. 60 IN CNAME pub.example.", "pub.example. 30 IN A 198.51.100.1", "other.example. 600 IN A 203.0.113.1"},
		{"x.example. 60 IN HTTPS 1 . ipv4hint=198.51.100.7", "y.example. 60 IN SVCB 1 . ipv6hint=2001:db8::1"},
		longChain("x.example.", maxChainHops+1, "end.example.", "10.0.0.5"),
	}
	for _, rrs := range seeds {
		m := new(dns.Msg)
		m.SetQuestion("x.example.", dns.TypeA)
		m.Response = true
		m.Answer = mustRRs(f, rrs)
		m.Extra = mustRRs(f, []string{"glue.example. 60 IN A 192.0.2.1"})
		raw, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m dns.Msg
		if m.Unpack(raw) != nil || len(m.Question) != 1 {
			return
		}
		// miekg/dns unpacks some malformed records (an SOA cut short) into
		// values it then packs into bytes it cannot read back; that is the
		// library's round trip, not newAnswer's work.
		if plain, err := m.Pack(); err != nil || new(dns.Msg).Unpack(plain) != nil {
			return
		}
		a, err := newAnswer(&m, normalizeName(m.Question[0].Name))
		if err != nil {
			return
		}
		var out dns.Msg
		if err := out.Unpack(a.wire); err != nil {
			t.Fatalf("packed answer does not parse: %v", err)
		}
		for _, rr := range slices.Concat(out.Answer, out.Ns, out.Extra) {
			if rr.Header().Ttl > a.answerTTL {
				t.Errorf("%v: TTL over the allowance's %d", rr, a.answerTTL)
			}
			var found []netip.Addr
			switch v := rr.(type) {
			case *dns.A:
				found = appendIP(nil, v.A)
			case *dns.AAAA:
				found = appendIP(nil, v.AAAA)
			case *dns.HTTPS:
				found = appendHints(nil, &v.SVCB)
			case *dns.SVCB:
				found = appendHints(nil, v)
			}
			for _, ip := range found {
				if !slices.Contains(a.addrs, ip) {
					t.Errorf("%v: address %s reaches the client unchecked (checked: %v)", rr, ip, a.addrs)
				}
			}
		}
		if a.overlong && a.cacheTTL != 0 {
			t.Errorf("overlong chain cached for %ds", a.cacheTTL)
		}
	})
}
