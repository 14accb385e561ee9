package resolver

import "net/netip"

// Default prefix lengths that identify one client for the rate limit and
// the in-flight share: an IPv4 address, an IPv6 /64. One host on an IPv6
// network can pick any address in its /64 (privacy addresses, a pod per
// address), so keying by address would give it 2^64 budgets.
const (
	defaultClientIPv4Bits = 32
	defaultClientIPv6Bits = 64
)

// clientKeys maps a client address to the key its limits are kept under:
// the address masked to v4 or v6 bits.
type clientKeys struct {
	v4, v6 int
}

// newClientKeys uses the defaults for lengths out of range (0 included).
func newClientKeys(v4, v6 int) clientKeys {
	k := clientKeys{v4: v4, v6: v6}
	if k.v4 <= 0 || k.v4 > 32 {
		k.v4 = defaultClientIPv4Bits
	}
	if k.v6 <= 0 || k.v6 > 128 {
		k.v6 = defaultClientIPv6Bits
	}
	return k
}

// key is a masked to the client prefix length (without a zone). Addresses
// arrive unmapped, so IPv4 clients on dual-stack sockets are keyed as IPv4.
func (k clientKeys) key(a netip.Addr) netip.Addr {
	bits := k.v6
	if a.Is4() {
		bits = k.v4
	}
	if bits >= a.BitLen() {
		return a.WithZone("")
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a
	}
	return p.Addr()
}

// name is how logs name the client a key stands for: the address, or
// the prefix when several addresses share the key.
func (k clientKeys) name(key netip.Addr) string {
	bits := k.v6
	if key.Is4() {
		bits = k.v4
	}
	if bits >= key.BitLen() {
		return key.String()
	}
	return netip.PrefixFrom(key, bits).String()
}
