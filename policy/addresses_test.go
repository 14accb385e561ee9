package policy

import (
	"net/netip"
	"testing"
)

// TestEmbeddedIPv4 takes the examples of RFC 6052 section 2.4 (192.0.2.33
// under each prefix length) and the well-known prefix, which stands
// whatever else is set.
func TestEmbeddedIPv4(t *testing.T) {
	t.Cleanup(func() { SetNAT64Prefixes(nil) })
	local := []netip.Prefix{
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("2001:db8:100::/40"),
		netip.MustParsePrefix("2001:db8:122::/48"),
		netip.MustParsePrefix("2001:db8:122:300::/56"),
		netip.MustParsePrefix("2001:db8:122:344::/64"),
		netip.MustParsePrefix("2001:db8:122:344::/96"),
		netip.MustParsePrefix("64:ff9b:1::/48"),
	}
	for _, tc := range []struct {
		name string
		set  []netip.Prefix
		addr string
		want string // "" : not a NAT64 address
	}{
		{"well-known prefix by default", nil, "64:ff9b::192.0.2.33", "192.0.2.33"},
		{"local-use prefix unknown by default", nil, "64:ff9b:1::c000:221", ""},
		{"/32", local[:1], "2001:db8:c000:221::", "192.0.2.33"},
		{"/40", local[1:2], "2001:db8:1c0:2:21::", "192.0.2.33"},
		{"/48", local[2:3], "2001:db8:122:c000:2:2100::", "192.0.2.33"},
		{"/56", local[3:4], "2001:db8:122:3c0:0:221::", "192.0.2.33"},
		{"/64", local[4:5], "2001:db8:122:344:c0:2:2100:0", "192.0.2.33"},
		{"/96", local[5:6], "2001:db8:122:344::192.0.2.33", "192.0.2.33"},
		{"local-use /48 set", local[6:], "64:ff9b:1:a00:0:500::", "10.0.0.5"},
		{"well-known prefix beside a set one", local[6:], "64:ff9b::10.0.0.5", "10.0.0.5"},
		{"outside every prefix", local, "2001:db9::1", ""},
		{"IPv4", local, "10.0.0.5", ""},
		{"IPv4-mapped", local, "::ffff:10.0.0.5", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			SetNAT64Prefixes(tc.set)
			got, ok := EmbeddedIPv4(netip.MustParseAddr(tc.addr))
			if tc.want == "" {
				if ok {
					t.Errorf("EmbeddedIPv4(%s) = %s, want none", tc.addr, got)
				}
				return
			}
			if !ok || got != netip.MustParseAddr(tc.want) {
				t.Errorf("EmbeddedIPv4(%s) = %s, %v, want %s", tc.addr, got, ok, tc.want)
			}
		})
	}
}

func TestCheckNAT64Prefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"64:ff9b:1::/48", true},
		{"2001:db8:122:344::/96", true},
		{"2001:db8::/32", true},
		{"2001:db8::/33", false},
		{"2001:db8::1/96", false},
		{"10.0.0.0/8", false},
		{"::ffff:0:0/96", false},
	} {
		err := CheckNAT64Prefix(netip.MustParsePrefix(tc.prefix))
		if (err == nil) != tc.ok {
			t.Errorf("CheckNAT64Prefix(%s) = %v, want ok %v", tc.prefix, err, tc.ok)
		}
	}
}

// TestDeniedAddressLocalNAT64: deny_addresses holds for the IPv4 address a
// local NAT64 address reaches once its prefix is set.
func TestDeniedAddressLocalNAT64(t *testing.T) {
	t.Cleanup(func() { SetNAT64Prefixes(nil) })
	deny := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	a := netip.MustParseAddr("64:ff9b:1::a00:5")
	if _, denied := DeniedAddress(deny, a); denied {
		t.Errorf("%s denied without its NAT64 prefix set", a)
	}
	SetNAT64Prefixes([]netip.Prefix{netip.MustParsePrefix("64:ff9b:1::/96")})
	if p, denied := DeniedAddress(deny, a); !denied || p != deny[0] {
		t.Errorf("DeniedAddress(%s) = %s, %v, want %s", a, p, denied, deny[0])
	}
}
