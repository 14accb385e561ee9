package policy

import (
	"net/netip"
	"reflect"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

var testGroups = []GroupSpec{
	{
		Name:    "servers",
		Clients: prefixes("10.1.0.0/16", "2001:db8:1::/48"),
		Allow: []string{
			"example.com", "*.example.com", "*.ok.evil.example.com", "*.cdn.example.com",
			"db.partner.net:5432/tcp", "api.x.com:443", "api.x.com:8443", "api.x.com:8444",
			"dns.example.com:53/udp", "range.example.com:8000-8100",
			"any.example.net:443", "any.example.net", "API.Mixed.COM.", "bücher.de",
			"tie.example.org", "*.wild-tie.org", "safe.malware.test", "*.shop.ads.test",
		},
		Deny: []string{
			"files.example.com", "*.evil.example.com", "bad.cdn.example.com",
			"tie.example.org", "*.wild-tie.org", "blocked.biz.test", "*.ads.test",
		},
		AllowCategories: []string{"business"},
		DenyCategories:  []string{"malware"},
		Action:          ActionNXDomain,
	},
	{
		Name:           "lab",
		Clients:        prefixes("10.1.5.0/24", "fe80::/10"),
		Deny:           []string{"*.ru"},
		DenyCategories: []string{"doh", "malware"},
		DefaultAllow:   true,
		Action:         ActionSinkhole,
		Sinkhole:       []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		Mode:           ModeAudit,
	},
	{
		Name:            "office",
		Clients:         prefixes("10.0.0.0/8", "::ffff:172.16.0.0/108"),
		Allow:           []string{"*.com"},
		AllowCategories: []string{"business"},
		Action:          ActionNoData,
	},
}

var testDomains = fakeMatcher{
	"malware.test.": bitMalware,
	"biz.test.":     bitBusiness,
	"both.test.":    bitMalware | bitBusiness,
	"doh.test.":     bitDoH | bitBusiness,
}

func compileTestEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := Compile(testGroups, testCategoryBits, testDomains)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

func tcp(from, to uint16) PortRange { return PortRange{Proto: ProtoTCP, From: from, To: to} }
func udp(from, to uint16) PortRange { return PortRange{Proto: ProtoUDP, From: from, To: to} }

func TestDecidePrecedence(t *testing.T) {
	e := compileTestEngine(t)
	const (
		srv    = "10.1.2.3"
		lab    = "10.1.5.7"
		office = "10.2.0.1"
	)
	type want struct {
		verdict Verdict
		group   string
		rule    string
		source  string
		ports   []PortRange
	}
	allowS := func(rule string, ports ...PortRange) want {
		return want{Allow, "servers", rule, "group[servers].allow", ports}
	}
	denyS := func(rule string) want { return want{Deny, "servers", rule, "group[servers].deny", nil} }
	defaultS := want{Deny, "servers", "default", "group[servers].default", nil}
	noGroupW := want{Deny, "", "no-group", "", nil}

	tests := []struct {
		name   string
		client string
		qname  string
		want   want
	}{
		{"exact allow", srv, "example.com.", allowS("example.com")},
		{"wildcard allow", srv, "www.example.com.", allowS("*.example.com")},
		{"deep name under wildcard", srv, "a.b.c.example.com.", allowS("*.example.com")},
		{"exact deny beats wildcard allow", srv, "files.example.com.", denyS("files.example.com")},
		{"exact rule does not cover children", srv, "a.files.example.com.", allowS("*.example.com")},
		{"longer wildcard deny beats shorter allow", srv, "x.evil.example.com.", denyS("*.evil.example.com")},
		{"longer wildcard deny, deeper name", srv, "a.b.evil.example.com.", denyS("*.evil.example.com")},
		{"wildcard does not match its apex", srv, "evil.example.com.", allowS("*.example.com")},
		{"deeper wildcard allow beats deny wildcard", srv, "a.ok.evil.example.com.", allowS("*.ok.evil.example.com")},
		{"apex of deeper allow falls to deny wildcard", srv, "ok.evil.example.com.", denyS("*.evil.example.com")},
		{"exact deny under allowed wildcard", srv, "bad.cdn.example.com.", denyS("bad.cdn.example.com")},
		{"child of exact deny uses wildcard", srv, "x.bad.cdn.example.com.", allowS("*.cdn.example.com")},
		{"exact tie goes to deny", srv, "tie.example.org.", denyS("tie.example.org")},
		{"wildcard tie goes to deny", srv, "a.wild-tie.org.", denyS("*.wild-tie.org")},
		{"apex of tied wildcard is unmatched", srv, "wild-tie.org.", defaultS},
		{"unmatched name gets default deny", srv, "unknown.net.", defaultS},
		{"root name gets default", srv, ".", defaultS},
		{"escaped dot is no label boundary", srv, `x\.example.com.`, defaultS},
		{"deny wildcard over allow wildcard apex", srv, "shop.ads.test.", denyS("*.ads.test")},
		{"allow wildcard under deny wildcard", srv, "x.shop.ads.test.", allowS("*.shop.ads.test")},
		{"denied category", srv, "malware.test.", want{Deny, "servers", "category:malware", "categories.malware", nil}},
		{"denied category below listed name", srv, "a.b.malware.test.", want{Deny, "servers", "category:malware", "categories.malware", nil}},
		{"permitted category allows", srv, "www.biz.test.", want{Allow, "servers", "category:business", "categories.business", nil}},
		{"deny category beats allow category", srv, "both.test.", want{Deny, "servers", "category:malware", "categories.malware", nil}},
		{"explicit allow beats deny category", srv, "safe.malware.test.", allowS("safe.malware.test")},
		{"explicit deny beats allow category", srv, "blocked.biz.test.", denyS("blocked.biz.test")},
		{"unused category does not apply", srv, "doh.test.", want{Allow, "servers", "category:business", "categories.business", nil}},
		{"upper-case query", srv, "WWW.Example.COM.", allowS("*.example.com")},
		{"query without trailing dot", srv, "www.example.com", allowS("*.example.com")},
		{"mixed-case query reaching categories", srv, "Malware.TEST", want{Deny, "servers", "category:malware", "categories.malware", nil}},
		{"rule written in upper case with dot", srv, "api.mixed.com.", allowS("API.Mixed.COM.")},
		{"unicode rule matches punycode query", srv, "xn--bcher-kva.de.", allowS("bücher.de")},
		{"ports of same-name allows merge", srv, "api.x.com.", allowS("api.x.com:443, api.x.com:8443, api.x.com:8444", tcp(443, 443), tcp(8443, 8444))},
		{"single port rule", srv, "db.partner.net.", allowS("db.partner.net:5432/tcp", tcp(5432, 5432))},
		{"udp port; exact beats any-port wildcard", srv, "dns.example.com.", allowS("dns.example.com:53/udp", udp(53, 53))},
		{"port range", srv, "range.example.com.", allowS("range.example.com:8000-8100", tcp(8000, 8100))},
		{"rule without port means any port", srv, "any.example.net.", allowS("any.example.net:443, any.example.net")},
		{"IPv6 client", "2001:db8:1::5", "www.example.com.", allowS("*.example.com")},
		{"IPv4-mapped client is unmapped", "::ffff:10.1.2.3", "www.example.com.", allowS("*.example.com")},
		{"most specific group wins", lab, "unknown.net.", want{Allow, "lab", "default", "group[lab].default", nil}},
		{"default allow group still denies", lab, "a.b.ru.", want{Deny, "lab", "*.ru", "group[lab].deny", nil}},
		{"wildcard TLD does not match TLD", lab, "ru.", want{Allow, "lab", "default", "group[lab].default", nil}},
		{"first denied category in config order", lab, "doh.test.", want{Deny, "lab", "category:doh", "categories.doh", nil}},
		{"zoned link-local client", "fe80::1%eth0", "x.ru.", want{Deny, "lab", "*.ru", "group[lab].deny", nil}},
		{"broader group", office, "biz.test.", want{Allow, "office", "category:business", "categories.business", nil}},
		{"category not referenced by group", office, "malware.test.", want{Deny, "office", "default", "group[office].default", nil}},
		{"TLD wildcard", office, "anything.com.", want{Allow, "office", "*.com", "group[office].allow", nil}},
		{"mapped IPv4 config prefix", "172.16.3.4", "anything.com.", want{Allow, "office", "*.com", "group[office].allow", nil}},
		{"client in no group", "192.0.2.1", "example.com.", noGroupW},
		{"IPv6 client in no group", "2001:db8:ffff::1", "example.com.", noGroupW},
		{"invalid client address", "", "example.com.", noGroupW},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var client netip.Addr
			if tc.client != "" {
				client = netip.MustParseAddr(tc.client)
			}
			d := e.Decide(client, tc.qname, 1)
			got := want{d.Verdict, d.Group, d.Rule, d.Source, d.Ports}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decide(%s, %q)\n got %+v\nwant %+v", tc.client, tc.qname, got, tc.want)
			}
		})
	}
}

func TestDecideCarriesGroupAction(t *testing.T) {
	e := compileTestEngine(t)
	sinkhole := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	tests := []struct {
		client   string
		qname    string
		action   Action
		mode     Mode
		sinkhole []netip.Addr
	}{
		{"10.1.2.3", "unknown.net.", ActionNXDomain, ModeEnforce, nil},
		{"10.1.5.7", "malware.test.", ActionSinkhole, ModeAudit, sinkhole},
		{"10.9.9.9", "unknown.org.", ActionNoData, ModeEnforce, nil},
		{"192.0.2.9", "example.com.", ActionRefused, ModeEnforce, nil},
	}
	for _, tc := range tests {
		d := e.Decide(netip.MustParseAddr(tc.client), tc.qname, 1)
		if d.Action != tc.action || d.Mode != tc.mode || !reflect.DeepEqual(d.Sinkhole, tc.sinkhole) {
			t.Errorf("Decide(%s, %q) = action %v mode %v sinkhole %v; want %v %v %v",
				tc.client, tc.qname, d.Action, d.Mode, d.Sinkhole, tc.action, tc.mode, tc.sinkhole)
		}
	}
}

func TestDeniesTarget(t *testing.T) {
	e := compileTestEngine(t)
	tests := []struct {
		group  string
		name   string
		denied bool
		rule   string
	}{
		{"servers", "files.example.com.", true, "files.example.com"},
		{"servers", "x.evil.example.com", true, "*.evil.example.com"},
		{"servers", "tie.example.org.", true, "tie.example.org"},
		{"servers", "malware.test.", true, "category:malware"},
		{"servers", "Both.Test.", true, "category:malware"},
		{"servers", "www.example.com.", false, ""},       // explicitly allowed
		{"servers", "safe.malware.test.", false, ""},     // explicit allow beats the category
		{"servers", "a.ok.evil.example.com.", false, ""}, // deeper allow beats the deny wildcard
		{"servers", "unknown.net.", false, ""},           // default deny does not apply
		{"servers", "biz.test.", false, ""},
		{"lab", "a.ru.", true, "*.ru"},
		{"lab", "doh.test.", true, "category:doh"},
		{"office", "malware.test.", false, ""},
		{"nosuchgroup", "files.example.com.", false, ""},
		{"", "files.example.com.", false, ""},
	}
	for _, tc := range tests {
		d, denied := e.DeniesTarget(tc.group, tc.name)
		if denied != tc.denied || d.Rule != tc.rule {
			t.Errorf("DeniesTarget(%q, %q) = %v, rule %q; want %v, rule %q", tc.group, tc.name, denied, d.Rule, tc.denied, tc.rule)
		}
		if denied && (d.Verdict != Deny || d.Group != tc.group) {
			t.Errorf("DeniesTarget(%q, %q) decision = %+v; want a deny in that group", tc.group, tc.name, d)
		}
	}
}

func TestGroups(t *testing.T) {
	e := compileTestEngine(t)
	if got, want := e.Groups(), []string{"servers", "lab", "office"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Groups() = %v; want %v", got, want)
	}
	if !e.HasGroup("lab") || e.HasGroup("nope") {
		t.Errorf("HasGroup gives wrong answers")
	}
}

// Every decision of a group carries its deny_addresses, whichever rule
// decided, so the resolver checks answers against them; other groups'
// decisions carry their own.
func TestDecisionsCarryDenyAddresses(t *testing.T) {
	deny := prefixes("169.254.169.254/32", "2001:db8:53::/48")
	groups := []GroupSpec{
		{Name: "servers", Clients: prefixes("10.1.0.0/16"), Allow: []string{"ok.example.com"}, Deny: []string{"bad.example.com"},
			AllowCategories: []string{"business"}, DenyCategories: []string{"malware"}, DenyAddresses: deny},
		{Name: "office", Clients: prefixes("10.2.0.0/16"), DefaultAllow: true},
	}
	e, err := Compile(groups, testCategoryBits, testDomains)
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddr("10.1.2.3")
	for _, tc := range []struct {
		name, rule string
	}{
		{"ok.example.com.", "ok.example.com"},
		{"bad.example.com.", "bad.example.com"},
		{"biz.test.", "category:business"},
		{"malware.test.", "category:malware"},
		{"other.example.org.", "default"},
	} {
		d := e.Decide(client, tc.name, 1)
		if d.Rule != tc.rule || !reflect.DeepEqual(d.DenyAddresses, deny) {
			t.Errorf("Decide(%s) = rule %q, deny addresses %v; want %q, %v", tc.name, d.Rule, d.DenyAddresses, tc.rule, deny)
		}
	}
	if d, ok := e.DeniesTarget("servers", "bad.example.com."); !ok || !reflect.DeepEqual(d.DenyAddresses, deny) {
		t.Errorf("DeniesTarget = %v, %+v; want the group's deny addresses", ok, d)
	}
	if d := e.Decide(netip.MustParseAddr("10.2.0.1"), "x.example.", 1); d.DenyAddresses != nil {
		t.Errorf("office decision carries %v, want none", d.DenyAddresses)
	}
}
