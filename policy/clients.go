package policy

import (
	"fmt"
	"net/netip"
	"slices"
)

// prefixIndex finds the group whose client prefix most specifically
// contains an address: one map probe per distinct prefix length, longest
// first, so thousands of prefixes cost no more than a handful of lengths.
type prefixIndex struct {
	lengths []int // distinct prefix lengths, longest first
	groups  map[netip.Prefix]*group
}

func (ix *prefixIndex) add(p netip.Prefix, g *group) error {
	if ix.groups == nil {
		ix.groups = make(map[netip.Prefix]*group)
	}
	if other, ok := ix.groups[p]; ok {
		if other == g {
			return nil
		}
		return fmt.Errorf("client prefix %s is in both group %q and group %q", p, other.name, g.name)
	}
	ix.groups[p] = g
	if !slices.Contains(ix.lengths, p.Bits()) {
		ix.lengths = append(ix.lengths, p.Bits())
		slices.SortFunc(ix.lengths, func(a, b int) int { return b - a })
	}
	return nil
}

func (ix *prefixIndex) lookup(a netip.Addr) *group {
	for _, bits := range ix.lengths {
		p, err := a.Prefix(bits)
		if err != nil {
			continue
		}
		if g := ix.groups[p]; g != nil {
			return g
		}
	}
	return nil
}

// clientIndex keeps IPv4 and IPv6 prefixes apart so a lookup only probes
// lengths of its own family.
type clientIndex struct {
	v4, v6 prefixIndex
}

// canonicalPrefix masks p and turns an IPv4-mapped IPv6 prefix into the
// IPv4 prefix it denotes, since client addresses are unmapped before lookup.
func canonicalPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid client prefix %q", p.String())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func (ci *clientIndex) add(p netip.Prefix, g *group) error {
	p, err := canonicalPrefix(p)
	if err != nil {
		return err
	}
	if p.Addr().Is4() {
		return ci.v4.add(p, g)
	}
	return ci.v6.add(p, g)
}

// lookup returns the client's group, or nil when no group contains it.
func (ci *clientIndex) lookup(client netip.Addr) *group {
	if !client.IsValid() {
		return nil
	}
	client = client.Unmap().WithZone("")
	if client.Is4() {
		return ci.v4.lookup(client)
	}
	return ci.v6.lookup(client)
}
