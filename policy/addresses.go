package policy

import (
	"fmt"
	"net/netip"
	"sync/atomic"
)

// WellKnownNAT64 is the NAT64 well-known prefix (RFC 6052).
var WellKnownNAT64 = netip.MustParsePrefix("64:ff9b::/96")

// nat64 holds the NAT64 prefixes in use on the network besides the
// well-known one ([server] nat64_prefixes), set at start.
var nat64 atomic.Pointer[[]netip.Prefix]

// SetNAT64Prefixes sets the network's own NAT64 prefixes: their addresses,
// like those under the well-known prefix, stand for the IPv4 address they
// embed (every deny_addresses and rebinding check judges that address
// too). Each must pass CheckNAT64Prefix.
func SetNAT64Prefixes(ps []netip.Prefix) {
	ps = append([]netip.Prefix(nil), ps...)
	nat64.Store(&ps)
}

// CheckNAT64Prefix reports why p cannot be a NAT64 prefix: RFC 6052 allows
// IPv6 prefixes of length 32, 40, 48, 56, 64 or 96, without host bits.
func CheckNAT64Prefix(p netip.Prefix) error {
	switch {
	case !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6():
		return fmt.Errorf("%s is not an IPv6 prefix", p)
	case p != p.Masked():
		return fmt.Errorf("%s has host bits set (want %s)", p, p.Masked())
	}
	switch p.Bits() {
	case 32, 40, 48, 56, 64, 96:
		return nil
	}
	return fmt.Errorf("%s: a NAT64 prefix is /32, /40, /48, /56, /64 or /96 (RFC 6052)", p)
}

// EmbeddedIPv4 returns the IPv4 address a NAT64 address carries (under
// the well-known prefix, or one set with SetNAT64Prefixes): where a NAT64
// gateway sends it.
func EmbeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, false
	}
	if WellKnownNAT64.Contains(a) {
		return embedded(a.As16(), 96), true
	}
	if ps := nat64.Load(); ps != nil {
		for _, p := range *ps {
			if p.Contains(a) {
				return embedded(a.As16(), p.Bits()), true
			}
		}
	}
	return netip.Addr{}, false
}

// embedded takes the IPv4 address from its place after a prefix of bits
// bits (RFC 6052 section 2.2): bits 64 to 71 are always skipped.
func embedded(b [16]byte, bits int) netip.Addr {
	var v4 [4]byte
	at := bits / 8
	for i := range v4 {
		if at == 8 {
			at++
		}
		v4[i] = b[at]
		at++
	}
	return netip.AddrFrom4(v4)
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
