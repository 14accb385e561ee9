package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchEngine compiles 20 groups of 500 rules each (10,000 rules): per
// group 250 exact allows, 150 wildcard allows (some port-scoped), 50 exact
// denies and 50 wildcard denies, plus two categories over 5,000 domains.
func benchEngine(b *testing.B) *Engine {
	b.Helper()
	const groups, perGroup = 20, 500
	specs := make([]GroupSpec, groups)
	for g := range groups {
		s := GroupSpec{
			Name:            fmt.Sprintf("g%02d", g),
			Clients:         prefixes(fmt.Sprintf("10.%d.0.0/16", g), fmt.Sprintf("2001:db8:%x::/48", g)),
			AllowCategories: []string{"business"},
			DenyCategories:  []string{"malware"},
		}
		for i := range perGroup {
			switch {
			case i < 250:
				s.Allow = append(s.Allow, fmt.Sprintf("host%d.svc%d.example.com", i, g))
			case i < 400:
				port := ""
				if i%3 == 0 {
					port = fmt.Sprintf(":%d", 8000+i)
				}
				s.Allow = append(s.Allow, fmt.Sprintf("*.zone%d.svc%d.example.net%s", i, g, port))
			case i < 450:
				s.Deny = append(s.Deny, fmt.Sprintf("bad%d.svc%d.example.com", i, g))
			default:
				s.Deny = append(s.Deny, fmt.Sprintf("*.evil%d.example.org", i))
			}
		}
		specs[g] = s
	}
	m := fakeMatcher{}
	for i := range 5000 {
		m[fmt.Sprintf("listed%d.test.", i)] = uint64(1) << (i % 2)
	}
	e, err := Compile(specs, testCategoryBits, m)
	if err != nil {
		b.Fatalf("Compile: %v", err)
	}
	return e
}

func BenchmarkDecide(b *testing.B) {
	e := benchEngine(b)
	v4 := netip.MustParseAddr("10.7.1.2")
	v6 := netip.MustParseAddr("2001:db8:7::1")
	cases := []struct {
		name   string
		client netip.Addr
		qname  string
		rule   string
	}{
		{"hit/exact", v4, "host100.svc7.example.com.", "host100.svc7.example.com"},
		{"hit/wildcard-deep", v4, "a.b.c.zone300.svc7.example.net.", "*.zone300.svc7.example.net:8300"},
		{"hit/deny-wildcard", v4, "x.evil470.example.org.", "*.evil470.example.org"},
		{"hit/exact-ipv6", v6, "host100.svc7.example.com.", "host100.svc7.example.com"},
		{"hit/exact-mixed-case", v4, "Host100.SVC7.example.com", "host100.svc7.example.com"},
		{"hit/category", v4, "www.listed40.test.", "category:malware"},
		{"miss/default", v4, "www.unlisted.example.io.", "default"},
		{"miss/default-mixed-case", v4, "WWW.Unlisted.Example.IO.", "default"},
		{"miss/no-group", netip.MustParseAddr("192.0.2.1"), "host100.svc7.example.com.", "no-group"},
	}
	for _, tc := range cases {
		if d := e.Decide(tc.client, tc.qname, 1); d.Rule != tc.rule {
			b.Fatalf("%s: Decide chose %q; want %q", tc.name, d.Rule, tc.rule)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = e.Decide(tc.client, tc.qname, 1)
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = benchEngine(b)
	}
}
