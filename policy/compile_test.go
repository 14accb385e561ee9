package policy

import (
	"errors"
	"net/netip"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	bits := map[string]int{"malware": 0}
	m := fakeMatcher{}
	tests := []struct {
		name    string
		groups  []GroupSpec
		bits    map[string]int
		matcher CategoryMatcher
		want    string
		key     string
		index   int
	}{
		{
			name:   "duplicate group name",
			groups: []GroupSpec{{Name: "a"}, {Name: "a"}},
			want:   `group[a].name: duplicate group name "a"`, key: "name", index: -1,
		},
		{
			name:   "empty group name",
			groups: []GroupSpec{{Name: ""}},
			want:   `group[].name: group has no name`, key: "name", index: -1,
		},
		{
			name:   "unknown deny category",
			groups: []GroupSpec{{Name: "a", DenyCategories: []string{"malware", "gambling"}}},
			bits:   bits, matcher: m,
			want: `group[a].deny_categories: unknown category "gambling"`, key: "deny_categories", index: 1,
		},
		{
			name:   "unknown allow category",
			groups: []GroupSpec{{Name: "a", AllowCategories: []string{"news"}}},
			bits:   bits, matcher: m,
			want: `group[a].allow_categories: unknown category "news"`, key: "allow_categories", index: 0,
		},
		{
			name:   "categories without matcher",
			groups: []GroupSpec{{Name: "a", DenyCategories: []string{"malware"}}},
			bits:   bits,
			want:   `group[a].deny_categories: categories are used but no category matcher was given`, key: "deny_categories", index: -1,
		},
		{
			name:   "permitted categories without matcher",
			groups: []GroupSpec{{Name: "a", AllowCategories: []string{"malware"}}},
			bits:   bits,
			want:   `group[a].allow_categories: categories are used but no category matcher was given`, key: "allow_categories", index: -1,
		},
		{
			name:   "bad allow rule",
			groups: []GroupSpec{{Name: "a", Allow: []string{"ok.com", "x.com:70000"}}},
			want:   `group[a].allow: invalid port "70000" in rule "x.com:70000"`, key: "allow", index: 1,
		},
		{
			name:   "bad deny rule",
			groups: []GroupSpec{{Name: "a", Deny: []string{"a.*.com"}}},
			want:   `group[a].deny: invalid wildcard in rule "a.*.com": "*" may only be the whole first label`, key: "deny", index: 0,
		},
		{
			name:   "deny rule with ports",
			groups: []GroupSpec{{Name: "a", Deny: []string{"x.com:443"}}},
			want:   `group[a].deny: deny rule "x.com:443" has ports; a denied name is never resolved, so ports cannot apply`, key: "deny", index: 0,
		},
		{
			name: "same prefix in two groups",
			groups: []GroupSpec{
				{Name: "a", Clients: prefixes("10.0.0.0/8")},
				{Name: "b", Clients: prefixes("10.1.0.0/16", "10.0.0.0/8")},
			},
			want: `group[b].clients: client prefix 10.0.0.0/8 is in both group "a" and group "b"`, key: "clients", index: 1,
		},
		{
			name: "same prefix once mapped and once not",
			groups: []GroupSpec{
				{Name: "a", Clients: prefixes("10.0.0.0/8")},
				{Name: "b", Clients: prefixes("::ffff:10.0.0.0/104")},
			},
			want: `group[b].clients: client prefix 10.0.0.0/8 is in both group "a" and group "b"`, key: "clients", index: 0,
		},
		{
			name:   "invalid prefix",
			groups: []GroupSpec{{Name: "a", Clients: []netip.Prefix{{}}}},
			want:   `group[a].clients: invalid client prefix "invalid Prefix"`, key: "clients", index: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Compile(tc.groups, tc.bits, tc.matcher)
			if err == nil {
				t.Fatalf("Compile succeeded (%d groups); want %q", len(e.Groups()), tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tc.want)
			}
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *CompileError", err)
			}
			if ce.Key != tc.key || ce.Index != tc.index {
				t.Errorf("CompileError key %q index %d; want %q %d", ce.Key, ce.Index, tc.key, tc.index)
			}
		})
	}
}

func TestCompileCategoryBitErrors(t *testing.T) {
	tests := []struct {
		bits map[string]int
		want string
	}{
		{map[string]int{"big": 64}, `category "big" has bit 64; bits must be 0 to 63`},
		{map[string]int{"neg": -1}, `category "neg" has bit -1; bits must be 0 to 63`},
		{map[string]int{"x": 3, "y": 3}, `categories "x" and "y" share bit 3`},
	}
	for _, tc := range tests {
		_, err := Compile(nil, tc.bits, fakeMatcher{})
		if err == nil || err.Error() != tc.want {
			t.Errorf("Compile with bits %v: err = %v; want %q", tc.bits, err, tc.want)
		}
	}
}

func TestCompileAcceptsRepeatsWithinGroup(t *testing.T) {
	e, err := Compile([]GroupSpec{{
		Name:           "a",
		Clients:        prefixes("10.0.0.0/8", "10.0.0.0/8"),
		Allow:          []string{"x.com", "X.com."},
		DenyCategories: []string{"malware", "malware"},
	}}, testCategoryBits, testDomains)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	d := e.Decide(netip.MustParseAddr("10.0.0.1"), "x.com.", 1)
	if d.Verdict != Allow || d.Rule != "x.com, X.com." || d.Ports != nil {
		t.Errorf("Decide = %+v; want allow by both spellings, any port", d)
	}
}

func TestEmptyEngine(t *testing.T) {
	e, err := Compile(nil, nil, nil)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	d := e.Decide(netip.MustParseAddr("127.0.0.1"), "example.com.", 1)
	if d.Verdict != Deny || d.Rule != "no-group" || d.Action != ActionRefused {
		t.Errorf("Decide on an empty engine = %+v; want the no-group refusal", d)
	}
}
