package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// item is one approval to publish: the message without its lifetime, and
// the local deadline it is published up to.
type item struct {
	msg      Message
	subject  string
	deadline time.Time // local clock: the element's end in this node's kernel
	local    time.Time // when the local firewall held it
}

type publisher struct {
	n      *Node
	recent *lru.Cache[string, time.Time]

	mu    sync.Mutex
	queue []*item // oldest first, at most Options.Queue

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
	if json.Unmarshal(msg.Data, &a) != nil || a.V != Version {
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
	var b strings.Builder
	b.WriteString(a.Group)
	b.WriteByte('|')
	if p.n.cur().ScopeClient {
		b.WriteString(a.Client.Unmap().String())
	}
	for _, ip := range a.IPs {
		b.WriteByte('|')
		b.WriteString(ip.String())
	}
	for _, r := range a.Ports {
		fmt.Fprintf(&b, "|%d:%d-%d", r.Proto, r.From, r.To)
	}
	return b.String()
}

func (p *publisher) allowed(ctx context.Context, a enforce.Allowance) error {
	o, set := &p.n.opts, p.n.cur()
	if !p.n.publish[a.Group] || len(a.IPs) == 0 {
		return nil
	}
	now := o.Now()
	deadline := now.Add(a.TTL + set.Grace)
	if p.fresh(a) {
		return nil
	}
	key := p.recentKey(a)
	var confirm []string
	if len(p.n.confirm) > 0 {
		confirm = p.n.confirm
	}
	it := &item{
		msg:      newMessage(p.n.newID(), o.Node, a, set.ScopeClient, 0, confirm),
		subject:  ApprovalSubject(o.SubjectPrefix, a.Group),
		deadline: deadline,
		local:    now,
	}
	var w *waiter
	if confirm != nil {
		w = p.expect(it.msg.ID)
		defer p.forget(it.msg.ID)
	}
	start := time.Now()
	var err error
	if w == nil && p.queueLen() > 0 {
		// NATS has not been storing approvals: go behind those waiting,
		// in order, without making this answer wait publish_timeout too.
		err = errBehindQueue
	} else {
		err = p.send(ctx, it)
	}
	if err != nil {
		p.enqueue(it)
	}
	if w == nil {
		// Published or queued: asked again, it is not queued twice.
		p.recent.Add(key, deadline)
		return nil
	}
	if err != nil {
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
	return fmt.Errorf("%w by %s within %s", ErrNotConfirmed, strings.Join(p.missing(it.msg.ID), ", "), o.ConfirmTimeout)
}

// fresh reports whether a needs no publish: its group is not published,
// it has no address, or it was published or queued (and confirmed, with
// confirm) with a lifetime still covering all of its TTL and half the grace, the
// firewall's own rule for sending an element again.
func (p *publisher) fresh(a enforce.Allowance) bool {
	if !p.n.publish[a.Group] || len(a.IPs) == 0 {
		return true
	}
	set := p.n.cur()
	prev, ok := p.recent.Get(p.recentKey(a))
	return ok && !prev.Before(p.n.opts.Now().Add(a.TTL+set.Grace/2))
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

// errBehindQueue says an approval was queued behind others, unsent.
var errBehindQueue = errors.New("fleet: approvals are waiting for NATS")

// errExpired says an item's lifetime is over: it is not published.
var errExpired = errors.New("fleet: approval expired before it was published")

// send publishes it with the lifetime left now and waits for the
// acknowledgement, bounded by publish_timeout and ctx. Not connected, it
// fails at once.
func (p *publisher) send(ctx context.Context, it *item) error {
	o := &p.n.opts
	left := it.deadline.Sub(o.Now())
	if left <= 0 {
		return errExpired
	}
	if !p.n.nc.IsConnected() {
		return nats.ErrConnectionClosed
	}
	m := it.msg
	m.LifetimeMS = left.Milliseconds()
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.PublishTimeout)
	defer cancel()
	// JetStream TTLs count whole seconds: round up, so the message never
	// leaves the stream before its element leaves the kernel.
	ttl := max(left.Truncate(time.Second), time.Second)
	if ttl < left {
		ttl += time.Second
	}
	_, err = p.n.js.PublishMsg(ctx, &nats.Msg{Subject: it.subject, Data: data},
		jetstream.WithMsgID(m.ID), jetstream.WithMsgTTL(ttl), jetstream.WithExpectStream(o.Stream))
	if err != nil {
		p.n.m.PublishFails.Inc()
		return err
	}
	p.n.m.Published.Inc()
	p.n.m.PublishLag.Observe(o.Now().Sub(it.local).Seconds())
	return nil
}

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

// flush publishes the queue in order until it is empty or a publish fails.
func (p *publisher) flush() {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.mu.Unlock()
			return
		}
		it := p.queue[0]
		p.mu.Unlock()
		err := p.send(p.n.ctx, it)
		if err != nil && err != errExpired {
			return
		}
		if err == errExpired {
			p.n.m.Dropped.Inc()
		}
		p.mu.Lock()
		if len(p.queue) > 0 && p.queue[0] == it {
			p.queue = p.queue[1:]
		}
		p.n.m.QueueLen.Set(float64(len(p.queue)))
		p.mu.Unlock()
	}
}
