package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/natstest"
)

var groupKey = func(ip netip.Addr) string { return elemKey("staff", netip.Addr{}, ip, https) }

// A late agent replays what is live with the lifetime left (not the
// lifetime published), and reports ready only once it holds it; an
// approval whose lifetime ended before the agent started is not installed.
func TestReplayLateAgentRemainingLifetime(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	fwA := newFakeFW(nil)
	a, _ := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}})
	enf := a.Wrap(fwA)
	short := netip.MustParseAddr("192.0.2.9")
	// Lifetime: TTL 0 plus the grace... of a node with a 1s grace.
	a.Configure(Settings{Grace: time.Second})
	if err := enf.Allow(context.Background(), allowance("staff", 0, short)); err != nil {
		t.Fatal(err)
	}
	a.Configure(Settings{Grace: testGrace})
	if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both published", func() bool { return a.QueueLen() == 0 && counter(a.m.Published) == 2 })
	// Long enough for the short approval to end and for a lifetime not
	// reduced by the wait to show: twice the difference allowed below.
	elapsed := time.Second + 2*testPublishTimeout
	time.Sleep(elapsed)
	fwB, _, _ := agent(t, servers, "gw-b", nil, "staff")
	// Installed before ReplayDone: no wait here.
	lb, ok := fwB.left(groupKey(ip1))
	if !ok {
		t.Fatal("replayed approval not installed when the agent reported ready")
	}
	la, _ := fwA.left(groupKey(ip1))
	if d := (la - lb).Abs(); d > testPublishTimeout {
		t.Errorf("lifetime left %s on gw-a, %s on the late agent: differ by more than publish_timeout", la, lb)
	}
	if fwB.has(groupKey(short)) {
		t.Error("an approval that ended before the agent started was installed")
	}
	if fwB.stale != 0 {
		t.Errorf("%d installs asked for a lifetime already over", fwB.stale)
	}
}

// NATS down when the resolver starts: it answers and enforces locally,
// queues (bounded, counting what it drops), and publishes what is still
// live once NATS is up, with the lifetime left.
func TestNATSDownAtStart(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	s.Stop()
	fwA := newFakeFW(nil)
	a, mA := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}, Queue: 2})
	enf := a.Wrap(fwA)
	ips := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}
	for _, ip := range ips {
		start := time.Now()
		if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip)); err != nil {
			t.Fatalf("Allow with NATS down: %v", err)
		}
		if d := time.Since(start); d > testPublishTimeout {
			t.Errorf("Allow with NATS down took %s, more than publish_timeout", d)
		}
		if !fwA.has(groupKey(ip)) {
			t.Errorf("%s not enforced locally", ip)
		}
	}
	if got, want := a.QueueLen(), 2; got != want {
		t.Errorf("queue holds %d, want %d (its bound)", got, want)
	}
	if got := counter(mA.Dropped); got != 1 {
		t.Errorf("dropped %d, want 1", got)
	}
	if got := counter(mA.Queued); got != 3 {
		t.Errorf("queued %d, want 3", got)
	}
	if got := counter(mA.Connected); got != 0 {
		t.Errorf("connected gauge %d with NATS down", got)
	}
	s.Restart()
	waitFor(t, "queue published", func() bool { return a.QueueLen() == 0 })
	// The gauge follows the client's reconnect callback, which may run
	// after the flusher has already found the connection up.
	waitFor(t, "connected gauge 1 after NATS came up", func() bool { return counter(mA.Connected) == 1 })
	if got := counter(mA.Published); got != 2 {
		t.Errorf("published %d, want 2", got)
	}
	fwB, _, _ := agent(t, servers, "gw-b", nil, "staff")
	if fwB.has(groupKey(ips[0])) {
		t.Error("the approval dropped from the full queue reached the agent")
	}
	for _, ip := range ips[1:] {
		lb, ok := fwB.left(groupKey(ip))
		if !ok {
			t.Fatalf("%s: queued approval not on the agent", ip)
		}
		la, _ := fwA.left(groupKey(ip))
		if d := (la - lb).Abs(); d > testPublishTimeout {
			t.Errorf("%s: lifetime left %s on gw-a, %s on gw-b", ip, la, lb)
		}
	}
}

// An approval queued while NATS is down and ending before NATS is back is
// never published.
func TestQueuedApprovalExpires(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	s.Stop()
	a, mA := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}, Settings: Settings{Grace: time.Millisecond}})
	if err := a.Wrap(newFakeFW(nil)).Allow(context.Background(), allowance("staff", 50*time.Millisecond, ip1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // past its lifetime
	s.Restart()
	waitFor(t, "queue emptied", func() bool { return a.QueueLen() == 0 })
	if got := counter(mA.Published); got != 0 {
		t.Errorf("published %d expired approvals", got)
	}
	if got := counter(mA.Dropped); got != 1 {
		t.Errorf("dropped %d, want 1", got)
	}
}

// NATS going away mid-run: the resolver keeps answering, queues, and
// publishes on reconnect; an agent subscribed before gets it after its own
// reconnect, and keeps what it had meanwhile.
func TestNATSDownMidRun(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	fwB, b, _ := agent(t, servers, "gw-b", nil, "staff")
	fwA := newFakeFW(nil)
	a, mA := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}})
	enf := a.Wrap(fwA)
	if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first approval on gw-b", func() bool { return fwB.has(groupKey(ip1)) })
	s.Stop()
	waitFor(t, "disconnected", func() bool { return !a.Connected() && !b.Connected() })
	// The gauge follows the client's disconnect callback, which runs on
	// its own goroutine after the connection is already down.
	waitFor(t, "connected gauge 0 with NATS down", func() bool { return counter(mA.Connected) == 0 })
	if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip2)); err != nil {
		t.Fatalf("Allow with NATS down: %v", err)
	}
	if !fwA.has(groupKey(ip2)) {
		t.Fatal("not enforced locally with NATS down")
	}
	if a.QueueLen() != 1 {
		t.Fatalf("queue holds %d, want 1", a.QueueLen())
	}
	if !fwB.has(groupKey(ip1)) {
		t.Error("agent lost an element while NATS was down")
	}
	s.Restart()
	waitFor(t, "second approval on gw-b", func() bool { return fwB.has(groupKey(ip2)) })
	if got := counter(mA.Published); got != 2 {
		t.Errorf("published %d, want 2", got)
	}
	if p := b.Problems(true); len(p) != 0 {
		t.Errorf("agent not ready after reconnect: %v", p)
	}
}

// A 3-server cluster with an R3 stream: the server leading the stream is
// killed while approvals are published; none is lost, for the agent
// following and for one that joins after.
func TestClusterNodeKilled(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	servers := []string{c.URLs()}
	fwB, _, _ := agent(t, servers, "gw-b", nil, "staff")
	fwA := newFakeFW(nil)
	a, _ := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}})
	enf := a.Wrap(fwA)
	ipN := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }
	const n = 20
	for i := range n {
		if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ipN(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "first half published", func() bool { return a.QueueLen() == 0 && counter(a.m.Published) == n })
	if info, err := a.js.Stream(context.Background(), DefaultStream); err != nil || info.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("stream not R3 in a cluster: %v", err)
	}
	leader := c.StreamLeader("", DefaultStream)
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	c.Servers[leader].Stop()
	for i := n; i < 2*n; i++ {
		if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ipN(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "second half published", func() bool { return a.QueueLen() == 0 && counter(a.m.Published) == 2*n })
	waitFor(t, "all on the following agent", func() bool { return fwB.count() == 2*n })
	fwC, _, _ := agent(t, servers, "gw-c", nil, "staff")
	if fwC.count() != 2*n {
		t.Errorf("late agent holds %d elements, want %d", fwC.count(), 2*n)
	}
	c.Servers[leader].Restart()
}

// An agent cut off from NATS while approvals come and go converges once
// healed: it gets those still live, with their lifetime left, never one
// that ended meanwhile, and nothing twice.
func TestAgentPartitionHeals(t *testing.T) {
	s := natstest.Run(t)
	p := natstest.NewProxy(t, s.URL()[len("nats://"):])
	fwB, b, _ := agent(t, []string{p.URL()}, "gw-b", nil, "staff")
	fwA := newFakeFW(nil)
	a, _ := node(t, Options{Servers: []string{s.URL()}, Node: "gw-a", Publish: []string{"staff"}})
	enf := a.Wrap(fwA)
	if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "before the partition", func() bool { return fwB.has(groupKey(ip1)) })
	p.Cut()
	waitFor(t, "agent disconnected", func() bool { return !b.Connected() })
	short := netip.MustParseAddr("192.0.2.77")
	a.Configure(Settings{Grace: time.Millisecond})
	if err := enf.Allow(context.Background(), allowance("staff", 200*time.Millisecond, short)); err != nil {
		t.Fatal(err)
	}
	a.Configure(Settings{Grace: testGrace})
	if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip2)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the short approval ends (and its JetStream TTL, 1s, passes)
	p.Heal()
	waitFor(t, "after healing", func() bool { return fwB.has(groupKey(ip2)) })
	la, _ := fwA.left(groupKey(ip2))
	lb, _ := fwB.left(groupKey(ip2))
	if d := (la - lb).Abs(); d > testPublishTimeout {
		t.Errorf("lifetime left %s on gw-a, %s on gw-b", la, lb)
	}
	if fwB.has(groupKey(short)) || fwB.stale != 0 {
		t.Errorf("an approval that ended during the partition was installed (stale installs: %d)", fwB.stale)
	}
	fwB.mu.Lock()
	defer fwB.mu.Unlock()
	for k, n := range fwB.calls {
		if n != 1 {
			t.Errorf("%s installed %d times", k, n)
		}
	}
}

// A resolver restarted (same node name, table kept): the approval it
// publishes again with less lifetime does not shorten the one live on
// agents, and its new approvals are not taken for duplicates of the old
// process's.
func TestResolverRestartKeepsLifetimes(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	fwA := newFakeFW(nil)
	a1, _ := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}})
	if err := a1.Wrap(fwA).Allow(context.Background(), allowance("staff", 5*time.Minute, ip1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "published", func() bool { return counter(a1.m.Published) == 1 })
	a1.Close()
	a2, m2 := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}})
	enf := a2.Wrap(fwA)
	// A new approval first: it is the new process's first message, whose
	// ID must differ from the old process's first.
	if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip2)); err != nil {
		t.Fatal(err)
	}
	if err := enf.Allow(context.Background(), allowance("staff", 10*time.Second, ip1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "published after restart", func() bool { return counter(m2.Published) == 2 })
	fwB, _, _ := agent(t, servers, "gw-b", nil, "staff")
	// The resolver's own element still lives from the 5m approval; the
	// agent's must live as long, not 10s.
	lb, ok := fwB.left(groupKey(ip1))
	la, _ := fwA.left(groupKey(ip1))
	if d := (la - lb).Abs(); !ok || d > testPublishTimeout {
		t.Errorf("agent holds %s (ok %t), the resolver %s, for the approval published with 5m before the restart", lb, ok, la)
	}
	if !fwB.has(groupKey(ip2)) {
		t.Error("an approval published after the restart is missing on the agent (taken for a duplicate?)")
	}
}

// Clocks skewed by hours between resolver and agents change nothing: the
// lifetime travels as a duration and ages are measured on the NATS
// server's clock.
func TestClockSkew(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	skewed := func(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }
	fwA := newFakeFW(skewed(time.Hour))
	a, _ := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}, Now: skewed(time.Hour)})
	fwB, _, _ := agent(t, servers, "gw-b", skewed(-time.Hour), "staff")
	if err := a.Wrap(fwA).Allow(context.Background(), allowance("staff", time.Minute, ip1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "on the agent behind", func() bool { return fwB.has(groupKey(ip1)) })
	// A late agent, its clock ahead, after time has passed: an age read
	// against its own clock would make the approval an hour old.
	time.Sleep(2 * testPublishTimeout)
	fwC, _, _ := agent(t, servers, "gw-c", skewed(2*time.Hour), "staff")
	la, _ := fwA.left(groupKey(ip1))
	for name, fw := range map[string]*fakeFW{"behind": fwB, "ahead, late": fwC} {
		l, ok := fw.left(groupKey(ip1))
		if !ok {
			t.Errorf("agent %s: not installed", name)
			continue
		}
		if d := (la - l).Abs(); d > testPublishTimeout {
			t.Errorf("agent %s: lifetime left %s, %s on the resolver", name, l, la)
		}
	}
}

// confirm: the resolver's Allow returns once the named agents applied the
// approval; if one of them does not within confirm_timeout it returns
// ErrNotConfirmed (the resolver then answers SERVFAIL, or answers anyway
// with fail_open), after that timeout and not much later.
func TestConfirm(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	fwB, _, _ := agent(t, servers, "gw-b", nil, "staff")
	tests := []struct {
		name    string
		confirm []string
		wantErr bool
	}{
		{"applied", []string{"gw-b"}, false},
		{"one missing", []string{"gw-b", "gw-z"}, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, m := node(t, Options{Servers: servers, Node: fmt.Sprintf("gw-a%d", i), Publish: []string{"staff"}, Confirm: tt.confirm})
			waitFor(t, "stream", func() bool { return a.Connected() })
			ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
			start := time.Now()
			err := a.Wrap(newFakeFW(nil)).Allow(context.Background(), allowance("staff", time.Minute, ip))
			took := time.Since(start)
			if tt.wantErr {
				if !errors.Is(err, ErrNotConfirmed) {
					t.Fatalf("Allow = %v, want ErrNotConfirmed", err)
				}
				if took < testConfirmTimeout {
					t.Errorf("gave up after %s, before confirm_timeout %s", took, testConfirmTimeout)
				}
				if took > testConfirmTimeout+testPublishTimeout {
					t.Errorf("gave up after %s, later than confirm_timeout %s plus publish_timeout", took, testConfirmTimeout)
				}
				if got := counter(m.Confirms.WithLabelValues("timeout")); got != 1 {
					t.Errorf("timeouts counted %d, want 1", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Allow = %v", err)
			}
			// Confirmed means installed: no wait.
			if !fwB.has(groupKey(ip)) {
				t.Error("confirmed but not on gw-b")
			}
			if got := counter(m.Confirms.WithLabelValues("ok")); got != 1 {
				t.Errorf("confirms counted %d, want 1", got)
			}
		})
	}
}

// NATS reachable but JetStream without a quorum (two of three servers
// down): one answer waits publish_timeout and queues its approval; those
// after it queue behind it without waiting; all are published, in order,
// once the quorum is back.
func TestNoQuorumQueuesWithoutWaiting(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	fwA := newFakeFW(nil)
	// Connected to the server that stays up only.
	a, mA := node(t, Options{Servers: []string{c.Servers[0].URL()}, Node: "gw-a", Publish: []string{"staff"}})
	enf := a.Wrap(fwA)
	if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "published", func() bool { return counter(mA.Published) == 1 })
	c.Servers[1].Stop()
	c.Servers[2].Stop()
	ipN := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }
	if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ipN(0))); err != nil {
		t.Fatal(err)
	}
	if a.QueueLen() != 1 || !a.Connected() {
		t.Fatalf("queue %d, connected %t: want the approval queued while connected", a.QueueLen(), a.Connected())
	}
	for i := 1; i <= 5; i++ {
		start := time.Now()
		if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ipN(i))); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took >= testPublishTimeout {
			t.Errorf("answer %d waited %s behind a queue, publish_timeout is %s", i, took, testPublishTimeout)
		}
	}
	c.Servers[1].Restart()
	c.Servers[2].Restart()
	waitFor(t, "queue published", func() bool { return a.QueueLen() == 0 })
	// The publish round that timed out gave its slot back: answers
	// publish in rounds again.
	a.pub.bmu.Lock()
	rounds := a.pub.rounds
	a.pub.bmu.Unlock()
	if rounds != 0 {
		t.Errorf("%d publish rounds still counted in flight", rounds)
	}
	fwB, _, _ := agent(t, []string{c.URLs()}, "gw-b", nil, "staff")
	if fwB.count() != 7 {
		t.Errorf("agent holds %d elements, want 7", fwB.count())
	}
}

// A resolver that stopped with approvals still queued (NATS was down)
// publishes what its kernel table holds once it is back: an agent that
// starts afterwards gets each approval with the lifetime left on the
// resolver, and what cannot or must not go out is skipped.
func TestRepublishHeld(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	s.Stop()
	fwA := newFakeFW(nil)
	a1, _ := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}})
	if err := a1.Wrap(fwA).Allow(context.Background(), allowance("staff", 5*time.Minute, ip1)); err != nil {
		t.Fatal(err)
	}
	if a1.QueueLen() != 1 {
		t.Fatalf("queue holds %d with NATS down, want 1", a1.QueueLen())
	}
	a1.Close() // the queued approval is gone with the process
	s.Restart()

	now := time.Now()
	held := func(group string, until time.Time, name string, ips ...netip.Addr) Held {
		a := allowance(group, 0, ips...)
		a.Name, a.Targets = name, nil
		return Held{Allowance: a, Until: until}
	}
	ip3 := netip.MustParseAddr("192.0.2.3")
	ip4 := netip.MustParseAddr("192.0.2.4")
	ip5 := netip.MustParseAddr("192.0.2.5")
	a2, m2 := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}})
	got := a2.Republish([]Held{
		held("staff", now.Add(5*time.Minute), "example.com", ip1), // what the table kept
		held("staff", now.Add(time.Minute), "example.org", ip2),
		held("guests", now.Add(time.Minute), "example.com", ip3), // a group this node does not publish
		held("staff", now.Add(-time.Second), "example.com", ip4), // expired
		held("staff", now.Add(time.Minute), "", ip5),             // no name for the agents to check
	})
	if got != 2 {
		t.Errorf("Republish queued %d, want 2", got)
	}
	waitFor(t, "republished", func() bool { return counter(m2.Published) == 2 })
	fwB, _, _ := agent(t, servers, "gw-b", nil, "staff", "guests")
	for _, tt := range []struct {
		ip   netip.Addr
		left time.Duration
	}{{ip1, 5 * time.Minute}, {ip2, time.Minute}} {
		lb, ok := fwB.left(groupKey(tt.ip))
		if want := time.Until(now.Add(tt.left)); !ok || (want-lb).Abs() > testPublishTimeout {
			t.Errorf("%s: agent holds %s (ok %t), want about %s", tt.ip, lb, ok, want)
		}
	}
	for _, ip := range []netip.Addr{ip3, ip4, ip5} {
		if fwB.has(groupKey(ip)) {
			t.Errorf("%s: republished, but it must not be", ip)
		}
	}
	if fwB.has(elemKey("guests", netip.Addr{}, ip3, https)) {
		t.Error("guests approval republished by a node that does not publish guests")
	}
	// Answered again, an approval just republished with enough lifetime is
	// not published once more.
	if err := a2.Wrap(fwA).Allow(context.Background(), allowance("staff", time.Minute, ip1)); err != nil {
		t.Fatal(err)
	}
	if got := counter(m2.Published); got != 2 {
		t.Errorf("published %d after answering a republished approval again, want 2", got)
	}
}
