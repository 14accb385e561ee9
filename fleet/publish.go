package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/egressd/egressd/enforce"
)

// recentSize bounds the approvals remembered as published, so the same
// approval asked for again is not published again while the one published
// still lives long enough.
const recentSize = 1 << 16

// Publisher is the Enforcer a resolver uses with [fleet] publish: Allow
// installs through the wrapped Enforcer first and publishes after.
type Publisher struct {
	enforce.Enforcer
	p *publisher
}

// Allow installs a locally; once it is in effect, an approval of a
// published group is stored in JetStream (bounded by publish_timeout;
// queued when NATS does not store it in time) and, with confirm, applied
// by the named nodes (bounded by confirm_timeout, else ErrNotConfirmed).
func (w *Publisher) Allow(ctx context.Context, a enforce.Allowance) error {
	if err := w.Enforcer.Allow(ctx, a); err != nil {
		return err
	}
	if _, none := w.Enforcer.(*enforce.None); none {
		// A firewall refuses an answer decided under a policy a reload
		// has replaced when the new one denies it; without one, the
		// publisher must, or the fleet would get it.
		if err := w.p.stale(a); err != nil {
			return err
		}
	}
	return w.p.allowed(ctx, a)
}

// InEffect asks the wrapped enforcer: an element in effect locally was
// published when it was installed. A resolver without a firewall of its
// own (backend none) has only the fleet to wait for: in effect is then
// published (and confirmed) recently enough.
func (w *Publisher) InEffect(a enforce.Allowance) bool {
	if c, ok := w.Enforcer.(enforce.InEffectChecker); ok {
		return c.InEffect(a)
	}
	if _, none := w.Enforcer.(*enforce.None); none {
		return w.p.fresh(a)
	}
	return false
}

// stale asks the node's current policy about an allowance decided under
// an older one (enforce.CheckStale); nil without a policy to ask.
func (p *publisher) stale(a enforce.Allowance) error {
	set := p.n.cur()
	if set.Recheck == nil || set.Generation == nil {
		return nil
	}
	return enforce.CheckStale(a, set.Generation(), set.Recheck)
}

// item is one approval to publish: the approval without its lifetime,
// and the local deadline it is published up to.
type item struct {
	ap       Approval
	group    string
	subject  string
	scope    string
	deadline time.Time // local clock: the element's end in this node's kernel
	local    time.Time // when the local firewall held it
	// id is the message ID it was last sent under ("" before): a retry
	// from the queue uses it again, so JetStream drops the retry if the
	// first try was stored after all.
	id string
	// state says who owns a submitted item: a publish round (taken) or
	// the queue (abandoned by an answer that waited publish_timeout).
	state atomic.Int32
	done  chan error // the result of its publish round
}

// newItem is a's approval, held locally since now until deadline, to be
// published on its group's subject.
func newItem(a enforce.Allowance, prefix string, scopeClient bool, deadline, now time.Time) *item {
	it := &item{
		ap:       approvalOf(a, scopeClient),
		group:    a.Group,
		subject:  ApprovalSubject(prefix, a.Group),
		scope:    ScopeGroup,
		deadline: deadline,
		local:    now,
	}
	if scopeClient {
		it.scope = ScopeClient
	}
	return it
}

const (
	itemWaiting int32 = iota
	itemTaken
	itemAbandoned
)

// publishRounds bounds the publishes in flight from answers; approvals
// that arrive while they are all in flight go out together in the next
// message, so one JetStream store (and its replication) carries many.
const publishRounds = 2

type publisher struct {
	n      *Node
	recent *lru.Cache[string, time.Time]

	mu    sync.Mutex
	queue []*item // oldest first, at most Options.Queue

	bmu     sync.Mutex
	waiting []*item // submitted, for the next round
	rounds  int     // rounds in flight

	wmu     sync.Mutex
	waiters map[string]*waiter
	sub     *nats.Subscription
}

// waiter waits for the nodes of confirm to report a message applied.
type waiter struct {
	need map[string]bool
	done chan struct{}
}

func newPublisher(n *Node) (*publisher, error) {
	recent, err := lru.New[string, time.Time](recentSize)
	if err != nil {
		return nil, err
	}
	p := &publisher{n: n, recent: recent, waiters: map[string]*waiter{}}
	if len(n.confirm) > 0 {
		p.sub, err = n.nc.Subscribe(AppliedSubject(n.opts.SubjectPrefix, "*"), p.onApplied)
		if err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
	}
	return p, nil
}

func (p *publisher) onApplied(msg *nats.Msg) {
	var a Applied
	if json.Unmarshal(msg.Data, &a) != nil || a.V != Version1 {
		return
	}
	// The subject names the node (NATS permissions can bind a node to
	// its subject); a body that names another is not believed.
	if AppliedSubject(p.n.opts.SubjectPrefix, a.Node) != msg.Subject {
		return
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	w := p.waiters[a.ID]
	if w == nil || !w.need[a.Node] {
		return
	}
	delete(w.need, a.Node)
	if len(w.need) == 0 {
		close(w.done)
		delete(p.waiters, a.ID)
	}
}

func (p *publisher) expect(id string) *waiter {
	w := &waiter{need: set(p.n.confirm), done: make(chan struct{})}
	p.wmu.Lock()
	p.waiters[id] = w
	p.wmu.Unlock()
	return w
}

func (p *publisher) forget(id string) {
	p.wmu.Lock()
	delete(p.waiters, id)
	p.wmu.Unlock()
}

// recentKey identifies an approval's elements: group, client (with client
// scope), addresses and ports.
func (p *publisher) recentKey(a enforce.Allowance) string {
	b := make([]byte, 0, 64)
	b = append(b, a.Group...)
	b = append(b, '|')
	if p.n.cur().ScopeClient {
		b = a.Client.Unmap().AppendTo(b)
	}
	for _, ip := range a.IPs {
		b = append(b, '|')
		b = ip.AppendTo(b)
	}
	for _, r := range a.Ports {
		b = append(b, '|')
		b = strconv.AppendUint(b, uint64(r.Proto), 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(r.From), 10)
		b = append(b, '-')
		b = strconv.AppendUint(b, uint64(r.To), 10)
	}
	return string(b)
}

func (p *publisher) allowed(ctx context.Context, a enforce.Allowance) error {
	o, set := &p.n.opts, p.n.cur()
	if !p.n.publish[a.Group] || len(a.IPs) == 0 {
		return nil
	}
	now := o.Now()
	deadline := now.Add(a.TTL + set.Grace)
	key := p.recentKey(a)
	if p.freshKey(key, a.TTL, set) {
		return nil
	}
	it := newItem(a, o.SubjectPrefix, set.ScopeClient, deadline, now)
	if len(p.n.confirm) == 0 {
		if p.queueLen() > 0 {
			// NATS has not been storing approvals: go behind those
			// waiting, in order, without making this answer wait
			// publish_timeout too.
			p.enqueue(it)
		} else {
			p.submit(ctx, it)
		}
		// Published or queued: asked again, it is not queued twice.
		p.recent.Add(key, deadline)
		return nil
	}
	it.id = p.n.newID()
	w := p.expect(it.id)
	defer p.forget(it.id)
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, o.PublishTimeout)
	_, err := p.send(sctx, it.id, []*item{it}, p.n.confirm)
	cancel()
	if err != nil {
		p.enqueue(it)
		p.n.m.Confirms.WithLabelValues("timeout").Inc()
		return fmt.Errorf("%w: not stored in JetStream: %v", ErrNotConfirmed, err)
	}
	t := time.NewTimer(max(o.ConfirmTimeout-time.Since(start), 0))
	defer t.Stop()
	select {
	case <-w.done:
		p.n.m.Confirms.WithLabelValues("ok").Inc()
		p.recent.Add(key, deadline)
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	p.n.m.Confirms.WithLabelValues("timeout").Inc()
	return fmt.Errorf("%w by %s within %s", ErrNotConfirmed, strings.Join(p.missing(it.id), ", "), o.ConfirmTimeout)
}

// submit publishes it in the next round and waits until JetStream stored
// it, at most publish_timeout (or until ctx is done). Rounds in flight
// are at most publishRounds; an answer that finds a free one publishes
// what waits, its own approval included, and the approvals that came
// meanwhile go in one message in the next round. An approval not stored
// in time is queued: by the answer, if no round took it yet, else by its
// round once that fails.
func (p *publisher) submit(ctx context.Context, it *item) {
	it.done = make(chan error, 1)
	p.bmu.Lock()
	p.waiting = append(p.waiting, it)
	var take []*item
	if p.rounds < publishRounds {
		p.rounds++
		take, p.waiting = p.waiting, nil
	}
	p.bmu.Unlock()
	if take != nil {
		p.round(take) // bounded by publish_timeout; it took it
		<-it.done
		return
	}
	t := time.NewTimer(p.n.opts.PublishTimeout)
	defer t.Stop()
	select {
	case <-it.done:
		return
	case <-t.C:
	case <-ctx.Done():
	}
	if it.state.CompareAndSwap(itemWaiting, itemAbandoned) {
		p.enqueue(it)
	}
}

// round publishes the items of take no answer gave up on, then hands its
// slot to a round for the items that came meanwhile, if any.
func (p *publisher) round(take []*item) {
	var items []*item
	for _, it := range take {
		if it.state.CompareAndSwap(itemWaiting, itemTaken) {
			items = append(items, it)
		}
	}
	p.sendBatch(items)
	p.bmu.Lock()
	next := p.waiting
	p.waiting = nil
	if len(next) == 0 {
		p.rounds--
	}
	p.bmu.Unlock()
	if len(next) > 0 {
		go p.round(next)
	}
}

// sendBatch publishes items, one message per subject and scope (and per
// maxBatch approvals), the messages at once; reports each item its
// result and queues those not stored.
func (p *publisher) sendBatch(items []*item) {
	runs := splitRuns(items)
	if len(runs) == 1 {
		p.sendRun(runs[0])
		return
	}
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Go(func() { p.sendRun(run) })
	}
	wg.Wait()
}

// splitRuns groups items by subject and scope, at most maxBatch a run,
// in order.
func splitRuns(items []*item) [][]*item {
	var runs [][]*item
	for len(items) > 0 {
		head := items[0]
		var run, rest []*item
		for _, it := range items {
			if len(run) < maxBatch && it.subject == head.subject && it.scope == head.scope {
				run = append(run, it)
			} else {
				rest = append(rest, it)
			}
		}
		runs = append(runs, run)
		items = rest
	}
	return runs
}

func (p *publisher) sendRun(run []*item) {
	id := p.n.newID()
	for _, it := range run {
		it.id = id
	}
	ctx, cancel := context.WithTimeout(p.n.ctx, p.n.opts.PublishTimeout)
	live, err := p.send(ctx, id, run, nil)
	cancel()
	if err != nil && err != errExpired {
		for _, it := range live {
			p.enqueue(it)
		}
	}
	for _, it := range run {
		it.done <- err
	}
}

// fresh reports whether a needs no publish: its group is not published,
// it has no address, or it was published or queued (and confirmed, with
// confirm) with a lifetime still covering all of its TTL and half the grace, the
// firewall's own rule for sending an element again.
func (p *publisher) fresh(a enforce.Allowance) bool {
	if !p.n.publish[a.Group] || len(a.IPs) == 0 {
		return true
	}
	return p.freshKey(p.recentKey(a), a.TTL, p.n.cur())
}

func (p *publisher) freshKey(key string, ttl time.Duration, set *Settings) bool {
	prev, ok := p.recent.Get(key)
	return ok && !prev.Before(p.n.opts.Now().Add(ttl+set.Grace/2))
}

// missing are the nodes that have not confirmed id yet.
func (p *publisher) missing(id string) []string {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	var out []string
	if w := p.waiters[id]; w != nil {
		for _, c := range p.n.confirm {
			if w.need[c] {
				out = append(out, c)
			}
		}
	}
	return out
}

// errExpired says an item's lifetime is over: it is not published.
var errExpired = errors.New("fleet: approval expired before it was published")

// send publishes items (of one subject and scope) as one message with
// ID id, each with the lifetime left now, and waits for the
// acknowledgement, bounded by ctx. Items with no lifetime left are
// dropped (counted), never published; live are the others. Not
// connected, it fails at once.
func (p *publisher) send(ctx context.Context, id string, items []*item, confirm []string) (live []*item, err error) {
	o := &p.n.opts
	now := o.Now()
	aps := make([]*Approval, 0, len(items))
	lifetimes := make([]time.Duration, 0, len(items))
	var longest time.Duration
	for _, it := range items {
		left := it.deadline.Sub(now)
		if left <= 0 {
			p.n.m.Dropped.Inc()
			continue
		}
		live = append(live, it)
		aps = append(aps, &it.ap)
		lifetimes = append(lifetimes, left)
		longest = max(longest, left)
	}
	if len(live) == 0 {
		return nil, errExpired
	}
	if !p.n.nc.IsConnected() {
		return live, nats.ErrConnectionClosed
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	data := appendMessage((*bp)[:0], id, o.Node, live[0].group, live[0].scope, aps, lifetimes, confirm)
	*bp = data
	// JetStream TTLs count whole seconds: round up, so the message never
	// leaves the stream before the longest-lived of its elements leaves
	// the kernel (the others are aged by the agents).
	ttl := max(longest.Truncate(time.Second), time.Second)
	if ttl < longest {
		ttl += time.Second
	}
	_, err = p.n.js.PublishMsg(ctx, &nats.Msg{Subject: live[0].subject, Data: data},
		jetstream.WithMsgID(id), jetstream.WithMsgTTL(ttl), jetstream.WithExpectStream(o.Stream))
	if err != nil {
		p.n.m.PublishFails.Inc()
		return live, err
	}
	p.n.m.Published.Add(float64(len(live)))
	for _, it := range live {
		p.n.m.PublishLag.Observe(now.Sub(it.local).Seconds())
	}
	return live, nil
}

// bufPool holds buffers messages are encoded into.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// enqueue keeps it to be published later; a full queue loses its oldest
// item (the one with the least life left, most of the time).
func (p *publisher) enqueue(it *item) {
	p.mu.Lock()
	if len(p.queue) >= p.n.opts.Queue {
		p.queue = p.queue[1:]
		p.n.m.Dropped.Inc()
	}
	p.queue = append(p.queue, it)
	p.n.m.QueueLen.Set(float64(len(p.queue)))
	p.mu.Unlock()
	p.n.m.Queued.Inc()
	p.n.wake()
}

func (p *publisher) queueLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// flushLoop publishes queued approvals whenever the node is connected:
// woken by a reconnect or a new item, and every retry interval while items
// wait. It also makes sure the stream exists after each (re)connect.
func (p *publisher) flushLoop() {
	defer p.n.wg.Done()
	retry := time.NewTicker(max(p.n.opts.ReconnectWait, 100*time.Millisecond))
	defer retry.Stop()
	streamOK, lastErr := false, ""
	for {
		select {
		case <-p.n.ctx.Done():
			return
		case <-p.n.kick:
		case <-retry.C:
		}
		if !p.n.nc.IsConnected() {
			streamOK = false
			continue
		}
		if !streamOK {
			ctx, cancel := context.WithTimeout(p.n.ctx, p.n.opts.PublishTimeout*4)
			err := p.n.ensureStream(ctx)
			cancel()
			if err != nil {
				if err.Error() != lastErr { // once per cause, not every retry
					p.n.log.Warn("fleet: approval stream not ready", "stream", p.n.opts.Stream, "err", err)
				}
				lastErr = err.Error()
				continue
			}
			streamOK, lastErr = true, ""
		}
		p.flush()
	}
}

// flushWindow bounds the messages flush has in flight at once.
const flushWindow = 8

// flush publishes the queue, oldest first, until it is empty or a
// publish fails, up to flushWindow messages at once. Items sent before
// under one ID go out again together under it (JetStream drops the
// message if the first try was stored after all); items never sent go out
// up to maxBatch in a message.
func (p *publisher) flush() {
	for {
		var runs [][]*item
		var ids []string
		p.mu.Lock()
		for i := 0; i < len(p.queue) && len(runs) < flushWindow; {
			head := p.queue[i]
			run := []*item{head}
			for _, it := range p.queue[i+1:] {
				if len(run) == maxBatch || it.id != head.id || it.subject != head.subject || it.scope != head.scope {
					break
				}
				run = append(run, it)
			}
			i += len(run)
			id := head.id
			if id == "" {
				id = p.n.newID()
				for _, it := range run {
					it.id = id
				}
			}
			runs, ids = append(runs, run), append(ids, id)
		}
		p.mu.Unlock()
		if len(runs) == 0 {
			return
		}
		done := map[*item]bool{} // published, or expired
		failed := false
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, run := range runs {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(p.n.ctx, p.n.opts.PublishTimeout)
				live, err := p.send(ctx, ids[i], run, p.n.confirm)
				cancel()
				mu.Lock()
				defer mu.Unlock()
				for _, it := range run {
					if err == nil || err == errExpired || !slices.Contains(live, it) {
						done[it] = true
					}
				}
				if err != nil && err != errExpired {
					failed = true
				}
			})
		}
		wg.Wait()
		p.mu.Lock()
		// A full queue may have dropped some meanwhile, and enqueue
		// appended others: keep every item not done.
		p.queue = slices.DeleteFunc(p.queue, func(it *item) bool { return done[it] })
		p.n.m.QueueLen.Set(float64(len(p.queue)))
		p.mu.Unlock()
		if failed {
			return
		}
	}
}

// Held is an approval this node's firewall already holds until Until (on
// the local clock): the elements a restarted resolver found in its kernel
// table, which the process before it may have published or only queued.
type Held struct {
	Allowance enforce.Allowance
	Until     time.Time
}

// Republish queues held approvals of the published groups to be published
// once connected, each with the lifetime it has left then, so approvals an
// earlier process still had queued when it stopped reach the fleet, and
// agents that lost theirs get them back. Approvals without a name (the
// fleet's nodes check names against their policy), without addresses or
// without lifetime left are skipped, and so is everything on a node that
// publishes nothing. Those with the least lifetime left are queued first,
// so a full queue drops them first. It returns how many were queued.
func (n *Node) Republish(held []Held) int {
	if n.pub == nil {
		return 0
	}
	p, set := n.pub, n.cur()
	now := n.opts.Now()
	held = slices.Clone(held)
	slices.SortStableFunc(held, func(a, b Held) int { return a.Until.Compare(b.Until) })
	queued := 0
	for _, h := range held {
		a := h.Allowance
		if !n.publish[a.Group] || len(a.IPs) == 0 || a.Name == "" || !h.Until.After(now) {
			continue
		}
		p.enqueue(newItem(a, n.opts.SubjectPrefix, set.ScopeClient, h.Until, now))
		p.recent.Add(p.recentKey(a), h.Until)
		queued++
	}
	return queued
}
