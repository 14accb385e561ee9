package fleet

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/policy"
)

const (
	// applyParallel bounds the approvals being installed at once.
	applyParallel = 64
	// applyTimeout bounds one install into the local firewall.
	applyTimeout = 5 * time.Second
	// clockInterval is how often the NATS server's clock is read again.
	clockInterval = 30 * time.Second
	// replayPoll is how often, until the replay is done, the consumer is
	// asked whether anything is left to deliver (messages that expire
	// while the replay runs are never delivered, so the last one delivered
	// need not say "nothing pending").
	replayPoll = 100 * time.Millisecond
	// subscribeBackoff bounds the wait between attempts to subscribe.
	subscribeBackoff = 5 * time.Second
)

// applier installs the approvals of other nodes into the local firewall.
type applier struct {
	n        *Node
	replayed atomic.Bool
	sem      chan struct{}
	// clock pairs a reading of the NATS server's clock with the local
	// time it was taken at: message ages are measured on the server's
	// clock, which also stamped them, so skew between nodes does not
	// change lifetimes. The local time carries a monotonic reading, so a
	// step of the local wall clock changes nothing either.
	clock   atomic.Pointer[clockSample]
	lastSeq atomic.Uint64 // stream sequence of the last message taken
	// clockRTT is the round trip of the request clock was read from
	// (its error is at most half of it), clockAt when it was read.
	clockRTT time.Duration
	clockAt  time.Time

	mu   sync.Mutex
	cons jetstream.Consumer
	cc   jetstream.ConsumeContext
}

func newApplier(n *Node) *applier {
	return &applier{n: n, sem: make(chan struct{}, applyParallel)}
}

func (a *applier) subjects() []string {
	var s []string
	for _, g := range a.n.opts.Enforce {
		s = append(s, ApprovalSubject(a.n.opts.SubjectPrefix, g))
	}
	return s
}

// run subscribes once connected, then keeps the server clock reading fresh
// and detects the end of the replay.
func (a *applier) run() {
	defer a.n.wg.Done()
	ctx := a.n.ctx
	// Retries back off to subscribeBackoff: a stream missing for want of
	// permission to create it is not logged many times a second.
	retry := a.n.opts.ReconnectWait
	for {
		if a.n.nc.IsConnected() {
			err := a.subscribe(ctx)
			if err == nil {
				break
			}
			a.n.log.Warn("fleet: cannot subscribe to approvals yet", "err", err)
			retry = min(2*retry, subscribeBackoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
	poll := time.NewTicker(replayPoll)
	defer poll.Stop()
	lastClock := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		}
		replayed := a.replayed.Load()
		if replayed && time.Since(lastClock) < clockInterval {
			continue
		}
		ictx, cancel := context.WithTimeout(ctx, a.n.opts.PublishTimeout*4)
		sent := a.n.opts.Now()
		info, err := a.cons.Info(ictx)
		cancel()
		if err != nil {
			continue
		}
		a.setClock(info, sent)
		lastClock = time.Now()
		if !replayed && info.NumPending == 0 && a.lastSeq.Load() >= info.Delivered.Stream {
			a.finishReplay()
		}
	}
}

// consumeHeartbeat is how often the server tells an idle agent's
// consumer it is still there. Two missed ones make the library recreate
// the consumer: when the NATS server holding it dies, the agent takes
// approvals again within a few seconds instead of the library's default
// of ten plus (five-second heartbeats for ordered consumers).
const consumeHeartbeat = time.Second

func (a *applier) subscribe(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, a.n.opts.PublishTimeout*4)
	defer cancel()
	if err := a.n.ensureStream(sctx); err != nil {
		return err
	}
	sent := a.n.opts.Now()
	cons, err := a.n.js.OrderedConsumer(sctx, a.n.opts.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: a.subjects(),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return err
	}
	info := cons.CachedInfo()
	a.setClock(info, sent)
	a.cons = cons
	if info.NumPending == 0 {
		a.finishReplay()
	}
	cc, err := cons.Consume(a.handle, jetstream.PullHeartbeat(consumeHeartbeat))
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.cc = cc
	a.mu.Unlock()
	return nil
}

func (a *applier) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cc != nil {
		a.cc.Stop()
	}
}

// setClock takes the server's clock from info, the answer to a request
// sent at sent (local clock): the server read its clock about halfway
// through the round trip. A reading from a slower round trip than the one
// in use replaces it only once that one is old.
func (a *applier) setClock(info *jetstream.ConsumerInfo, sent time.Time) {
	if info == nil || info.TimeStamp.IsZero() {
		return
	}
	now := a.n.opts.Now()
	rtt := now.Sub(sent)
	if !a.clockAt.IsZero() && rtt > a.clockRTT && now.Sub(a.clockAt) < 5*clockInterval {
		return
	}
	a.clockRTT, a.clockAt = rtt, now
	a.clock.Store(&clockSample{server: info.TimeStamp, local: sent.Add(rtt / 2)})
}

// clockSample is the server's clock read at local time local.
type clockSample struct {
	server, local time.Time
}

// serverNow is the NATS server's clock now, as this node estimates it.
func (a *applier) serverNow() time.Time {
	now := a.n.opts.Now()
	c := a.clock.Load()
	if c == nil { // the server did not say its time: trust ours
		return now
	}
	return c.server.Add(now.Sub(c.local))
}

// finishReplay waits until every approval taken so far is installed, then
// reports the replay done.
func (a *applier) finishReplay() {
	if a.replayed.Load() {
		return
	}
	for range applyParallel {
		a.sem <- struct{}{}
	}
	for range applyParallel {
		<-a.sem
	}
	if !a.replayed.Swap(true) {
		a.n.m.ReplayDone.Set(1)
		a.n.log.Info("fleet: replay of live approvals done")
	}
}

func (a *applier) handle(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		a.n.m.Rejected.WithLabelValues(ReasonMalformed).Inc()
		return
	}
	subject, data := msg.Subject(), msg.Data()
	a.sem <- struct{}{}
	go func() {
		defer func() { <-a.sem }()
		a.apply(subject, data, meta.Timestamp)
	}()
	a.lastSeq.Store(meta.Sequence.Stream)
	if meta.NumPending == 0 && !a.replayed.Load() {
		a.finishReplay()
	}
}

// apply validates one message and installs its approvals; an approval
// that fails is counted by reason and logged at debug level, never
// installed (a malformed message is counted once). The approvals of one
// message are installed concurrently, so the firewall takes them in one
// transaction.
func (a *applier) apply(subject string, data []byte, stored time.Time) {
	m, err := decode(data)
	if err == nil && m.Node == a.n.opts.Node {
		return // this node's own approval: its firewall has it
	}
	if err == nil {
		err = a.checkMessage(subject, m)
	}
	if err != nil {
		a.rejected(subject, err)
		return
	}
	failed := atomic.Int32{}
	if len(m.Approvals) == 1 {
		if !a.applyOne(subject, &m, &m.Approvals[0], stored) {
			failed.Add(1)
		}
	} else {
		// At most applyParallel at once: a message may hold up to
		// maxApprovals.
		var wg sync.WaitGroup
		var next atomic.Int32
		for range min(len(m.Approvals), applyParallel) {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < len(m.Approvals); i = int(next.Add(1)) - 1 {
					if !a.applyOne(subject, &m, &m.Approvals[i], stored) {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
	}
	if failed.Load() == 0 && slices.Contains(m.Confirm, a.n.opts.Node) {
		ack, _ := json.Marshal(Applied{V: Version1, ID: m.ID, Node: a.n.opts.Node})
		if err := a.n.nc.Publish(AppliedSubject(a.n.opts.SubjectPrefix, a.n.opts.Node), ack); err != nil {
			a.n.log.Debug("fleet: cannot confirm approval", "id", m.ID, "err", err)
		}
	}
}

func (a *applier) rejected(subject string, err error) {
	a.n.m.Rejected.WithLabelValues(reasonOf(err)).Inc()
	a.n.log.Debug("fleet: approval not applied", "subject", subject, "err", err)
}

// applyOne checks and installs one approval of m; false when it was not
// installed.
func (a *applier) applyOne(subject string, m *Message, ap *Approval, stored time.Time) bool {
	al := ap.allowance(m.Group, m.Scope, 0)
	left, err := a.check(m, ap, &al, stored)
	if err == nil {
		ctx, cancel := context.WithTimeout(a.n.ctx, applyTimeout)
		// The local firewall adds its grace to the TTL: ask for what
		// makes the element live exactly what is left.
		al.TTL = left - a.n.cur().Grace
		err = a.n.opts.Apply.Allow(ctx, al)
		cancel()
		if err != nil {
			err = reject(ReasonApplyFailed, "%v", err)
		}
	}
	if err != nil {
		a.rejected(subject, err)
		return false
	}
	a.n.m.Applied.Inc()
	if a.replayed.Load() {
		a.n.m.ApplyLag.Observe(max(a.serverNow().Sub(stored), 0).Seconds())
	}
	return true
}

// checkMessage checks what m's approvals share: a group enforced here, on
// its own subject, and this node's scope.
func (a *applier) checkMessage(subject string, m Message) error {
	if !a.n.enforce[m.Group] || subject != ApprovalSubject(a.n.opts.SubjectPrefix, m.Group) {
		return reject(ReasonForeign, "group %q on %s", m.Group, subject)
	}
	if (m.Scope == ScopeClient) != a.n.cur().ScopeClient {
		return reject(ReasonScope, "scope %s", m.Scope)
	}
	return nil
}

// check returns the lifetime left of ap (al as the firewall would get
// it), of m stored at stored (server clock), or why it must not be
// installed here.
func (a *applier) check(m *Message, ap *Approval, al *enforce.Allowance, stored time.Time) (time.Duration, error) {
	set := a.n.cur()
	if m.Scope == ScopeClient && neverApproved(al.Client) {
		return 0, reject(ReasonAddress, "client %s", al.Client)
	}
	for _, ip := range al.IPs {
		if neverApproved(ip) {
			return 0, reject(ReasonAddress, "address %s", ip)
		}
	}
	lifetime := time.Duration(ap.LifetimeMS) * time.Millisecond
	if set.MaxLifetime > 0 && lifetime > set.MaxLifetime {
		return 0, reject(ReasonTooLong, "lifetime %s, max %s", lifetime, set.MaxLifetime)
	}
	age := max(a.serverNow().Sub(stored), 0)
	left := lifetime - age
	if left <= 0 {
		return 0, reject(ReasonExpired, "lifetime %s, stored %s ago", lifetime, age)
	}
	if set.Generation != nil {
		al.Generation = set.Generation()
	}
	if set.Recheck != nil {
		names := make([]string, 0, 1+len(ap.Targets))
		names = append(append(names, ap.Name), ap.Targets...)
		for _, ip := range al.IPs {
			ports, ok := set.Recheck(m.Group, al.Client, ip, names)
			if !ok {
				return 0, reject(ReasonPolicy, "%s for %s not approved here", ip, ap.Name)
			}
			if !policy.PortsWithin(al.Ports, ports) {
				return 0, reject(ReasonPolicy, "ports of %s wider than approved here", ap.Name)
			}
		}
	}
	return left, nil
}
