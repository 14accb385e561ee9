package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// allowScratch is what applyAllows and sendPlan reuse from batch to batch
// instead of leaving it to the collector at every miss; only the holder of
// mu touches it, and nothing in it outlives the batch (the index and the
// netlink encoder copy what they keep).
type allowScratch struct {
	plan  map[string]plannedElement
	added map[string]int
	// addedBy counts the new elements of this batch per owner
	// (ownerKeyOf), for the clients' shares.
	addedBy map[clientKey]int
	elems   []element // the elements of every request of the batch
	reqs    []request // the requests serveQueued took from the queue
	// order, waiting and served are applyAllows' lists: the planned
	// elements' keys in message order, the requests to answer, and what
	// each of them asked for. Kept here rather than on the stack of the
	// caller serving the batch (a UDP worker), whose stack would grow.
	order   []string
	waiting []request
	served  []servedAllow
	// sets holds sendPlan's element lists, one per set the batch touches;
	// bySet is sendPlan's view of them.
	sets  [][]nftables.SetElement
	bySet []setElements
}

// setElements is what sendPlan sends to one set: every planned element,
// and those that need a refresh (delete and add again).
type setElements struct {
	name         string
	all, refresh []nftables.SetElement
}

// reset empties s for the next batch, keeping its memory (and dropping
// what the last batch referred to).
func (s *allowScratch) reset() {
	if s.plan == nil {
		s.plan, s.added, s.addedBy = map[string]plannedElement{}, map[string]int{}, map[clientKey]int{}
	}
	clear(s.plan)
	clear(s.added)
	clear(s.addedBy)
	clear(s.elems)
	s.elems = s.elems[:0]
	if cap(s.elems) > maxScratchElems {
		s.elems = nil
	}
	clear(s.order)
	s.order = s.order[:0]
	clear(s.waiting)
	s.waiting = s.waiting[:0]
	clear(s.served)
	s.served = s.served[:0]
	for i := range s.sets {
		clear(s.sets[i])
		s.sets[i] = s.sets[i][:0]
		if cap(s.sets[i]) > maxScratchElems {
			s.sets[i] = nil
		}
	}
}

// maxScratchElems: element lists grown past this (by a burst or a
// restore) are not kept for the next batch.
const maxScratchElems = 1024

// plannedElement is an element that must be sent in this batch.
type plannedElement struct {
	element
	refresh bool       // may still exist in the kernel: needs add, delete, add
	owner   netip.Addr // the client whose answer planned it (index.putOwned)
}

// applyAllows serves a run of Allow requests with at most one successful
// netlink batch, answering every waiter.
func (n *NFT) applyAllows(reqs []request) {
	if len(reqs) == 0 {
		return
	}
	now := n.now()
	trusted := n.indexTrusted()
	n.scratch.reset()
	plan := n.scratch.plan
	order := n.scratch.order // deterministic message order
	waiting := n.scratch.waiting
	maxElems := n.spec.maxElements()
	added := n.scratch.added   // new elements per set in this batch
	served := n.scratch.served // per waiting request: what to remember
	defer func() {
		// Grown, kept for the next batch (reset empties them).
		n.scratch.order, n.scratch.waiting, n.scratch.served = order, waiting, served
	}()
	for i := range reqs {
		r := &reqs[i]
		if err := r.ctx.Err(); err != nil {
			r.result <- err
			continue
		}
		gs, ok := n.lay.groups[r.allow.Group]
		if !ok {
			r.result <- unknownGroup(r.allow.Group)
			continue
		}
		if err := n.staleDenied(&r.allow); err != nil {
			r.result <- err
			continue
		}
		// Never zero: an element without a timeout would live forever.
		timeout := max(r.allow.TTL+n.spec.Grace, minTimeout)
		start := len(n.scratch.elems)
		all, err := appendElements(n.scratch.elems, &gs, &r.allow, timeout)
		if err != nil {
			r.result <- err
			continue
		}
		// Full slice expression: a later request's append must not write
		// into this one's elements.
		n.scratch.elems = all
		elems := all[start:len(all):len(all)]
		if o, over := n.overfills(plan, elems, r.allow.Client, maxElems, now); over {
			r.result <- n.refuse(r.allow.Group, r.allow.Client, o)
			continue
		}
		need := freshFor(r.allow.TTL, n.spec.Grace)
		for i := range elems {
			if k, ok := n.planElement(plan, &elems[i], r.allow.Client, need, trusted, now); ok {
				order = append(order, k)
			}
		}
		// Appended empty, then filled: no copy of the request or of what
		// served holds goes through a temporary on the stack.
		waiting = append(waiting, request{})
		waiting[len(waiting)-1] = *r
		served = append(served, servedAllow{})
		served[len(served)-1].elems = elems
		served[len(served)-1].from = originOf(&gs, &r.allow)
	}
	if len(plan) == 0 {
		n.remember(served)
		answerAll(waiting, nil)
		return
	}
	err := n.sendPlan(plan, order, now, true)
	if err != nil && errors.Is(err, unix.ENOENT) {
		err = n.resendAddOnly(plan, order, now, err)
	}
	if err != nil {
		n.batchFailed(waiting, err)
		return
	}
	n.count("ok")
	n.updateGauges(now, false, added)
	n.remember(served)
	answerAll(waiting, nil)
}

// The rare paths of applyAllows live in functions of their own, kept out
// of line: a UDP worker that finds the firewall idle runs applyAllows on
// its own stack, and their locals (formatting, logging, request copies)
// would otherwise grow its frame past what a worker's 8 KiB stack holds
// (TestAllowFitsWorkerStack).

//go:noinline
func unknownGroup(group string) error {
	return fmt.Errorf("%w %q", ErrUnknownGroup, group)
}

//go:noinline
func (n *NFT) refuse(group string, client netip.Addr, o overflow) error {
	if o.set == "" {
		return n.rejected.reject(rejectClientShare,
			fmt.Errorf("%w: the client's answers added %d elements, max_elements_per_client is %d", ErrLimit, o.have, o.limit),
			"group", group, "client", client)
	}
	return n.rejected.reject(rejectSetFull,
		fmt.Errorf("%w: set %s holds %d elements, max_elements_per_set is %d", ErrLimit, o.set, o.have, o.limit),
		"group", group, "set", o.set)
}

// resendAddOnly sends the plan again without refreshes after the kernel
// found an element the index thought live already gone (err): adding
// alone is then exactly right for it.
//
//go:noinline
func (n *NFT) resendAddOnly(plan map[string]plannedElement, order []string, now time.Time, err error) error {
	n.log.Warn("firewall: refresh raced with kernel expiry, retrying as add-only", "err", err)
	return n.sendPlan(plan, order, now, false)
}

// batchFailed answers the requests of a batch the kernel refused. One bad
// element must not fail every query that happened to share its batch:
// with more than one request, each is served again on its own.
//
//go:noinline
func (n *NFT) batchFailed(waiting []request, err error) {
	n.count("error")
	if len(waiting) == 1 {
		answerAll(waiting, fmt.Errorf("firewall: update sets: %w", err))
		return
	}
	n.log.Warn("firewall: batch failed, retrying requests one by one", "requests", len(waiting), "err", err)
	// A copy: each retry starts a batch, which reuses the scratch lists
	// waiting lives in.
	for _, r := range slices.Clone(waiting) {
		n.applyAllows([]request{r})
	}
}

// servedAllow is an allowance served: its elements and the answer that
// asked for them.
type servedAllow struct {
	elems []element
	from  origin
}

// originOf is the answer behind a: its names (copied once, shared by all
// its elements) and, with client scope, the client. nil names: nothing to
// remember.
func originOf(gs *groupSets, a *Allowance) origin {
	var o origin
	if a.Name != "" {
		o.names = append(append(make([]string, 0, 1+len(a.Targets)), a.Name), a.Targets...)
	}
	if gs.scoped {
		o.client = a.Client.Unmap().WithZone("")
	}
	o.fromFleet = a.FromFleet
	return o
}

// remember records, after the kernel has them, which answers asked for
// the elements served.
func (n *NFT) remember(served []servedAllow) {
	for _, s := range served {
		if s.from.names == nil {
			continue
		}
		for _, e := range s.elems {
			n.index.note(e, s.from)
		}
	}
}

// overflow is the cap an allowance would pass: set's (set empty: the
// client's share), which holds have of limit.
type overflow struct {
	set         string
	have, limit int
}

// overfills reports whether adding elems for client would take a set
// past limit elements (those the index knows of, live or not yet swept,
// those new in this batch, and those of elems new to both), or the
// client's elements past its share (those the index counts for it, those
// new in this batch from it, and those of elems new). If neither, elems'
// new ones are counted into the batch's counts.
func (n *NFT) overfills(plan map[string]plannedElement, elems []element, client netip.Addr, limit int, now time.Time) (overflow, bool) {
	owner, owned := ownerKeyOf(client)
	c := n.countNew(plan, elems)
	if c.total == 0 {
		return overflow{}, false
	}
	o, over := n.pastCap(&c, owner, owned, limit)
	if over && n.sweepBeforeRefusing(now) {
		// Count only what may still be in the kernel before refusing. An
		// element of elems the sweep removed is new again: count afresh.
		c = n.countNew(plan, elems)
		o, over = n.pastCap(&c, owner, owned, limit)
	}
	if over {
		return o, true
	}
	for _, f := range c.sets[:c.nsets] {
		n.scratch.added[f.set] += f.k
	}
	if owned {
		n.scratch.addedBy[owner] += c.total
	}
	return overflow{}, false
}

// newCount is what an allowance adds: new elements per set, in the order
// of its elements (it touches at most the four dynamic sets of its
// group), and in all.
type newCount struct {
	sets [4]struct {
		set string
		k   int
	}
	nsets int
	total int
}

// countNew counts the elements of elems neither planned in this batch nor
// in the index.
func (n *NFT) countNew(plan map[string]plannedElement, elems []element) newCount {
	var c newCount
	var buf keyBuf
next:
	for i := range elems {
		e := &elems[i]
		if _, ok := plan[string(e.appendKey(buf[:0]))]; ok || n.index.get(e) != nil {
			continue
		}
		c.total++
		for j := range c.sets[:c.nsets] {
			if c.sets[j].set == e.set {
				c.sets[j].k++
				continue next
			}
		}
		c.sets[c.nsets].set, c.sets[c.nsets].k = e.set, 1
		c.nsets++
	}
	return c
}

// pastCap reports the first cap c would pass: the owner's share (owned:
// the allowance has a client), then each set's limit, counting what the
// index holds and what this batch added before.
func (n *NFT) pastCap(c *newCount, owner clientKey, owned bool, limit int) (overflow, bool) {
	if owned {
		share := n.spec.maxPerClient()
		if have := n.index.owned(owner) + n.scratch.addedBy[owner]; have+c.total > share {
			return overflow{have: have, limit: share}, true
		}
	}
	for _, f := range c.sets[:c.nsets] {
		if have := n.index.count(f.set) + n.scratch.added[f.set]; have+f.k > limit {
			return overflow{set: f.set, have: have, limit: limit}, true
		}
	}
	return overflow{}, false
}

// sweepBeforeRefusing drops expired elements from the index before a
// request is refused at a cap (a client's share, a full set), unless any
// sweep did within refuseSweepEvery: neither a client at its share nor a
// full set can make every query walk the whole index.
// It reports whether it swept.
func (n *NFT) sweepBeforeRefusing(now time.Time) bool {
	if !n.lastSweep.IsZero() && now.Sub(n.lastSweep) < refuseSweepEvery {
		return false
	}
	n.lastSweep = now
	n.index.sweep(now, expiryMargin)
	return true
}

// refuseSweepEvery: elements expire to the second, so a sweep a second
// finds every one that expired.
const refuseSweepEvery = time.Second

// freshFor is how long an element must still live for an Allow with ttl
// to send nothing. All of ttl, so no client keeps an answer longer than
// its element lives; plus half the grace, so that a hot element, asked for
// again and again with the same (clamped) TTL, is re-sent at most about
// once per grace/2 and not each time its lifetime drops below TTL+grace.
// A refresh asks for TTL+grace, more than this, so it never shortens an
// element. An element with at least ttl but less than this left is
// refreshed without the answer waiting for it (alreadyInEffect); one
// with less than ttl left is refreshed before the answer is sent.
func freshFor(ttl, grace time.Duration) time.Duration {
	return ttl + grace/2
}

// planElement decides whether e must be sent: not when the index says it
// still lives at least need (see freshFor). An untrusted index (others
// changed the table and it is not repaired yet) is not believed: every
// element is sent, keeping at least the lifetime the index knows of. A
// newly planned element's key is returned, for the message order.
func (n *NFT) planElement(plan map[string]plannedElement, e *element, owner netip.Addr, need time.Duration, trusted bool, now time.Time) (key string, planned bool) {
	var buf keyBuf
	kb := e.appendKey(buf[:0])
	if p, ok := plan[string(kb)]; ok {
		if e.timeout > p.timeout {
			p.timeout = e.timeout
			plan[string(kb)] = p
		}
		return
	}
	cur := n.index.get(e)
	if cur != nil && trusted && cur.left(now) >= need {
		return
	}
	p := plannedElement{element: *e, owner: owner}
	if cur != nil && !trusted {
		p.timeout = max(p.timeout, ceilMillis(cur.left(now)))
	}
	// Anything the index has not seen expire (with margin) may still be in
	// the kernel and needs a real refresh.
	p.refresh = cur != nil && cur.left(now) > -expiryMargin
	k := string(kb)
	plan[k] = p
	return k, true
}

// sendPlan queues and flushes the planned elements. With withRefresh, an
// element that may exist is added, deleted and added again in the same
// atomic batch: the first add guarantees the delete finds it, and the
// final add sets the new timeout even on kernels that ignore timeouts of
// re-added elements. On success the index learns the new deadlines.
func (n *NFT) sendPlan(plan map[string]plannedElement, order []string, now time.Time, withRefresh bool) error {
	// Sets in the order of their first element; a batch touches few.
	bySet := n.scratch.bySet[:0]
	for _, k := range order {
		p := plan[k]
		i := 0
		for i < len(bySet) && bySet[i].name != p.set {
			i++
		}
		if i == len(bySet) {
			if len(n.scratch.sets) <= i {
				n.scratch.sets = append(n.scratch.sets, nil)
			}
			bySet = append(bySet, setElements{name: p.set, all: n.scratch.sets[i][:0]})
		}
		ps := &bySet[i]
		el := nftables.SetElement{Key: p.key, KeyEnd: p.keyEnd, Timeout: p.timeout, Comment: p.comment}
		ps.all = append(ps.all, el)
		if p.refresh && withRefresh {
			ps.refresh = append(ps.refresh, el)
		}
	}
	defer func() {
		for i := range bySet {
			n.scratch.sets[i] = bySet[i].all[:0] // grown, kept for the next batch
			bySet[i] = setElements{}
		}
		n.scratch.bySet = bySet[:0]
	}()
	for i := range bySet {
		set, ps := n.sets[bySet[i].name], &bySet[i]
		steps := []struct {
			elems []nftables.SetElement
			del   bool
		}{{ps.all, false}, {ps.refresh, true}, {ps.refresh, false}}
		for _, st := range steps {
			if err := queueElements(n.conn, set, st.elems, st.del); err != nil {
				n.resetConn()
				return err
			}
		}
	}
	if err := n.flush(); err != nil {
		return err
	}
	for _, k := range order {
		p := plan[k]
		if p.refresh && !withRefresh {
			// Add-only cannot refresh an element that still existed on
			// older kernels; keep the old deadline so the next Allow tries
			// again instead of trusting an optimistic one.
			continue
		}
		n.index.putOwned(p.element, now.Add(p.timeout), p.owner)
	}
	return nil
}

// resetConn drops a connection with a half-queued batch.
func (n *NFT) resetConn() {
	_ = n.conn.CloseLasting()
	if err := n.dial(); err != nil {
		n.log.Error("firewall: reconnect failed", "err", err)
	}
}

func answerAll(reqs []request, err error) {
	for i := range reqs {
		reqs[i].result <- err
	}
}
