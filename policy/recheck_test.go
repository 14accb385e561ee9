package policy

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestRecheck(t *testing.T) {
	e := compileTestEngine(t)
	srv := netip.MustParseAddr("10.1.2.3")
	lab := netip.MustParseAddr("10.1.5.7")
	tests := []struct {
		name   string
		group  string
		client netip.Addr
		names  []string
		ok     bool
		ports  []PortRange
	}{
		{"allowed name, any port", "servers", netip.Addr{}, []string{"example.com."}, true, nil},
		{"allowed name with ports", "servers", netip.Addr{}, []string{"api.x.com."}, true, []PortRange{tcp(443, 443), tcp(8443, 8444)}},
		{"denied name", "servers", netip.Addr{}, []string{"files.example.com."}, false, nil},
		{"default deny", "servers", netip.Addr{}, []string{"unlisted.org."}, false, nil},
		{"denied category", "servers", netip.Addr{}, []string{"x.malware.test."}, false, nil},
		{"allowed name leading to a denied one", "servers", netip.Addr{}, []string{"www.example.com.", "files.example.com."}, false, nil},
		{"allowed name leading to a name the default denies", "servers", netip.Addr{}, []string{"www.example.com.", "unlisted.org."}, true, nil},
		{"audit group: denied name still approved", "lab", netip.Addr{}, []string{"x.ru."}, true, nil},
		{"audit group: denied target still approved", "lab", netip.Addr{}, []string{"a.org.", "x.ru."}, true, nil},
		{"client still in the group", "servers", srv, []string{"example.com."}, true, nil},
		{"client now in another group", "servers", lab, []string{"example.com."}, false, nil},
		{"unknown group", "gone", netip.Addr{}, []string{"example.com."}, false, nil},
		{"no names", "servers", netip.Addr{}, nil, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ports, ok := e.Recheck(tt.group, tt.client, netip.MustParseAddr("192.0.2.1"), tt.names)
			if ok != tt.ok || (ok && !reflect.DeepEqual(ports, tt.ports)) {
				t.Errorf("Recheck = %v, %v; want %v, %v", ports, ok, tt.ports, tt.ok)
			}
		})
	}
}

// A destination a group's deny_addresses now hold is no longer approved,
// whatever name led to it; NAT64 addresses count by the IPv4 they carry.
func TestRecheckDenyAddresses(t *testing.T) {
	groups := []GroupSpec{
		{Name: "servers", Clients: prefixes("10.1.0.0/16"), Allow: []string{"ok.example.com"}, DenyAddresses: prefixes("169.254.169.254/32", "198.51.100.0/24")},
		{Name: "lab", Clients: prefixes("10.3.0.0/16"), Allow: []string{"ok.example.com"}, DenyAddresses: prefixes("198.51.100.0/24"), Mode: ModeAudit},
	}
	e, err := Compile(groups, testCategoryBits, testDomains)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		group, dest string
		ok          bool
	}{
		{"servers", "192.0.2.1", true},
		{"servers", "169.254.169.254", false},
		{"servers", "198.51.100.7", false},
		{"servers", "64:ff9b::c633:6407", false}, // 198.51.100.7 behind NAT64
		{"lab", "198.51.100.7", true},            // audit mode: logged, not enforced
	} {
		if _, ok := e.Recheck(tt.group, netip.Addr{}, netip.MustParseAddr(tt.dest), []string{"ok.example.com."}); ok != tt.ok {
			t.Errorf("Recheck(%s, %s) = %v, want %v", tt.group, tt.dest, ok, tt.ok)
		}
	}
}

// TestGenerationAndModeOf: an Engine compiled later has a larger
// generation (the firewall tells answers decided before a reload by it);
// ModeOf is the mode of the group's decision for a name: the rule's, the
// group's default, enforce for an unknown group.
func TestGenerationAndModeOf(t *testing.T) {
	groups := []GroupSpec{
		{Name: "servers", Clients: prefixes("10.1.0.0/16"), Allow: []string{"ok.example.com"}},
		{Name: "lab", Clients: prefixes("10.3.0.0/16"), Allow: []string{"ok.example.com"}, Mode: ModeAudit},
	}
	first, err := Compile(groups, testCategoryBits, testDomains)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Compile(groups, testCategoryBits, testDomains)
	if err != nil {
		t.Fatal(err)
	}
	if first.Generation() == 0 || second.Generation() <= first.Generation() {
		t.Errorf("generations %d then %d, want increasing from 1", first.Generation(), second.Generation())
	}
	for _, tt := range []struct {
		group, name string
		want        Mode
	}{
		{"servers", "ok.example.com.", ModeEnforce},
		{"servers", "other.example.com.", ModeEnforce},
		{"lab", "ok.example.com.", ModeAudit},
		{"lab", "other.example.com.", ModeAudit},
		{"nobody", "ok.example.com.", ModeEnforce},
	} {
		if got := second.ModeOf(tt.group, tt.name); got != tt.want {
			t.Errorf("ModeOf(%s, %s) = %v, want %v", tt.group, tt.name, got, tt.want)
		}
	}
}
