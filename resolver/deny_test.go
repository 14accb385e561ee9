package resolver

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
	"github.com/egressd/egressd/policy"
)

func denied(action policy.Action) policy.Decision {
	return policy.Decision{
		Verdict: policy.Deny, Group: testGroup, Rule: "bad.example", Source: "group[servers].deny", Action: action,
		Sinkhole: []netip.Addr{netip.MustParseAddr("192.0.2.99"), netip.MustParseAddr("2001:db8::99")},
	}
}

// answerData lists the answer records' data (addresses), for comparisons.
var answerData = dnstest.AnswerData

func soaOf(m *dns.Msg) *dns.SOA {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa
		}
	}
	return nil
}

func TestDenyActions(t *testing.T) {
	tests := []struct {
		name    string
		action  policy.Action
		qtype   uint16
		rcode   int
		answers []string
		soa     bool
	}{
		{"nxdomain", policy.ActionNXDomain, dns.TypeA, dns.RcodeNameError, nil, true},
		{"nodata", policy.ActionNoData, dns.TypeA, dns.RcodeSuccess, nil, true},
		{"refused", policy.ActionRefused, dns.TypeA, dns.RcodeRefused, nil, false},
		{"sinkhole A", policy.ActionSinkhole, dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.99"}, false},
		{"sinkhole AAAA", policy.ActionSinkhole, dns.TypeAAAA, dns.RcodeSuccess, []string{"2001:db8::99"}, false},
		{"sinkhole MX is nodata", policy.ActionSinkhole, dns.TypeMX, dns.RcodeSuccess, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"x.bad.example. 60 IN A 203.0.113.1"}, nil))
			env := newEnv(t, Options{Upstreams: []string{up.addr}, Settings: Settings{MaxTTL: 30 * time.Second}})
			env.policy.names = map[string]policy.Decision{"x.bad.example.": denied(tt.action)}

			resp := env.serve(t, "127.0.0.1", question("x.bad.example.", tt.qtype))
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if got := answerData(resp); !slices.Equal(got, tt.answers) {
				t.Errorf("answers %v, want %v", got, tt.answers)
			}
			for _, rr := range resp.Answer {
				if rr.Header().Ttl != 30 {
					t.Errorf("sinkhole TTL %d, want it clamped to 30", rr.Header().Ttl)
				}
			}
			soa := soaOf(resp)
			if (soa != nil) != tt.soa {
				t.Fatalf("SOA in authority: %v, want %v", soa != nil, tt.soa)
			}
			if soa != nil && (soa.Hdr.Name != "bad.example." || soa.Minttl != soaMinimum) {
				t.Errorf("SOA %v, want the registrable zone with minimum %d", soa, soaMinimum)
			}
			if n := up.queries.Load(); n != 0 {
				t.Errorf("denied name went upstream %d times", n)
			}
			if a := env.enforcer.allowances(); len(a) != 0 {
				t.Errorf("denied answer pushed to the firewall: %v", a)
			}
			e := env.log.last(t)
			if e.Decision != decisionDeny || e.Rule != "bad.example" || e.Source != "group[servers].deny" || e.Action != tt.action.String() {
				t.Errorf("log entry %+v", e)
			}
		})
	}
}

func TestNoGroupIsRefused(t *testing.T) {
	env := newEnv(t, Options{Upstreams: []string{"127.0.0.1:1"}})
	env.policy.noGroup = true
	resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
	if resp.Rcode != dns.RcodeRefused {
		t.Fatalf("rcode %s, want REFUSED", dns.RcodeToString[resp.Rcode])
	}
	if e := env.log.last(t); e.Decision != decisionRefused || e.Group != "" {
		t.Errorf("log entry %+v", e)
	}
}

// In audit mode a denied name resolves, reaches the firewall, and is
// logged as would_deny with the rule that would have denied it.
func TestAuditModeResolves(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"x.bad.example. 60 IN A 203.0.113.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	d := denied(policy.ActionNXDomain)
	d.Mode = policy.ModeAudit
	env.policy.names = map[string]policy.Decision{"x.bad.example.": d}

	resp := env.serve(t, "127.0.0.1", question("x.bad.example.", dns.TypeA))
	if resp.Rcode != dns.RcodeSuccess || !slices.Equal(answerData(resp), []string{"203.0.113.1"}) {
		t.Fatalf("got %v", resp)
	}
	if e := env.log.last(t); e.Decision != decisionWouldDeny || e.Rule != "bad.example" {
		t.Errorf("log entry %+v", e)
	}
	if a := env.enforcer.allowances(); len(a) != 1 {
		t.Errorf("allowances %v, want one", a)
	}
}

func TestCNAMEToDeniedTarget(t *testing.T) {
	chain := []string{
		"www.example.com. 300 IN CNAME edge.cdn.example.net.",
		"edge.cdn.example.net. 300 IN CNAME tracker.bad.example.",
		"tracker.bad.example. 60 IN A 203.0.113.5",
	}
	target := denied(policy.ActionNXDomain)
	target.Rule, target.Source = "category:tracking", "categories.tracking"
	audit := target
	audit.Mode = policy.ModeAudit
	tests := []struct {
		name     string
		targets  map[string]policy.Decision
		rcode    int
		decision string
		rule     string
		pushed   bool
	}{
		{"target allowed", nil, dns.RcodeSuccess, decisionAllow, "default", true},
		{"last target denied", map[string]policy.Decision{"tracker.bad.example.": target}, dns.RcodeNameError, decisionDeny, "category:tracking", false},
		{"middle target denied", map[string]policy.Decision{"edge.cdn.example.net.": target}, dns.RcodeNameError, decisionDeny, "category:tracking", false},
		{"target denied in audit mode", map[string]policy.Decision{"tracker.bad.example.": audit}, dns.RcodeSuccess, decisionWouldDeny, "category:tracking", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, chain, nil))
			env := newEnv(t, Options{Upstreams: []string{up.addr}})
			env.policy.targets = tt.targets
			resp := env.serve(t, "127.0.0.1", question("www.example.com.", dns.TypeA))
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if tt.rcode == dns.RcodeNameError && len(resp.Answer) != 0 {
				t.Errorf("denied chain still answered: %v", resp.Answer)
			}
			if e := env.log.last(t); e.Decision != tt.decision || e.Rule != tt.rule {
				t.Errorf("logged %q by %q, want %q by %q", e.Decision, e.Rule, tt.decision, tt.rule)
			}
			allows := env.enforcer.allowances()
			if pushed := len(allows) > 0; pushed != tt.pushed {
				t.Fatalf("pushed to firewall: %v, want %v", pushed, tt.pushed)
			}
			if tt.pushed && !slices.Equal(allows[0].IPs, []netip.Addr{netip.MustParseAddr("203.0.113.5")}) {
				t.Errorf("pushed %v, want the address at the end of the chain", allows[0].IPs)
			}
		})
	}
}

func TestDoHCanary(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{`x. 60 IN TXT "from upstream"`}, nil))
	tests := []struct {
		name   string
		canary bool
		qname  string
		rcode  int
		empty  bool
	}{
		{"doh canary", true, "use-application-dns.net.", dns.RcodeNameError, true},
		{"resolver discovery", true, "_dns.resolver.arpa.", dns.RcodeSuccess, true},
		{"canary off", false, "use-application-dns.net.", dns.RcodeSuccess, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, Options{Upstreams: []string{up.addr}, Settings: Settings{DoHCanary: tt.canary}})
			resp := env.serve(t, "127.0.0.1", question(tt.qname, dns.TypeSVCB))
			if resp.Rcode != tt.rcode || (len(resp.Answer) == 0) != tt.empty {
				t.Fatalf("got rcode %s with %d answers", dns.RcodeToString[resp.Rcode], len(resp.Answer))
			}
			if tt.empty && soaOf(resp) == nil {
				t.Error("negative canary answer without SOA")
			}
		})
	}
}

func TestHostsAnswersFollowPolicy(t *testing.T) {
	hosts := map[string][]netip.Addr{"Printer.LAN": {netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5")}}
	env := newEnv(t, Options{Upstreams: []string{"127.0.0.1:1"}, Settings: Settings{Hosts: hosts}})
	tests := []struct {
		qtype   uint16
		answers []string
	}{
		{dns.TypeA, []string{"10.0.0.5"}},
		{dns.TypeAAAA, []string{"fd00::5"}},
		{dns.TypeTXT, nil},
	}
	for _, tt := range tests {
		resp := env.serve(t, "127.0.0.1", question("printer.lan.", tt.qtype))
		if resp.Rcode != dns.RcodeSuccess || !slices.Equal(answerData(resp), tt.answers) {
			t.Errorf("%s: got %v, want %v", dns.TypeToString[tt.qtype], answerData(resp), tt.answers)
		}
	}
	if a := env.enforcer.allowances(); len(a) != 2 {
		t.Errorf("allowances %v, want one per address answer", a)
	}

	env.policy.names = map[string]policy.Decision{"printer.lan.": denied(policy.ActionRefused)}
	if resp := env.serve(t, "127.0.0.1", question("printer.lan.", dns.TypeA)); resp.Rcode != dns.RcodeRefused {
		t.Errorf("denied hosts name: rcode %s, want REFUSED", dns.RcodeToString[resp.Rcode])
	}
}
