package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakePolicy stands for the running configuration.
type fakePolicy struct {
	denies       map[string]string // "group name" → rule
	defaultAllow map[string]bool
}

func (p fakePolicy) DeniedBy(group, name string) string { return p.denies[group+" "+name] }
func (p fakePolicy) DefaultAllow(group string) bool     { return p.defaultAllow[group] }

// logOf writes query log lines "group qname decision rule" to a file.
func logOf(t *testing.T, lines ...string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		f := strings.Fields(l)
		fmt.Fprintf(&b, `{"time":"2026-01-01T10:00:00Z","client":"10.0.0.5","group":%q,"qname":%q,"qtype":"A","decision":%q,"rule":%q}`+"\n", f[0], f[1]+".", f[2], f[3])
	}
	p := filepath.Join(t.TempDir(), "q.log")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// randomLabels returns n distinct labels that look like encoded data, as
// a DNS tunnel (iodine, dnscat2) sends them.
func randomLabels(n int) []string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	x := uint32(2463534242)
	out := make([]string, n)
	for i := range out {
		b := make([]byte, 20)
		for j := range b {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			b[j] = alphabet[x%uint32(len(alphabet))]
		}
		out[i] = string(b)
	}
	return out
}

func groupNamed(t *testing.T, r *Report, name string) *Group {
	t.Helper()
	for _, g := range r.Groups {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no group %q in the report", name)
	return nil
}

// The report never proposes what the group's deny rules or deny
// categories deny (seen in the log's rule, or in the configuration), flags
// a burst of random-looking subdomains instead of collapsing it into a
// wildcard, and proposes nothing for groups whose default is allow.
func TestReportRespectsPolicy(t *testing.T) {
	lines := []string{
		// Audit mode: the doh-resolvers category would deny dns.google.
		"lan dns.google would_deny category:doh-resolvers",
		"lan files.example.net would_deny files.example.net",
		// Logged before the category existed; the configuration denies it now.
		"lan doh.example.net allow default",
		"lan www.example.org would_deny default",
		// Ordinary subdomains still collapse.
		"lan www.example.com would_deny default",
		"lan api.example.com would_deny default",
		"lan cdn.example.com would_deny default",
		"lan mail.example.com would_deny default",
		// The configuration gives this group default = "allow".
		"cfgopen other.example.net would_deny default",
	}
	for _, l := range randomLabels(25) {
		lines = append(lines, "lan "+l+".t.example.info would_deny default")
	}
	pol := fakePolicy{
		denies:       map[string]string{"lan doh.example.net": "category:doh-resolvers"},
		defaultAllow: map[string]bool{"cfgopen": true},
	}
	r, err := Run([]string{logOf(t, lines...)}, Options{Policy: pol})
	if err != nil {
		t.Fatal(err)
	}

	lan := groupNamed(t, r, "lan")
	wantAllow := []string{"example.com", "*.example.com", "www.example.org"}
	if !slices.Equal(lan.Allow, wantAllow) {
		t.Errorf("lan proposed %q, want %q", lan.Allow, wantAllow)
	}
	wantDenied := []PolicyDenial{
		{QName: "dns.google", Rule: "category:doh-resolvers"},
		{QName: "files.example.net", Rule: "files.example.net"},
		{QName: "doh.example.net", Rule: "category:doh-resolvers"},
	}
	slices.SortFunc(wantDenied, func(a, b PolicyDenial) int { return compareDomains(a.QName, b.QName) })
	if !slices.Equal(lan.PolicyDenied, wantDenied) {
		t.Errorf("policy denied %v, want %v", lan.PolicyDenied, wantDenied)
	}
	if len(lan.Tunnelling) != 1 || lan.Tunnelling[0].Domain != "example.info" || lan.Tunnelling[0].Subdomains != 25 || lan.Tunnelling[0].RandomLooking != 25 {
		t.Errorf("tunnelling %+v, want example.info with 25 random-looking subdomains", lan.Tunnelling)
	}
	for _, a := range lan.Allow {
		if strings.HasSuffix(a, "example.info") {
			t.Errorf("proposed %q from a tunnelling burst", a)
		}
	}

	if g := groupNamed(t, r, "cfgopen"); !g.DefaultAllow || len(g.Allow) != 0 {
		t.Errorf("default_allow %v, proposed %q; want nothing proposed", g.DefaultAllow, g.Allow)
	}

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	assertContains(t, text.String(),
		"denied by the group's policy, not proposed:",
		"dns.google (category:doh-resolvers)",
		"possible DNS tunnelling, not proposed: example.info: 25 subdomains, 25 random-looking",
		`group "cfgopen"`, "default is allow: nothing to propose",
	)
}

// Without a configuration the log's rule still keeps denied names out,
// and a name allowed by the default shows a group whose default is allow.
func TestReportWithoutPolicyUsesLoggedRule(t *testing.T) {
	r, err := Run([]string{logOf(t,
		"lan dns.google would_deny category:doh-resolvers",
		"lan ok.example.com would_deny default",
		"open anything.example.net allow default",
		"open more.example.net allow *.example.net",
	)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g := groupNamed(t, r, "lan"); !slices.Equal(g.Allow, []string{"ok.example.com"}) || g.DefaultAllow {
		t.Errorf("lan proposed %q, default_allow %v", g.Allow, g.DefaultAllow)
	}
	if g := groupNamed(t, r, "open"); !g.DefaultAllow || len(g.Allow) != 0 {
		t.Errorf("open: default_allow %v, proposed %q; want nothing proposed", g.DefaultAllow, g.Allow)
	}
}

// Ordinary service names (short, or words with few digits) are no burst.
func TestRandomLooking(t *testing.T) {
	tests := map[string]bool{
		"www": false, "api": false, "mail": false, "cdn-eu-west-1": false, "accounts-central": false,
		"r3---sn-4g5e6nsz": false, "e1234.dscb": false, "static.assets": false,
		"k2m9q4w8e1x7z3b5": true, "mzxw6ytboi3dmnrxgi2dm": true, "4f1c9a7e2b8d03c6e5a9": true,
	}
	for label, want := range tests {
		if got := randomLooking(label); got != want {
			t.Errorf("randomLooking(%q) = %v, want %v", label, got, want)
		}
	}
	for _, l := range randomLabels(25) {
		if !randomLooking(l) {
			t.Errorf("randomLooking(%q) = false", l)
		}
	}
}

func assertContains(t *testing.T, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks %q:\n%s", w, got)
		}
	}
}
