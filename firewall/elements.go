package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/egressd/egressd/policy"
)

// element is one set element egressd wants live until at least deadline.
type element struct {
	set         string
	key, keyEnd []byte // keyEnd only for port-range (interval) elements
	timeout     time.Duration
	comment     string // the query name, when it fits (elementComment)
}

// keyBuf holds an index key on the stack: a set name and two keys of at
// most 40 bytes (client and destination IPv6 addresses, protocol, port).
type keyBuf [160]byte

// appendKey appends e's index key to dst. Map lookups with
// string(e.appendKey(buf[:0])) on a stack buffer do not allocate.
func (e element) appendKey(dst []byte) []byte {
	return appendIndexKey(dst, e.set, e.key, e.keyEnd)
}

// appendIndexKey appends an element's key in a batch's plan (and the
// bytes its refresh spread is hashed from).
func appendIndexKey(dst []byte, set string, key, keyEnd []byte) []byte {
	dst = append(dst, set...)
	dst = append(dst, 0)
	dst = append(dst, key...)
	dst = append(dst, 0)
	return append(dst, keyEnd...)
}

// ErrUnknownGroup is returned by Allow for a group the ruleset does not have.
var ErrUnknownGroup = errors.New("firewall: unknown group")

// checkAllowance rejects what no set can hold and returns the client
// address as the sets key it.
func checkAllowance(gs *groupSets, a *Allowance) (client netip.Addr, err error) {
	client = a.Client.Unmap().WithZone("")
	if gs.scoped && !client.IsValid() {
		return client, fmt.Errorf("firewall: scope %q needs the client address", ScopeClient)
	}
	for _, p := range a.Ports {
		if p.From > p.To {
			return client, fmt.Errorf("firewall: port range %d-%d is reversed", p.From, p.To)
		}
		if p.Proto != 0 && p.Proto != policy.ProtoTCP && p.Proto != policy.ProtoUDP {
			return client, fmt.Errorf("firewall: unsupported protocol %d", p.Proto)
		}
	}
	return client, nil
}

// destination normalizes ip (IPv4-mapped IPv6 counts as IPv4) and reports
// whether it yields elements: with client scope, a destination whose
// family differs from the client's cannot be keyed and is skipped, as the
// client could not use it from that source address anyway.
func destination(gs *groupSets, client, ip netip.Addr) (netip.Addr, bool) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() || (gs.scoped && client.Is4() != ip.Is4()) {
		return ip, false
	}
	return ip, true
}

// setFor names the set a destination of this family goes to.
func (gs groupSets) setFor(is4, ported bool) string {
	switch {
	case ported && is4:
		return gs.p4
	case ported:
		return gs.p6
	case is4:
		return gs.d4
	}
	return gs.d6
}

// appendDestKey appends the address part of a key: the client first with
// client scope, then the destination.
func appendDestKey(dst []byte, gs *groupSets, client, ip netip.Addr) []byte {
	if gs.scoped {
		dst = appendAddr(dst, client)
	}
	return appendAddr(dst, ip)
}

// appendAddr appends the address's 4 or 16 bytes.
func appendAddr(dst []byte, a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return append(dst, b[:]...)
	}
	b := a.As16()
	return append(dst, b[:]...)
}

// elementsFor expands an allowance into set elements.
func elementsFor(gs groupSets, a Allowance, timeout time.Duration) ([]element, error) {
	return appendElements(nil, &gs, &a, timeout)
}

// appendElements appends the set elements of an allowance to out; on
// error out comes back as it was.
func appendElements(out []element, gs *groupSets, a *Allowance, timeout time.Duration) ([]element, error) {
	client, err := checkAllowance(gs, a)
	if err != nil {
		return out, err
	}
	comment := elementComment(a.Name, a.Targets, a.FromFleet, a.Client)
	for _, ip := range a.IPs {
		ip, ok := destination(gs, client, ip)
		if !ok {
			continue
		}
		prefix := appendDestKey(nil, gs, client, ip)
		if len(a.Ports) == 0 {
			out = append(out, element{set: gs.setFor(ip.Is4(), false), key: prefix, timeout: timeout, comment: comment})
			continue
		}
		set := gs.setFor(ip.Is4(), true)
		for _, p := range a.Ports {
			proto := protoOf(p)
			out = append(out, element{
				set:     set,
				key:     portKey(prefix, proto, p.From),
				keyEnd:  portKey(prefix, proto, p.To),
				timeout: timeout,
				comment: comment,
			})
		}
	}
	return out, nil
}

// protoOf defaults a port range without protocol to TCP.
func protoOf(p policy.PortRange) uint8 {
	if p.Proto == 0 {
		return policy.ProtoTCP
	}
	return p.Proto
}

// portKey returns prefix followed by protocol and port.
func portKey(prefix []byte, proto uint8, port uint16) []byte {
	k := make([]byte, 0, len(prefix)+8)
	k = append(k, prefix...)
	return appendPortKey(k, proto, port)
}

// appendPortKey appends protocol and port, each padded to a 4-byte
// register as concatenated set keys require.
func appendPortKey(dst []byte, proto uint8, port uint16) []byte {
	dst = append(dst, proto, 0, 0, 0)
	return append(dst, byte(port>>8), byte(port), 0, 0)
}
