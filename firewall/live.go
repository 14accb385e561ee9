package firewall

import (
	"net/netip"
	"strings"
	"time"

	"github.com/egressd/egressd/policy"
)

// LiveElement is one approval a set element stands for: destination Dst
// for Group (and with client scope only for Client) on Ports (empty: any
// port) until Expiry. Name is the query name the element was last added
// for and Targets the names it led to (CNAME and HTTPS/SVCB targets),
// from its comment.
type LiveElement struct {
	Group   string
	Client  netip.Addr
	Dst     netip.Addr
	Ports   []policy.PortRange
	Expiry  time.Time
	Name    string
	Targets []string
	// FromFleet: the element was added for another fleet node's
	// approval (Allowance.FromFleet), not for an answer of this node.
	FromFleet bool
	// Owner is the client whose share of the sets the element counts
	// against (an IPv4 address, or an IPv6 /64 as its first address),
	// from the comment; invalid when it names none.
	Owner netip.Addr
}

// maxComment is the longest element comment egressd writes: the kernel
// holds at most 256 bytes of element user data, and a comment is stored
// with a type, a length and a NUL.
const maxComment = 250

// fleetMark follows the names in the comment of an element added for
// another fleet node's approval. Names end with a dot, so it is never
// read as one.
const fleetMark = "fleet"

// ownerMark starts the comment's last word when the element counts against
// a client's share: the client as ownerAddr writes it. An address never
// ends with a dot, so it is never read as a name.
const ownerMark = "owner="

// ownerAddr is the address that stands for the key a's elements are
// counted under (ownerKeyOf): a itself for IPv4, the first address of its
// /64 for IPv6.
func ownerAddr(a netip.Addr) netip.Addr {
	k, ok := ownerKeyOf(a)
	if !ok {
		return netip.Addr{}
	}
	return k.addr4or16()
}

// elementComment is the comment of an element added for an answer to
// name that led to targets: the names in presentation form, separated by
// spaces, then fleetMark for a fleet approval, then ownerMark and the
// address of owner (a client, see ownerAddr) when it is valid. A space
// inside a name is escaped ("\ ", as miekg/dns writes it), so a separator
// is a space no backslash escapes. Without the names nothing: such an
// element cannot be re-checked after a restart, so a restart does not
// carry it over. Where the owner does not fit, it is left out: after a
// restart the element counts against no client's share.
func elementComment(name string, targets []string, fromFleet bool, owner netip.Addr) string {
	if name == "" {
		return ""
	}
	n := len(name)
	for _, t := range targets {
		n += 1 + len(t)
	}
	if fromFleet {
		n += 1 + len(fleetMark)
	}
	if n > maxComment {
		return ""
	}
	var ob [1 + len(ownerMark) + len("ffff:ffff:ffff:ffff::")]byte
	ow := ob[:0]
	if owner = ownerAddr(owner); owner.IsValid() {
		ow = owner.AppendTo(append(ob[:0], " "+ownerMark...))
		if n+len(ow) > maxComment {
			ow = ow[:0]
		}
	}
	if len(targets) == 0 && !fromFleet && len(ow) == 0 {
		return name
	}
	var b strings.Builder
	b.Grow(n + len(ow))
	b.WriteString(name)
	for _, t := range targets {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	if fromFleet {
		b.WriteString(" " + fleetMark)
	}
	b.Write(ow)
	return b.String()
}

// parseComment reverses elementComment: the query name and the names it
// led to (nil for no comment), whether it marks a fleet approval, and the
// owner (invalid for none).
func parseComment(c string) (names []string, fromFleet bool, owner netip.Addr) {
	if c == "" {
		return nil, false, owner
	}
	start := 0
	for i := 0; i < len(c); i++ {
		switch c[i] {
		case '\\':
			i++ // the escaped byte (or the first digit of \DDD) is the name's
		case ' ':
			names = append(names, c[start:i])
			start = i + 1
		}
	}
	names = append(names, c[start:])
	if last := len(names) - 1; last > 0 && strings.HasPrefix(names[last], ownerMark) {
		a, err := netip.ParseAddr(names[last][len(ownerMark):])
		if err == nil && a == ownerAddr(a) {
			owner, names = a, names[:last]
		}
	}
	if last := len(names) - 1; last > 0 && names[last] == fleetMark {
		return names[:last], true, owner
	}
	return names, false, owner
}

// Inherited lists the live elements the backend carried over at start
// from a table an earlier egressd left, with the deadlines the kernel
// reported, less those the index no longer holds at the last reload (a
// re-check or a new layout left them out, or they expired). It is empty
// when there was none.
func (n *NFT) Inherited() []LiveElement {
	n.inheritedMu.Lock()
	defer n.inheritedMu.Unlock()
	return append([]LiveElement(nil), n.inherited...)
}

// keepInherited drops from Inherited what the index no longer holds: the
// elements a re-check left out of the table.
func (n *NFT) keepInherited() {
	n.inheritedMu.Lock()
	defer n.inheritedMu.Unlock()
	kept := 0
	for i := range n.inherited {
		if n.index.get(&n.inheritedAt[i]) != nil {
			n.inherited[kept], n.inheritedAt[kept] = n.inherited[i], n.inheritedAt[i]
			kept++
		}
	}
	clear(n.inherited[kept:])
	clear(n.inheritedAt[kept:])
	n.inherited, n.inheritedAt = n.inherited[:kept], n.inheritedAt[:kept]
}

// liveElement decodes an element of the dynamic set def: the keys are
// [client .] destination [. proto . port], each field in 4-byte words.
func liveElement(def setDef, key, keyEnd []byte, expiry time.Time, comment string) (LiveElement, bool) {
	size := 16
	if def.is4 {
		size = 4
	}
	e := LiveElement{Group: def.group, Expiry: expiry}
	names, fromFleet, owner := parseComment(comment)
	if len(names) > 0 {
		e.Name, e.Targets, e.FromFleet, e.Owner = names[0], names[1:], fromFleet, owner
	}
	addr := func(b []byte) (netip.Addr, []byte, bool) {
		if len(b) < size {
			return netip.Addr{}, nil, false
		}
		a, _ := netip.AddrFromSlice(b[:size])
		return a, b[size:], true
	}
	var ok bool
	rest := key
	if def.scoped {
		if e.Client, rest, ok = addr(rest); !ok {
			return e, false
		}
	}
	if e.Dst, rest, ok = addr(rest); !ok {
		return e, false
	}
	if def.kind != setPorts {
		return e, len(rest) == 0
	}
	end := keyEnd
	if len(end) != len(key) {
		end = key // a single port
	}
	if len(rest) != 8 {
		return e, false
	}
	tail := end[len(end)-8:]
	e.Ports = []policy.PortRange{{
		Proto: rest[0],
		From:  uint16(rest[4])<<8 | uint16(rest[5]),
		To:    uint16(tail[4])<<8 | uint16(tail[5]),
	}}
	return e, true
}
