package policy

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestExplain(t *testing.T) {
	e := compileTestEngine(t)
	srv := netip.MustParseAddr("10.1.2.3")
	type m = Match
	tests := []struct {
		name     string
		client   netip.Addr
		qname    string
		decision string // Decision.Rule
		matches  []Match
	}{
		{
			name: "deeper wildcard decides over shallower ones", client: srv, qname: "A.ok.evil.example.com",
			decision: "*.ok.evil.example.com",
			matches: []Match{
				m{Kind: MatchWildcard, Rule: "*.ok.evil.example.com", Source: "group[servers].allow", Verdict: Allow, Deciding: true},
				m{Kind: MatchWildcard, Rule: "*.evil.example.com", Source: "group[servers].deny", Verdict: Deny},
				m{Kind: MatchWildcard, Rule: "*.example.com", Source: "group[servers].allow", Verdict: Allow},
			},
		},
		{
			name: "tie lists both, only the deny decides", client: srv, qname: "tie.example.org.",
			decision: "tie.example.org",
			matches: []Match{
				m{Kind: MatchExact, Rule: "tie.example.org", Source: "group[servers].deny", Verdict: Deny, Deciding: true},
				m{Kind: MatchExact, Rule: "tie.example.org", Source: "group[servers].allow", Verdict: Allow},
			},
		},
		{
			name: "each merged rule keeps its own ports", client: srv, qname: "api.x.com.",
			decision: "api.x.com:443, api.x.com:8443, api.x.com:8444",
			matches: []Match{
				m{Kind: MatchExact, Rule: "api.x.com:443", Source: "group[servers].allow", Verdict: Allow, Ports: []PortRange{tcp(443, 443)}, Deciding: true},
				m{Kind: MatchExact, Rule: "api.x.com:8443", Source: "group[servers].allow", Verdict: Allow, Ports: []PortRange{tcp(8443, 8443)}, Deciding: true},
				m{Kind: MatchExact, Rule: "api.x.com:8444", Source: "group[servers].allow", Verdict: Allow, Ports: []PortRange{tcp(8444, 8444)}, Deciding: true},
			},
		},
		{
			name: "explicit rule beats a listed category", client: srv, qname: "safe.malware.test.",
			decision: "safe.malware.test",
			matches: []Match{
				m{Kind: MatchExact, Rule: "safe.malware.test", Source: "group[servers].allow", Verdict: Allow, Deciding: true},
				m{Kind: MatchCategory, Rule: "category:malware", Source: "categories.malware", Verdict: Deny},
			},
		},
		{
			name: "denied category decides over permitted", client: srv, qname: "both.test.",
			decision: "category:malware",
			matches: []Match{
				m{Kind: MatchCategory, Rule: "category:malware", Source: "categories.malware", Verdict: Deny, Deciding: true},
				m{Kind: MatchCategory, Rule: "category:business", Source: "categories.business", Verdict: Allow},
			},
		},
		{
			name: "unicode input is explained in punycode", client: srv, qname: "Bücher.de",
			decision: "bücher.de",
			matches: []Match{
				m{Kind: MatchExact, Rule: "bücher.de", Source: "group[servers].allow", Verdict: Allow, Deciding: true},
			},
		},
		{name: "default has no match", client: srv, qname: "unknown.net.", decision: "default"},
		{name: "no group", client: netip.MustParseAddr("192.0.2.1"), qname: "example.com.", decision: "no-group"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ex := e.Explain(tc.client, tc.qname, 28)
			if ex.Decision.Rule != tc.decision {
				t.Errorf("decision rule %q; want %q", ex.Decision.Rule, tc.decision)
			}
			if want := e.Decide(tc.client, ex.Name, 28); !reflect.DeepEqual(ex.Decision, want) {
				t.Errorf("Explain decision %+v differs from Decide %+v", ex.Decision, want)
			}
			if ex.Name != NormalizeName(tc.qname) || ex.QType != 28 || ex.Client != tc.client {
				t.Errorf("explanation header %v %q %d", ex.Client, ex.Name, ex.QType)
			}
			if !reflect.DeepEqual(ex.Matches, tc.matches) {
				t.Errorf("matches\n got %+v\nwant %+v", ex.Matches, tc.matches)
			}
		})
	}
}

func TestMatchKindString(t *testing.T) {
	for k, want := range map[MatchKind]string{MatchExact: "exact", MatchWildcard: "wildcard", MatchCategory: "category", 9: "unknown"} {
		if got := k.String(); got != want {
			t.Errorf("MatchKind(%d).String() = %q; want %q", k, got, want)
		}
	}
}
