package firewall

import (
	"errors"
	"fmt"
	"time"

	"github.com/egressd/egressd/policy"
)

// element is one set element egressd wants live until at least deadline.
type element struct {
	set         string
	key, keyEnd []byte // keyEnd only for port-range (interval) elements
	timeout     time.Duration
}

func (e element) indexKey() string {
	return e.set + "\x00" + string(e.key) + "\x00" + string(e.keyEnd)
}

// ErrUnknownGroup is returned by Allow for a group the ruleset does not have.
var ErrUnknownGroup = errors.New("firewall: unknown group")

// elementsFor expands an allowance into set elements. IPv4-mapped IPv6
// addresses count as IPv4. With client scope, a destination whose family
// differs from the client's cannot be keyed and is skipped: the client
// could not use it from that source address anyway.
func elementsFor(gs groupSets, a Allowance, timeout time.Duration) ([]element, error) {
	client := a.Client.Unmap().WithZone("")
	if gs.scoped && !client.IsValid() {
		return nil, fmt.Errorf("firewall: scope %q needs the client address", ScopeClient)
	}
	for _, p := range a.Ports {
		if p.From > p.To {
			return nil, fmt.Errorf("firewall: port range %d-%d is reversed", p.From, p.To)
		}
		if p.Proto != 0 && p.Proto != policy.ProtoTCP && p.Proto != policy.ProtoUDP {
			return nil, fmt.Errorf("firewall: unsupported protocol %d", p.Proto)
		}
	}
	var out []element
	for _, ip := range a.IPs {
		ip = ip.Unmap().WithZone("")
		if !ip.IsValid() {
			continue
		}
		is4 := ip.Is4()
		if gs.scoped && client.Is4() != is4 {
			continue
		}
		var prefix []byte
		if gs.scoped {
			prefix = client.AsSlice()
		}
		prefix = append(prefix, ip.AsSlice()...)
		if len(a.Ports) == 0 {
			set := gs.d6
			if is4 {
				set = gs.d4
			}
			out = append(out, element{set: set, key: prefix, timeout: timeout})
			continue
		}
		set := gs.p6
		if is4 {
			set = gs.p4
		}
		for _, p := range a.Ports {
			proto := p.Proto
			if proto == 0 {
				proto = policy.ProtoTCP
			}
			out = append(out, element{
				set:     set,
				key:     portKey(prefix, proto, p.From),
				keyEnd:  portKey(prefix, proto, p.To),
				timeout: timeout,
			})
		}
	}
	return out, nil
}

// portKey appends protocol and port, each padded to a 4-byte register as
// concatenated set keys require.
func portKey(prefix []byte, proto uint8, port uint16) []byte {
	k := make([]byte, 0, len(prefix)+8)
	k = append(k, prefix...)
	k = append(k, proto, 0, 0, 0)
	return append(k, byte(port>>8), byte(port), 0, 0)
}
