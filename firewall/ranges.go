package firewall

import (
	"fmt"
	"net/netip"
	"slices"
)

// addrRange is an inclusive range of addresses of one family.
type addrRange struct {
	From, To netip.Addr
}

// String prints the range the way nft lists interval set elements: a bare
// address, a prefix, or "from-to".
func (r addrRange) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	if p, ok := r.prefix(); ok {
		return p.String()
	}
	return fmt.Sprintf("%s-%s", r.From, r.To)
}

// prefix reports whether the range is exactly one CIDR prefix.
func (r addrRange) prefix() (netip.Prefix, bool) {
	for bits := 0; bits <= r.From.BitLen(); bits++ {
		p := netip.PrefixFrom(r.From, bits)
		if p.Masked().Addr() == r.From && lastAddr(p) == r.To {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func prefixRange(p netip.Prefix) addrRange {
	p = p.Masked()
	return addrRange{From: p.Addr(), To: lastAddr(p)}
}

// lastAddr is the highest address inside p.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// mergeRanges sorts ranges and joins overlapping or adjacent ones, so the
// result is the canonical form nft would list.
func mergeRanges(rs []addrRange) []addrRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b addrRange) int { return a.From.Compare(b.From) })
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last.To.Next()
			if r.From.Compare(last.To) <= 0 || (next.IsValid() && r.From == next) {
				if r.To.Compare(last.To) > 0 {
					last.To = r.To
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// subtractRange removes cut from every range in rs.
func subtractRange(rs []addrRange, cut addrRange) []addrRange {
	var out []addrRange
	for _, r := range rs {
		if cut.To.Compare(r.From) < 0 || cut.From.Compare(r.To) > 0 {
			out = append(out, r)
			continue
		}
		if cut.From.Compare(r.From) > 0 {
			out = append(out, addrRange{From: r.From, To: cut.From.Prev()})
		}
		if cut.To.Compare(r.To) < 0 {
			out = append(out, addrRange{From: cut.To.Next(), To: r.To})
		}
	}
	return out
}

// partitionClients assigns every client address to exactly one group, the
// one with the most specific matching prefix (as policy does), so the first
// matching jump in the base chain is also the right one. On an exact tie the
// earlier group keeps the prefix. The result is indexed like groups, split
// into IPv4 and IPv6 ranges.
func partitionClients(groups []GroupSpec) (v4, v6 [][]addrRange) {
	type owned struct {
		p     netip.Prefix
		group int
	}
	var all []owned
	for gi, g := range groups {
		for _, p := range g.Clients {
			p = netip.PrefixFrom(p.Addr().Unmap(), unmapBits(p)).Masked()
			all = append(all, owned{p, gi})
		}
	}
	v4 = make([][]addrRange, len(groups))
	v6 = make([][]addrRange, len(groups))
	for _, o := range all {
		rs := []addrRange{prefixRange(o.p)}
		for _, other := range all {
			if other.group == o.group || other.p.Addr().Is4() != o.p.Addr().Is4() {
				continue
			}
			moreSpecific := other.p.Bits() > o.p.Bits() && o.p.Contains(other.p.Addr())
			earlierTie := other.p == o.p && other.group < o.group
			if moreSpecific || earlierTie {
				rs = subtractRange(rs, prefixRange(other.p))
			}
		}
		if o.p.Addr().Is4() {
			v4[o.group] = append(v4[o.group], rs...)
		} else {
			v6[o.group] = append(v6[o.group], rs...)
		}
	}
	for i := range groups {
		v4[i] = mergeRanges(v4[i])
		v6[i] = mergeRanges(v6[i])
	}
	return v4, v6
}

// unmapBits converts the length of an IPv4-mapped IPv6 prefix to IPv4.
func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}
	return p.Bits()
}
