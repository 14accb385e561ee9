package firewall

import (
	"net/netip"
	"time"
)

// allowView is what Allow needs, outside the owner goroutine, to find an
// allowance's elements in the expiry index. The owner publishes a new one
// after every successful install, reload or restore.
type allowView struct {
	groups map[string]groupSets
	grace  time.Duration
	limits limitView
	gen    uint64 // NFT.gen
}

// stale reports whether a was decided under a policy older than the one
// of the last ReloadRecheck: the owner must re-check it (staleDenied).
func (v *allowView) stale(a Allowance) bool {
	return a.Generation != 0 && a.Generation < v.gen
}

// InEffect implements InEffectChecker.
func (n *NFT) InEffect(a Allowance) bool {
	select {
	case <-n.closed:
		return false
	default:
	}
	return a.Group != "" && len(a.IPs) > 0 && len(a.IPs) <= n.limits().maxAddr && n.alreadyInEffect(a)
}

// alreadyInEffect reports whether, by the expiry index, every element of
// a is live long enough (freshFor) that Allow can return at once, without
// a round trip through the owner goroutine. Anything in doubt answers
// false and takes the owner's path, which reports errors and repairs: an
// unknown group, invalid ports, or changes by others to the table that
// the owner has not repaired yet.
func (n *NFT) alreadyInEffect(a Allowance) bool {
	v := n.view.Load()
	if v == nil || !n.indexTrusted() || v.stale(a) {
		return false
	}
	gs, ok := v.groups[a.Group]
	if !ok {
		return false
	}
	return n.index.covers(gs, a, freshFor(a.TTL, v.grace), n.now())
}

// covers reports whether every element a expands to has at least need
// left at now. It does not allocate: keys are built on the stack.
func (x *expiryIndex) covers(gs groupSets, a Allowance, need time.Duration, now time.Time) bool {
	client, err := checkAllowance(gs, a)
	if err != nil {
		return false
	}
	// Longest key: client and destination IPv6 addresses plus protocol
	// and port, twice (range start and end), plus the set name.
	var keyBuf, endBuf [48]byte
	var indexBuf [160]byte
	x.mu.RLock()
	defer x.mu.RUnlock()
	var asker netip.Addr // the client an origin names: only with client scope
	if gs.scoped {
		asker = client
	}
	fresh := func(set string, key, keyEnd []byte) bool {
		e, ok := x.entries[string(appendIndexKey(indexBuf[:0], set, key, keyEnd))]
		// An answer for names the element does not remember yet goes to
		// the owner once, which records them (ReloadRecheck needs them).
		return ok && e.deadline.Sub(now) >= need && (a.Name == "" || e.remembers(a.Name, a.Targets, asker, need, now))
	}
	for _, ip := range a.IPs {
		ip, ok := destination(gs, client, ip)
		if !ok {
			continue
		}
		prefix := appendDestKey(keyBuf[:0], gs, client, ip)
		if len(a.Ports) == 0 {
			if !fresh(gs.setFor(ip.Is4(), false), prefix, nil) {
				return false
			}
			continue
		}
		set := gs.setFor(ip.Is4(), true)
		for _, p := range a.Ports {
			proto := protoOf(p)
			key := appendPortKey(prefix, proto, p.From)
			keyEnd := appendPortKey(append(endBuf[:0], prefix...), proto, p.To)
			if !fresh(set, key, keyEnd) {
				return false
			}
		}
	}
	return true
}
