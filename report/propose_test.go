package report

import (
	"reflect"
	"slices"
	"testing"
)

// tally builds names from "qname:decision" pairs.
func tally(pairs ...string) []*Name {
	byName := map[string]*Name{}
	var out []*Name
	for i := 0; i < len(pairs); i += 2 {
		n := byName[pairs[i]]
		if n == nil {
			n = &Name{QName: pairs[i]}
			byName[pairs[i]] = n
			out = append(out, n)
		}
		switch pairs[i+1] {
		case "allow":
			n.Allowed++
		case "deny":
			n.Denied++
		case "would_deny":
			n.WouldDeny++
		}
	}
	return out
}

func TestPropose(t *testing.T) {
	fourSubs := []string{"a.example.com", "allow", "b.example.com", "allow", "c.example.com", "would_deny", "d.example.com", "would_deny"}
	tests := []struct {
		name          string
		names         []*Name
		threshold     int
		wantAllow     []string
		wantCollapsed []Collapse
		wantDenied    []string
	}{
		{
			name:      "few subdomains stay individual",
			names:     tally("www.example.com", "allow", "api.example.com", "would_deny", "example.com", "allow"),
			threshold: 3,
			wantAllow: []string{"example.com", "api.example.com", "www.example.com"},
		},
		{
			name:      "exactly the threshold does not collapse",
			names:     tally(fourSubs[:6]...),
			threshold: 3,
			wantAllow: []string{"a.example.com", "b.example.com", "c.example.com"},
		},
		{
			name:          "above the threshold collapses and adds the apex",
			names:         tally(fourSubs...),
			threshold:     3,
			wantAllow:     []string{"example.com", "*.example.com"},
			wantCollapsed: []Collapse{{"example.com", 4}},
		},
		{
			name:          "deeper names count toward their registrable domain",
			names:         tally("a.b.example.com", "allow", "c.d.example.com", "allow", "e.example.com", "allow"),
			threshold:     2,
			wantAllow:     []string{"example.com", "*.example.com"},
			wantCollapsed: []Collapse{{"example.com", 3}},
		},
		{
			name:      "apex does not count as a subdomain",
			names:     tally("example.com", "allow", "a.example.com", "allow", "b.example.com", "allow"),
			threshold: 2,
			wantAllow: []string{"example.com", "a.example.com", "b.example.com"},
		},
		{
			name:      "negative threshold never collapses",
			names:     tally(fourSubs...),
			threshold: -1,
			wantAllow: []string{"a.example.com", "b.example.com", "c.example.com", "d.example.com"},
		},
		{
			name:       "denied names are listed apart, never proposed",
			names:      tally("ads.tracker.net", "deny", "ok.example.net", "allow", "mixed.example.org", "allow", "mixed.example.org", "deny"),
			threshold:  3,
			wantAllow:  []string{"ok.example.net"},
			wantDenied: []string{"ads.tracker.net", "mixed.example.org"},
		},
		{
			name:       "a denied subdomain blocks collapsing its domain",
			names:      tally(append(slices.Clone(fourSubs), "bad.example.com", "deny")...),
			threshold:  3,
			wantAllow:  []string{"a.example.com", "b.example.com", "c.example.com", "d.example.com"},
			wantDenied: []string{"bad.example.com"},
		},
		{
			name:       "a denied apex blocks collapsing too",
			names:      tally(append(slices.Clone(fourSubs), "example.com", "deny")...),
			threshold:  3,
			wantAllow:  []string{"a.example.com", "b.example.com", "c.example.com", "d.example.com"},
			wantDenied: []string{"example.com"},
		},
		{
			name:          "a denied lookalike domain does not block collapsing",
			names:         tally(append(slices.Clone(fourSubs), "notexample.com", "deny")...),
			threshold:     3,
			wantAllow:     []string{"example.com", "*.example.com"},
			wantCollapsed: []Collapse{{"example.com", 4}},
			wantDenied:    []string{"notexample.com"},
		},
		{
			name:      "public suffix rules decide the registrable domain",
			names:     tally("a.shop.co.uk", "allow", "b.shop.co.uk", "allow", "c.other.co.uk", "allow", "d.more.co.uk", "allow"),
			threshold: 2,
			wantAllow: []string{"d.more.co.uk", "c.other.co.uk", "a.shop.co.uk", "b.shop.co.uk"},
		},
		{
			name:      "names without a registrable domain stay as they are",
			names:     tally("localhost", "allow", "co.uk", "would_deny", ".", "allow"),
			threshold: 0,
			wantAllow: []string{".", "localhost", "co.uk"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := propose(tc.names, tc.threshold)
			allow, collapsed, denied := p.allow, p.collapsed, p.denied
			if tc.wantCollapsed == nil {
				tc.wantCollapsed = []Collapse{}
			}
			if tc.wantDenied == nil {
				tc.wantDenied = []string{}
			}
			if !reflect.DeepEqual(allow, tc.wantAllow) {
				t.Errorf("allow = %q, want %q", allow, tc.wantAllow)
			}
			if !reflect.DeepEqual(collapsed, tc.wantCollapsed) {
				t.Errorf("collapsed = %v, want %v", collapsed, tc.wantCollapsed)
			}
			if !reflect.DeepEqual(denied, tc.wantDenied) {
				t.Errorf("denied = %q, want %q", denied, tc.wantDenied)
			}
		})
	}
}

func TestProposeIsDeterministic(t *testing.T) {
	names := tally("a.example.com", "allow", "z.example.net", "allow", "b.example.com", "would_deny", "m.example.org", "allow")
	first := propose(names, 3).allow
	for range 20 {
		slices.Reverse(names)
		again := propose(names, 3).allow
		if !slices.Equal(first, again) {
			t.Fatalf("input order changed the proposal: %q vs %q", first, again)
		}
	}
}

func TestCompareDomains(t *testing.T) {
	want := []string{".", "example.com", "*.example.com", "a.example.com", "b.a.example.com", "www.example.com", "localhost", "example.net"}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, compareDomains)
	if !slices.Equal(got, want) {
		t.Errorf("sorted %q, want %q", got, want)
	}
}

func TestTOMLString(t *testing.T) {
	tests := map[string]string{
		"example.com":   `"example.com"`,
		`a"b`:           `"a\"b"`,
		`a\b`:           `"a\\b"`,
		"tab\there":     `"tab\there"`,
		"nul\x00\x1f":   `"nul\u0000\u001F"`,
		"del\x7f":       `"del\u007F"`,
		"bücher.de":     `"bücher.de"`,
		"line\nbreak":   `"line\nbreak"`,
		"*.example.org": `"*.example.org"`,
	}
	for in, want := range tests {
		if got := tomlString(in); got != want {
			t.Errorf("tomlString(%q) = %s, want %s", in, got, want)
		}
	}
}
