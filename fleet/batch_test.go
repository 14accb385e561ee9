package fleet

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/internal/natstest"
	"github.com/egressd/egressd/policy"
)

// Answers that come while every publish round is in flight go out
// together: one JetStream store for up to maxBatch of them (more make more
// messages, sent at once), each approval with its own lifetime, all
// installed by the agent.
func TestWaitingApprovalsShareOneMessage(t *testing.T) {
	for _, tc := range []struct{ approvals, msgs int }{{20, 1}, {2*maxBatch + 10, 3}} {
		t.Run(fmt.Sprint(tc.approvals), func(t *testing.T) { testWaitingApprovals(t, tc.approvals, tc.msgs) })
	}
}

func testWaitingApprovals(t *testing.T, n, msgs int) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	fwB, _, mB := agent(t, servers, "gw-b", nil, "staff")
	a, mA := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}, PublishTimeout: natstest.ReadyLimit})
	waitFor(t, "connected", a.Connected)
	enf := a.Wrap(newFakeFW(nil))
	p := a.pub
	// Every round busy: the answers wait for the next one.
	p.bmu.Lock()
	p.rounds = publishRounds
	p.bmu.Unlock()
	ttl := func(i int) time.Duration { return time.Minute + time.Duration(i)*time.Second }
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, byte(2 + i/250), byte(i%250 + 1)}) }
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := enf.Allow(context.Background(), allowance("staff", ttl(i), addr(i))); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, "all waiting", func() bool {
		p.bmu.Lock()
		defer p.bmu.Unlock()
		return len(p.waiting) == n
	})
	// One round ends: the next takes every approval waiting.
	p.bmu.Lock()
	take := p.waiting
	p.waiting = nil
	p.bmu.Unlock()
	p.round(take)
	wg.Wait()
	if got := counter(mA.Published); got != n {
		t.Errorf("published %d, want %d", got, n)
	}
	if got := streamMsgs(t, s.URL()); got != uint64(msgs) {
		t.Errorf("%d messages stored, want %d", got, msgs)
	}
	waitFor(t, "all applied", func() bool { return counter(mB.Applied) == n })
	for i := range n {
		k := elemKey("staff", netip.Addr{}, addr(i), https)
		left, ok := fwB.left(k)
		// Each element lives its own TTL plus grace, less the time the
		// publish took (at most publish_timeout).
		if want := ttl(i) + testGrace; !ok || left > want || left < want-natstest.ReadyLimit {
			t.Errorf("%s: %s left on the agent, want up to %s", addr(i), left, want)
		}
	}
}

func streamMsgs(t testing.TB, url string) uint64 {
	t.Helper()
	js := natstest.JetStream(t, url)
	st, err := js.Stream(context.Background(), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}

// The approvals of one version 2 message are judged one by one: those this
// node rejects are counted by reason, the others installed.
func TestMessageApprovalsJudgedEach(t *testing.T) {
	s := natstest.Run(t)
	fw := newFakeFW(nil)
	fw.scoped = true
	recheck := func(group string, client, dest netip.Addr, names []string) ([]policy.PortRange, bool) {
		return https, names[0] == "example.com"
	}
	b, m := node(t, Options{Servers: []string{s.URL()}, Node: "gw-b", Enforce: []string{"staff"}, Apply: fw,
		Settings: Settings{ScopeClient: true, MaxLifetime: 10 * time.Minute, Recheck: recheck}})
	waitFor(t, "agent ready", b.ReplayDone)
	ok1 := Approval{Client: "10.0.0.5", IPs: []string{"192.0.2.1"}, Ports: []Port{{"tcp", 443, 443}}, Name: "example.com"}
	ok2 := ok1
	ok2.IPs = []string{"192.0.2.2"}
	evil := ok1
	evil.IPs, evil.Name = []string{"192.0.2.3"}, "evil.example"
	multicast := ok1
	multicast.IPs = []string{"224.0.0.1"}
	expired := ok1
	expired.IPs = []string{"192.0.2.4"}
	aps := []*Approval{&ok1, &evil, &ok2, &multicast, &expired}
	lifetimes := []time.Duration{time.Minute, time.Minute, 2 * time.Minute, time.Minute, 0}
	data := appendMessage(nil, "gw-a-x-1", "gw-a", "staff", ScopeClient, aps, lifetimes, nil)
	js := natstest.JetStream(t, s.URL())
	if _, err := js.Publish(context.Background(), ApprovalSubject(DefaultSubjectPrefix, "staff"), data); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "judged", func() bool {
		return counter(m.Applied)+counter(m.Rejected.WithLabelValues(ReasonPolicy))+
			counter(m.Rejected.WithLabelValues(ReasonAddress))+counter(m.Rejected.WithLabelValues(ReasonExpired)) == len(aps)
	})
	for _, r := range []string{ReasonPolicy, ReasonAddress, ReasonExpired} {
		if got := counter(m.Rejected.WithLabelValues(r)); got != 1 {
			t.Errorf("rejected{%s} = %d, want 1", r, got)
		}
	}
	if got := counter(m.Applied); got != 2 {
		t.Errorf("applied %d, want 2", got)
	}
	for ip, want := range map[string]time.Duration{"192.0.2.1": time.Minute, "192.0.2.2": 2 * time.Minute} {
		left, ok := fw.left(elemKey("staff", client1, netip.MustParseAddr(ip), https))
		if !ok || left > want {
			t.Errorf("%s: %s left, want at most its own lifetime %s", ip, left, want)
		}
	}
	if fw.count() != 2 {
		t.Errorf("firewall holds %d elements, want 2", fw.count())
	}
}

// The encoder writes what encoding/json reads back as the same message.
func TestAppendMessageIsJSON(t *testing.T) {
	odd := Approval{Client: "10.0.0.5", IPs: []string{"192.0.2.1", "2001:db8::1"}, Ports: []Port{{"tcp", 1, 2}, {"udp", 53, 53}},
		Name: `we\"ird\\.example\010.<&>\195\169`, Targets: []string{"a.example.", "b.example."}}
	plain := Approval{Client: "10.0.0.6", IPs: []string{"192.0.2.9"}, Name: "x.example."}
	// Names are ASCII in presentation form; the group carries the UTF-8.
	data := appendMessage(nil, "id-1", "gw-a", "staffé", ScopeClient, []*Approval{&odd, &plain},
		[]time.Duration{1500 * time.Millisecond, time.Hour}, []string{"gw-b", "gw-c"})
	m, err := decode(data)
	if err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	odd.LifetimeMS, plain.LifetimeMS = 1500, time.Hour.Milliseconds()
	if m.V != Version || m.ID != "id-1" || m.Node != "gw-a" || m.Group != "staffé" || m.Scope != ScopeClient ||
		len(m.Confirm) != 2 || m.Confirm[1] != "gw-c" || len(m.Approvals) != 2 {
		t.Fatalf("decoded %+v", m)
	}
	for i, want := range []Approval{odd, plain} {
		got := m.Approvals[i]
		if got.Client != want.Client || got.Name != want.Name || got.LifetimeMS != want.LifetimeMS ||
			len(got.IPs) != len(want.IPs) || len(got.Ports) != len(want.Ports) || len(got.Targets) != len(want.Targets) {
			t.Errorf("approval %d: got %+v, want %+v", i, got, want)
		}
	}
}

// Approvals queued while NATS is down are all published once it is back,
// more of them than one flush has in flight, each exactly once.
func TestLongQueueFlushed(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	a, mA := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}})
	waitFor(t, "connected", a.Connected)
	s.Stop()
	waitFor(t, "disconnected", func() bool { return !a.Connected() })
	enf := a.Wrap(newFakeFW(nil))
	n := flushWindow*maxBatch + 100
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 9, byte(i / 250), byte(i%250 + 1)}) }
	for i := range n {
		if err := enf.Allow(context.Background(), allowance("staff", time.Minute, addr(i))); err != nil {
			t.Fatal(err)
		}
	}
	if a.QueueLen() != n {
		t.Fatalf("queue holds %d, want %d", a.QueueLen(), n)
	}
	s.Restart()
	waitFor(t, "queue published", func() bool { return a.QueueLen() == 0 })
	if got := counter(mA.Published); got != n {
		t.Errorf("published %d, want %d", got, n)
	}
	fwB, _, mB := agent(t, servers, "gw-b", nil, "staff")
	if fwB.count() != n || counter(mB.Applied) != n {
		t.Errorf("agent holds %d elements after %d applied, want %d", fwB.count(), counter(mB.Applied), n)
	}
}

// gateFW blocks every Allow until released, and records the most in
// flight at once.
type gateFW struct {
	gate              chan struct{}
	mu                sync.Mutex
	inFlight, maxSeen int
	calls             int
}

func (f *gateFW) Allow(context.Context, enforce.Allowance) error {
	f.mu.Lock()
	f.inFlight++
	f.calls++
	f.maxSeen = max(f.maxSeen, f.inFlight)
	f.mu.Unlock()
	<-f.gate
	f.mu.Lock()
	f.inFlight--
	f.mu.Unlock()
	return nil
}

func (f *gateFW) Close() error { return nil }

// The approvals of one message are installed concurrently, but at most
// applyParallel at once, however many the message holds.
func TestMessageApprovalsBoundedParallel(t *testing.T) {
	fw := &gateFW{gate: make(chan struct{})}
	n, m := node(t, Options{Servers: []string{"nats://127.0.0.1:1"}, Node: "gw-b", Enforce: []string{"staff"}, Apply: fw})
	const size = 3 * applyParallel
	aps := make([]*Approval, size)
	lifetimes := make([]time.Duration, size)
	for i := range aps {
		aps[i] = &Approval{IPs: []string{netip.AddrFrom4([4]byte{192, 0, byte(2 + i/250), byte(i%250 + 1)}).String()}, Name: "example.com"}
		lifetimes[i] = time.Minute
	}
	data := appendMessage(nil, "gw-a-x-1", "gw-a", "staff", ScopeGroup, aps, lifetimes, nil)
	done := make(chan struct{})
	go func() {
		n.app.apply(ApprovalSubject(DefaultSubjectPrefix, "staff"), data, time.Now())
		close(done)
	}()
	waitFor(t, "applyParallel installs in flight", func() bool {
		fw.mu.Lock()
		defer fw.mu.Unlock()
		return fw.inFlight >= applyParallel
	})
	close(fw.gate)
	<-done
	if fw.maxSeen > applyParallel {
		t.Errorf("%d installs in flight at once, want at most %d", fw.maxSeen, applyParallel)
	}
	if fw.calls != size || counter(m.Applied) != size {
		t.Errorf("%d installs, %d applied, want %d", fw.calls, counter(m.Applied), size)
	}
}

// An approval is installed with the generation of the policy it was
// checked against, read before the check: a reload during the check (or
// after it, before the install) leaves the allowance older than the
// firewall's policy, and the firewall re-checks it under the new one.
func TestAppliedAllowanceCarriesGeneration(t *testing.T) {
	s := natstest.Run(t)
	fw := newFakeFW(nil)
	var gen atomic.Uint64
	gen.Store(7)
	recheck := func(group string, client, dest netip.Addr, names []string) ([]policy.PortRange, bool) {
		gen.Add(1) // a reload lands while the approval is checked
		return nil, true
	}
	b, m := node(t, Options{Servers: []string{s.URL()}, Node: "gw-b", Enforce: []string{"staff"}, Apply: fw,
		Settings: Settings{MaxLifetime: 10 * time.Minute, Recheck: recheck, Generation: gen.Load}})
	waitFor(t, "agent ready", b.ReplayDone)
	ap := Approval{IPs: []string{"192.0.2.1"}, Name: "example.com"}
	data := appendMessage(nil, "gw-a-x-1", "gw-a", "staff", ScopeGroup, []*Approval{&ap}, []time.Duration{time.Minute}, nil)
	js := natstest.JetStream(t, s.URL())
	if _, err := js.Publish(context.Background(), ApprovalSubject(DefaultSubjectPrefix, "staff"), data); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "applied", func() bool { return counter(m.Applied) == 1 })
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if len(fw.gens) != 1 || fw.gens[0] != 7 {
		t.Fatalf("Allow got generations %v, want [7]: the policy's before the check", fw.gens)
	}
}
