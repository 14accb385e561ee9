package firewall

import (
	"context"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/egressd/egressd/policy"
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
func (v *allowView) stale(a *Allowance) bool {
	return a.Generation != 0 && a.Generation < v.gen
}

// InEffect implements InEffectChecker.
func (n *NFT) InEffect(a Allowance) bool {
	select {
	case <-n.closed:
		return false
	default:
	}
	return a.Group != "" && len(a.IPs) > 0 && len(a.IPs) <= n.limits().maxAddr && n.alreadyInEffect(&a)
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
//
// With a.Memo, a check that finds every element in place and none due
// notes until when that stays so; asked again before then, under the same
// view and with nothing replaced or repaired since, the answer is true
// without the index (a cached answer's hits).
func (n *NFT) alreadyInEffect(a *Allowance) bool {
	v := n.view.Load()
	if v == nil || !n.indexTrusted() || v.stale(a) {
		return false
	}
	now := n.now()
	epoch, settled := n.epoch.Load(), n.driftSettled.Load()
	if a.Memo != nil {
		// A note made under v found a.Group in it: no group lookup.
		if note, _ := a.Memo.Load().(*effectNote); note != nil && note.holds(a, v, epoch, settled, now.UnixNano()) {
			return true
		}
	}
	gs, ok := v.groups[a.Group]
	if !ok {
		return false
	}
	covered, due, until := n.index.covers(&gs, a, a.TTL, freshFor(a.TTL, v.grace), now)
	if covered && due {
		n.refreshAhead(a)
	}
	if covered && !due && a.Memo != nil && until > now.UnixNano() {
		a.Memo.Store(&effectNote{view: v, epoch: epoch, settled: settled, until: until, need: a.TTL,
			group: a.Group, scoped: gs.scoped, client: a.Client, name: a.Name,
			ips: a.IPs, targets: a.Targets, ports: a.Ports})
	}
	return covered
}

// effectNote is what alreadyInEffect notes in an answer's memo: until
// (Unix ns) every element of the allowance lives at least need and is not
// due for a refresh (dueBelow grows with need, so it holds for any need up
// to the one checked), and every element remembers the answer that long.
// It is believed only under the same view (a reload or restore publishes
// a new one), the same epoch (bumped before a table replace can drop an
// element) and the same drift repairs, and for the same allowance: the
// answer's own IPs and Targets slices, the same group, name, ports and,
// with client scope, client.
type effectNote struct {
	view    *allowView
	epoch   uint64
	settled uint64
	until   int64
	need    time.Duration
	group   string
	scoped  bool
	client  netip.Addr
	name    string
	ips     []netip.Addr
	targets []string
	ports   []policy.PortRange
}

func (e *effectNote) holds(a *Allowance, v *allowView, epoch, settled uint64, now int64) bool {
	return e.view == v && e.epoch == epoch && e.settled == settled && now < e.until && a.TTL <= e.need &&
		a.Group == e.group && a.Name == e.name && (!e.scoped || a.Client == e.client) &&
		sameSlice(a.IPs, e.ips) && sameSlice(a.Targets, e.targets) && slices.Equal(a.Ports, e.ports)
}

// sameSlice reports whether a and b are the same slice (same start and
// length), not merely equal ones.
func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// refreshAheadEvery is how often one element is asked to be refreshed
// ahead of its expiry while it is due; a refresh that failed or found the
// queue full is asked for again after it.
const refreshAheadEvery = time.Second

// refreshAhead hands the owner a copy of a (the resolver shares its
// slices with the answer) without waiting: the owner refreshes a's due
// elements like any Allow, in the next batch. When the queue is full it
// does nothing; the next answer within the element's lifetime asks again.
func (n *NFT) refreshAhead(a *Allowance) {
	select {
	case <-n.closed:
		return
	default:
	}
	r := request{ctx: context.Background(), allow: *a, result: make(chan error, 1)}
	r.allow.IPs = slices.Clone(a.IPs)
	r.allow.Ports = slices.Clone(a.Ports)
	r.allow.Targets = slices.Clone(a.Targets)
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
// be refreshed. until (Unix ns) is the first moment at which an element
// comes due, or no longer remembers the answer for need (see
// effectNote). It does not allocate: keys are built on the stack.
func (x *expiryIndex) covers(gs *groupSets, a *Allowance, need, ahead time.Duration, now time.Time) (covered, due bool, until int64) {
	client, err := checkAllowance(gs, a)
	if err != nil {
		return false, false, 0
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
	until = math.MaxInt64
	fresh := func(set string, key, keyEnd []byte) bool {
		e := x.lookup(set, key, keyEnd)
		if e == nil || e.left(now) < need {
			return false
		}
		dueBelow := e.dueBelow(need, ahead)
		until = min(until, e.deadline-int64(dueBelow))
		if a.Name != "" {
			// An answer for names the element does not remember yet goes
			// to the owner once, which records them (ReloadRecheck needs
			// them).
			remembered, ok := x.rememberedUntil(e, a.Name, a.Targets, asker, need, now)
			if !ok {
				return false
			}
			until = min(until, remembered-int64(need))
		}
		if e.left(now) < dueBelow && e.claimRefresh(now) {
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
				return false, false, 0
			}
			continue
		}
		set := gs.setFor(ip.Is4(), true)
		for _, p := range a.Ports {
			proto := protoOf(p)
			key := appendPortKey(prefix, proto, p.From)
			keyEnd := appendPortKey(append(endBuf[:0], prefix...), proto, p.To)
			if !fresh(set, key, keyEnd) {
				return false, false, 0
			}
		}
	}
	return true, due, until
}
