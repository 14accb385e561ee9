package firewall

import (
	"context"
	"net/netip"
	"slices"
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
// a lives at least a.TTL more, so that Allow can return at once, without
// a round trip through the owner goroutine: no answer outlives its
// elements. Anything in doubt answers false and takes the owner's path,
// which reports errors and repairs: an unknown group, invalid ports, or
// changes by others to the table that the owner has not repaired yet.
//
// An element that lives long enough for the answer but is due for a
// refresh (less than freshFor left) is refreshed ahead of its expiry, off
// the answer's path: the owner gets a request nobody waits for (see
// refreshAhead).
func (n *NFT) alreadyInEffect(a Allowance) bool {
	v := n.view.Load()
	if v == nil || !n.indexTrusted() || v.stale(a) {
		return false
	}
	gs, ok := v.groups[a.Group]
	if !ok {
		return false
	}
	now := n.now()
	covered, due := n.index.covers(gs, a, a.TTL, freshFor(a.TTL, v.grace), now)
	if covered && due {
		n.refreshAhead(a)
	}
	return covered
}

// refreshAheadEvery is how often one element is asked to be refreshed
// ahead of its expiry while it is due; a refresh that failed or found the
// queue full is asked for again after it.
const refreshAheadEvery = time.Second

// refreshAhead hands the owner a copy of a (the resolver shares its
// slices with the answer) without waiting: the owner refreshes a's due
// elements like any Allow, in the next batch. When the queue is full it
// does nothing; the next answer within the element's lifetime asks again.
func (n *NFT) refreshAhead(a Allowance) {
	select {
	case <-n.closed:
		return
	default:
	}
	a.IPs = slices.Clone(a.IPs)
	a.Ports = slices.Clone(a.Ports)
	a.Targets = slices.Clone(a.Targets)
	r := request{ctx: context.Background(), allow: a, result: make(chan error, 1)}
	select {
	case n.reqs <- r:
		// The run goroutine serves it: the answer does not wait.
		n.wakeOwner()
	default:
	}
}

// covers reports whether every element a expands to has at least need
// left at now, and whether one of them (that this call claims, see
// claimRefresh) has less than its dueBelow(need, ahead) left and should
// be refreshed. It does
// not allocate: keys are built on the stack.
func (x *expiryIndex) covers(gs groupSets, a Allowance, need, ahead time.Duration, now time.Time) (covered, due bool) {
	client, err := checkAllowance(gs, a)
	if err != nil {
		return false, false
	}
	// Longest key: client and destination IPv6 addresses plus protocol
	// and port, twice (range start and end), plus the set name.
	var keyBuf, endBuf [48]byte
	x.mu.RLock()
	defer x.mu.RUnlock()
	var asker netip.Addr // the client an origin names: only with client scope
	if gs.scoped {
		asker = client
	}
	fresh := func(set string, key, keyEnd []byte) bool {
		e := x.lookup(set, key, keyEnd)
		// An answer for names the element does not remember yet goes to
		// the owner once, which records them (ReloadRecheck needs them).
		if e == nil || e.left(now) < need || (a.Name != "" && !x.remembers(e, a.Name, a.Targets, asker, need, now)) {
			return false
		}
		if e.left(now) < e.dueBelow(need, ahead) && e.claimRefresh(now) {
			due = true
		}
		return true
	}
	for _, ip := range a.IPs {
		ip, ok := destination(gs, client, ip)
		if !ok {
			continue
		}
		prefix := appendDestKey(keyBuf[:0], gs, client, ip)
		if len(a.Ports) == 0 {
			if !fresh(gs.setFor(ip.Is4(), false), prefix, nil) {
				return false, false
			}
			continue
		}
		set := gs.setFor(ip.Is4(), true)
		for _, p := range a.Ports {
			proto := protoOf(p)
			key := appendPortKey(prefix, proto, p.From)
			keyEnd := appendPortKey(append(endBuf[:0], prefix...), proto, p.To)
			if !fresh(set, key, keyEnd) {
				return false, false
			}
		}
	}
	return true, due
}
