package firewall

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func rangeStrings(rs []addrRange) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

func TestAddrRangeString(t *testing.T) {
	cases := []struct{ from, to, want string }{
		{"10.0.0.1", "10.0.0.1", "10.0.0.1"},
		{"10.0.0.0", "10.0.255.255", "10.0.0.0/16"},
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"10.0.0.1", "10.0.0.2", "10.0.0.1-10.0.0.2"},
		{"fd00::", "fd00::ffff:ffff:ffff:ffff", "fd00::/64"},
	}
	for _, tc := range cases {
		r := addrRange{netip.MustParseAddr(tc.from), netip.MustParseAddr(tc.to)}
		if got := r.String(); got != tc.want {
			t.Errorf("%s-%s = %q, want %q", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestMergeRanges(t *testing.T) {
	pr := func(ss ...string) []addrRange {
		var out []addrRange
		for _, p := range prefixes(ss...) {
			out = append(out, prefixRange(p))
		}
		return out
	}
	cases := []struct {
		name string
		in   []addrRange
		want []string
	}{
		{"contained", pr("10.0.0.0/8", "10.1.0.0/16"), []string{"10.0.0.0/8"}},
		{"adjacent siblings", pr("10.0.1.0/24", "10.0.0.0/24"), []string{"10.0.0.0/23"}},
		{"adjacent non-siblings", pr("10.0.1.0/24", "10.0.2.0/24"), []string{"10.0.1.0-10.0.2.255"}},
		{"disjoint", pr("10.0.0.0/24", "10.0.5.0/24"), []string{"10.0.0.0/24", "10.0.5.0/24"}},
		{"top of space", pr("255.255.255.0/24", "255.255.254.0/24"), []string{"255.255.254.0/23"}},
	}
	for _, tc := range cases {
		if got := rangeStrings(mergeRanges(tc.in)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPartitionClientsMostSpecificWins(t *testing.T) {
	groups := []GroupSpec{
		{Name: "all", Clients: prefixes("10.0.0.0/8", "fd00::/8")},
		{Name: "lab", Clients: prefixes("10.1.0.0/16", "fd00:1::/32", "::ffff:192.168.0.0/112")},
		{Name: "dup", Clients: prefixes("10.1.0.0/16", "10.1.2.3/32")},
	}
	v4, v6 := partitionClients(groups)
	want4 := [][]string{
		{"10.0.0.0/16", "10.2.0.0-10.255.255.255"},
		{"10.1.0.0-10.1.2.2", "10.1.2.4-10.1.255.255", "192.168.0.0/16"},
		{"10.1.2.3"},
	}
	want6 := [][]string{
		{"fd00::/32", "fd00:2::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{"fd00:1::/32"},
		nil,
	}
	for i := range groups {
		if got := rangeStrings(v4[i]); !reflect.DeepEqual(got, want4[i]) {
			t.Errorf("%s v4 = %v, want %v", groups[i].Name, got, want4[i])
		}
		if got := rangeStrings(v6[i]); !reflect.DeepEqual(got, want6[i]) {
			t.Errorf("%s v6 = %v, want %v", groups[i].Name, got, want6[i])
		}
	}
}

func TestGroupIDs(t *testing.T) {
	groups := []GroupSpec{{Name: "build-farm"}, {Name: "build.farm"}, {Name: "Ops"}, {Name: "café"},
		{Name: "a_really_long_group_name_that_goes_on_and_on_forever"}}
	want := []string{"build_farm", "build_farm_2", "Ops", "caf_", "a_really_long_group_name_that_goes_on_an"}
	if got := groupIDs(groups); !reflect.DeepEqual(got, want) {
		t.Errorf("groupIDs = %q, want %q", got, want)
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{Table: "egressd", Hooks: []string{HookForward}}
	cases := []struct {
		name   string
		mutate func(*Spec)
		valid  bool
	}{
		{"minimal", func(*Spec) {}, true},
		{"both hooks", func(s *Spec) { s.Hooks = []string{HookForward, HookOutput} }, true},
		{"no table", func(s *Spec) { s.Table = "" }, false},
		{"quote in table", func(s *Spec) { s.Table = `a"b` }, false},
		{"space in table", func(s *Spec) { s.Table = "a b" }, false},
		{"table starts with digit", func(s *Spec) { s.Table = "1egressd" }, false},
		{"table with dash and digits", func(s *Spec) { s.Table = "egressd-2" }, true},
		{"DNS without port", func(s *Spec) { s.DNS = []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 0)} }, false},
		{"DNS without address", func(s *Spec) { s.DNS = []netip.AddrPort{{}} }, false},
		{"no hooks", func(s *Spec) { s.Hooks = nil }, false},
		{"unknown hook", func(s *Spec) { s.Hooks = []string{"input"} }, false},
		{"hook twice", func(s *Spec) { s.Hooks = []string{HookOutput, HookOutput} }, false},
		{"bad scope", func(s *Spec) { s.Scope = "host" }, false},
		{"negative grace", func(s *Spec) { s.Grace = -1 }, false},
		{"negative set gc interval", func(s *Spec) { s.SetGCInterval = -time.Second }, false},
		{"set gc interval over an hour", func(s *Spec) { s.SetGCInterval = MaxSetGCInterval + time.Second }, false},
		{"set gc interval of an hour", func(s *Spec) { s.SetGCInterval = MaxSetGCInterval }, true},
		{"unnamed group", func(s *Spec) { s.Groups = []GroupSpec{{}} }, false},
		{"duplicate group", func(s *Spec) { s.Groups = []GroupSpec{{Name: "a"}, {Name: "a"}} }, false},
		{"invalid prefix", func(s *Spec) { s.Groups = []GroupSpec{{Name: "a", Clients: []netip.Prefix{{}}}} }, false},
	}
	for _, tc := range cases {
		s := ok
		tc.mutate(&s)
		if err := s.Validate(); (err == nil) != tc.valid {
			t.Errorf("%s: Validate() = %v, want valid=%v", tc.name, err, tc.valid)
		}
	}
}
