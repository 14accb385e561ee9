package firewall

import (
	"net/netip"
	"time"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/policy"
)

// approvedBy returns, for carryOver, whether an element of lay's sets is
// still approved by check: by one of the live answers it remembers, on
// its ports. Elements whose answers are unknown are approved (see
// indexEntry.origins).
func approvedBy(lay layout, check Recheck, now time.Time) func(entryView) bool {
	defs := make(map[string]setDef, len(lay.sets))
	for _, s := range lay.sets {
		defs[s.name] = s
	}
	return func(e entryView) bool {
		if len(e.origins) == 0 {
			return true
		}
		def, ok := defs[e.set]
		if !ok {
			return false
		}
		for _, o := range e.origins {
			if !o.until.After(now) {
				continue // that answer is no longer valid anywhere
			}
			if ports, ok := check(def.group, o.client, destOfKey(def, e.key), o.names); ok && portsCover(def, e, ports) {
				return true
			}
		}
		return false
	}
}

// destOfKey reads the destination address back from a key made by
// appendDestKey: after the client's address with client scope.
func destOfKey(def setDef, key []byte) netip.Addr {
	n := 16
	if def.is4 {
		n = 4
	}
	if def.scoped {
		key = key[min(n, len(key)):]
	}
	a, _ := netip.AddrFromSlice(key[:min(n, len(key))])
	return a
}

// portsCover reports whether ports (none: any) admit the element: an
// any-port element needs any port; a port-range element must lie within
// one range of its protocol.
func portsCover(def setDef, e entryView, ports []policy.PortRange) bool {
	if len(ports) == 0 {
		return true
	}
	if def.kind != setPorts || len(e.key) < 8 || len(e.keyEnd) < 8 {
		return false
	}
	proto, from := portOfKey(e.key)
	_, to := portOfKey(e.keyEnd)
	for _, p := range ports {
		if protoOf(p) == proto && p.From <= from && to <= p.To {
			return true
		}
	}
	return false
}

// portOfKey reads protocol and port back from the end of a key made by
// appendPortKey.
func portOfKey(k []byte) (proto uint8, port uint16) {
	tail := k[len(k)-8:]
	return tail[0], uint16(tail[4])<<8 | uint16(tail[5])
}

// ErrStale is returned (wrapped) by Allow for an allowance decided under
// a policy the last ReloadRecheck replaced, when that reload's policy
// denies it (see ReloadRecheck).
var ErrStale = enforce.ErrStale

// staleDenied is enforce.CheckStale with the policy and generation of
// the last ReloadRecheck (see allowView.stale), asked before anything of
// the allowance is added.
//
// Out of line: the copy of a it passes would sit in applyAllows' frame,
// which is on the stack of every UDP worker that serves a batch.
//
//go:noinline
func (n *NFT) staleDenied(a *Allowance) error {
	if n.recheck == nil {
		return nil
	}
	return enforce.CheckStale(*a, n.gen, enforce.Recheck(n.recheck))
}
