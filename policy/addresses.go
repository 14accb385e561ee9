package policy

import "net/netip"

// nat64 is the NAT64 well-known prefix (RFC 6052).
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// EmbeddedIPv4 returns the IPv4 address a NAT64 well-known-prefix address
// carries in its last 32 bits: where a NAT64 gateway sends it.
func EmbeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() || !nat64.Contains(a) {
		return netip.Addr{}, false
	}
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

// DeniedAddress returns the first prefix of deny (a group's
// deny_addresses) that holds a, or the IPv4 address a NAT64 address a
// stands for.
func DeniedAddress(deny []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	a = a.Unmap()
	v4, nat := EmbeddedIPv4(a)
	for _, p := range deny {
		if p.Contains(a) || (nat && p.Contains(v4)) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
