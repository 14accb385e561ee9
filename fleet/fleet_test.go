package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/internal/natstest"
	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/policy"
)

// Timeouts of the nodes under test. Every bound a test asserts follows
// from them.
const (
	testPublishTimeout = 250 * time.Millisecond
	testConfirmTimeout = 500 * time.Millisecond
	testGrace          = 5 * time.Second
	// settle bounds how long an approval may take to reach an agent in
	// these tests: reconnects, cluster elections and replays included.
	settle = natstest.ReadyLimit
)

// fakeFW is a firewall that, like the nftables backend, keeps for each
// element the later of its deadline and the one asked for (TTL plus
// grace); it never shortens an element.
type fakeFW struct {
	now    func() time.Time
	grace  time.Duration
	scoped bool // firewall scope "client": elements are per client

	mu    sync.Mutex
	elems map[string]time.Time
	calls map[string]int
	stale int      // Allows that asked for a deadline already past
	fleet int      // Allows marked as another node's approval (FromFleet)
	gens  []uint64 // the policy generation of every Allow, in order
}

func newFakeFW(now func() time.Time) *fakeFW {
	if now == nil {
		now = time.Now
	}
	return &fakeFW{now: now, grace: testGrace, elems: map[string]time.Time{}, calls: map[string]int{}}
}

func elemKey(group string, client netip.Addr, ip netip.Addr, ports []policy.PortRange) string {
	k := group + "|"
	if client.IsValid() {
		k += client.String()
	}
	k += "|" + ip.String()
	for _, p := range ports {
		k += fmt.Sprintf("|%d:%d-%d", p.Proto, p.From, p.To)
	}
	return k
}

func (f *fakeFW) Allow(_ context.Context, a enforce.Allowance) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	d := now.Add(a.TTL + f.grace)
	if !d.After(now) {
		f.stale++
	}
	f.gens = append(f.gens, a.Generation)
	if a.FromFleet {
		f.fleet++
	}
	for _, ip := range a.IPs {
		var client netip.Addr
		if f.scoped {
			client = a.Client
		}
		k := elemKey(a.Group, client, ip, a.Ports)
		f.calls[k]++
		if cur, ok := f.elems[k]; !ok || d.After(cur) {
			f.elems[k] = d
		}
	}
	return nil
}

func (f *fakeFW) Close() error { return nil }

// left is how long the element k still lives; false when it does not.
func (f *fakeFW) left(k string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.elems[k]
	if !ok {
		return 0, false
	}
	l := d.Sub(f.now())
	return l, l > 0
}

func (f *fakeFW) has(k string) bool {
	_, ok := f.left(k)
	return ok
}

func (f *fakeFW) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.elems)
}

// node starts a fleet node for the test, closed by its cleanup.
func node(t testing.TB, o Options) (*Node, *Metrics) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	o.Metrics = m
	if o.PublishTimeout == 0 {
		o.PublishTimeout = testPublishTimeout
	}
	if o.ConfirmTimeout == 0 {
		o.ConfirmTimeout = testConfirmTimeout
	}
	if o.Grace == 0 {
		o.Grace = testGrace
	}
	o.ReconnectWait = 20 * time.Millisecond
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, m
}

// agent starts a node enforcing groups into a new fake firewall and waits
// until it has replayed.
func agent(t testing.TB, servers []string, name string, now func() time.Time, groups ...string) (*fakeFW, *Node, *Metrics) {
	t.Helper()
	fw := newFakeFW(now)
	n, m := node(t, Options{Servers: servers, Node: name, Enforce: groups, Apply: fw, Now: now})
	if !wait.Until(settle, 5*time.Millisecond, n.ReplayDone) {
		t.Fatalf("agent %s: replay not done after %s", name, settle)
	}
	return fw, n, m
}

var (
	client1 = netip.MustParseAddr("10.0.0.5")
	ip1     = netip.MustParseAddr("192.0.2.1")
	ip2     = netip.MustParseAddr("2001:db8::2")
	https   = []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}}
)

func allowance(group string, ttl time.Duration, ips ...netip.Addr) enforce.Allowance {
	return enforce.Allowance{Group: group, Client: client1, IPs: ips, Ports: https, TTL: ttl, Name: "example.com", Targets: []string{"cdn.example.net"}}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !wait.Until(settle, 5*time.Millisecond, cond) {
		t.Fatalf("%s: not after %s", what, settle)
	}
}

func counter(c prometheus.Collector) int { return int(testutil.ToFloat64(c)) }

// An approval allowed through the publisher reaches an agent enforcing its
// group with the same lifetime left, ports and all; an agent enforcing
// another group does not get it.
func TestPublishApplyRoundTrip(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	fwB, _, mB := agent(t, servers, "gw-b", nil, "staff")
	fwC, _, _ := agent(t, servers, "gw-c", nil, "guests")
	fwA := newFakeFW(nil)
	a, mA := node(t, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"}})
	enf := a.Wrap(fwA)
	// A group not published stays local.
	if err := enf.Allow(context.Background(), allowance("guests", time.Minute, ip1)); err != nil {
		t.Fatal(err)
	}
	if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip1, ip2)); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []netip.Addr{ip1, ip2} {
		k := elemKey("staff", netip.Addr{}, ip, https)
		waitFor(t, "element on gw-b", func() bool { return fwB.has(k) })
		la, _ := fwA.left(k)
		lb, _ := fwB.left(k)
		// The lifetime sent is read when the publish starts, and the
		// publish is acknowledged within publish_timeout.
		if d := (la - lb).Abs(); d > testPublishTimeout {
			t.Errorf("%s: lifetime left %s on gw-a, %s on gw-b: differ by more than publish_timeout", ip, la, lb)
		}
	}
	if fwB.count() != 2 {
		t.Errorf("gw-b holds %d elements, want 2", fwB.count())
	}
	// gw-b's firewall is told the approval is another node's (so that its
	// restart does not publish it as gw-b's); gw-a's own answers are not.
	fwB.mu.Lock()
	if fwB.fleet != 1 {
		t.Errorf("gw-b applied %d allowances marked FromFleet, want 1", fwB.fleet)
	}
	fwB.mu.Unlock()
	fwA.mu.Lock()
	if fwA.fleet != 0 {
		t.Errorf("gw-a's own answers reached its firewall marked FromFleet %d times, want 0", fwA.fleet)
	}
	fwA.mu.Unlock()
	if got := counter(mA.Published); got != 1 {
		t.Errorf("published %d, want 1", got)
	}
	if got := counter(mB.Applied); got != 1 {
		t.Errorf("applied %d, want 1", got)
	}
	if counter(mA.ReplayDone) != 1 || counter(mB.ReplayDone) != 1 {
		t.Errorf("replay_done gauge %d on the resolver, %d on the agent; want 1 and 1", counter(mA.ReplayDone), counter(mB.ReplayDone))
	}
	if fwC.count() != 0 {
		t.Errorf("gw-c (guests) holds %d elements, want 0", fwC.count())
	}
	// The same approval again, its element still living long enough: not
	// published again.
	if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip1, ip2)); err != nil {
		t.Fatal(err)
	}
	if got := counter(mA.Published); got != 1 {
		t.Errorf("published %d after the same approval again, want 1", got)
	}
}

// A resolver without a firewall of its own (backend none) publishes for
// its agents: an approval is in effect once published, so cache hits are
// answered without waiting; asked again while NATS is down, it is queued
// once.
func TestPublisherOverNone(t *testing.T) {
	s := natstest.Run(t)
	a, m := node(t, Options{Servers: []string{s.URL()}, Node: "central", Publish: []string{"staff"}})
	waitFor(t, "connected", a.Connected)
	enf := a.Wrap(&enforce.None{})
	c, ok := enf.(enforce.InEffectChecker)
	if !ok {
		t.Fatal("the publisher is no InEffectChecker")
	}
	al := allowance("staff", time.Minute, ip1)
	if c.InEffect(al) {
		t.Error("in effect before it was published")
	}
	if !c.InEffect(allowance("guests", time.Minute, ip1)) {
		t.Error("a group not published is not in effect over backend none")
	}
	if err := enf.Allow(context.Background(), al); err != nil {
		t.Fatal(err)
	}
	if !c.InEffect(al) {
		t.Error("not in effect once published")
	}
	if got := counter(m.Published); got != 1 {
		t.Errorf("published %d, want 1", got)
	}
	if c.InEffect(allowance("staff", 2*time.Minute, ip1)) {
		t.Error("in effect for a TTL longer than the one published")
	}
	s.Stop()
	waitFor(t, "disconnected", func() bool { return !a.Connected() })
	for range 3 {
		if err := enf.Allow(context.Background(), allowance("staff", time.Minute, ip2)); err != nil {
			t.Fatal(err)
		}
	}
	if got := counter(m.Queued); got != 1 {
		t.Errorf("the same approval queued %d times", got)
	}
}

// Over backend none, an answer decided under a policy a reload has
// replaced is asked about again before it is published: refused with
// ErrStale (the resolver decides again) when the current policy denies
// it, published when it allows it or was decided under the current one.
func TestPublisherOverNoneRefusesStale(t *testing.T) {
	s := natstest.Run(t)
	var gen atomic.Uint64
	gen.Store(2)
	deny := map[string]bool{"denied.example.": true}
	var asked atomic.Int32
	recheck := func(group string, client, dest netip.Addr, names []string) ([]policy.PortRange, bool) {
		asked.Add(1)
		for _, n := range names {
			if deny[n] {
				return nil, false
			}
		}
		return nil, true
	}
	a, m := node(t, Options{Servers: []string{s.URL()}, Node: "central", Publish: []string{"staff"},
		Settings: Settings{Recheck: recheck, Generation: gen.Load}})
	waitFor(t, "connected", a.Connected)
	enf := a.Wrap(&enforce.None{})
	tests := []struct {
		name       string
		generation uint64
		qname      string
		targets    []string
		ip         netip.Addr
		stale      bool
		asks       int32
	}{
		{"current policy, not asked", 2, "denied.example.", nil, netip.MustParseAddr("192.0.2.11"), false, 0},
		{"generation unknown, not asked", 0, "denied.example.", nil, netip.MustParseAddr("192.0.2.12"), false, 0},
		{"older, still allowed", 1, "ok.example.", nil, netip.MustParseAddr("192.0.2.13"), false, 1},
		{"older, name now denied", 1, "denied.example.", nil, netip.MustParseAddr("192.0.2.14"), true, 1},
		{"older, target now denied", 1, "ok.example.", []string{"denied.example."}, netip.MustParseAddr("192.0.2.15"), true, 1},
		{"older, no name to ask about", 1, "", nil, netip.MustParseAddr("192.0.2.16"), true, 0},
	}
	published := 0
	for _, tt := range tests {
		asked.Store(0)
		al := enforce.Allowance{Group: "staff", Client: client1, IPs: []netip.Addr{tt.ip}, TTL: time.Minute,
			Name: tt.qname, Targets: tt.targets, Generation: tt.generation}
		err := enf.Allow(context.Background(), al)
		if got := errors.Is(err, enforce.ErrStale); got != tt.stale {
			t.Errorf("%s: Allow = %v, want stale %t", tt.name, err, tt.stale)
		}
		if got := asked.Load(); got != tt.asks {
			t.Errorf("%s: policy asked %d times, want %d", tt.name, got, tt.asks)
		}
		if !tt.stale {
			published++
		}
		if got := counter(m.Published); got != published {
			t.Errorf("%s: published %d, want %d", tt.name, got, published)
		}
	}
}

// Options that cannot work are refused at Start.
func TestStartRefuses(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"no servers", Options{Node: "gw-a"}},
		{"node with a dot", Options{Servers: []string{"nats://127.0.0.1:1"}, Node: "gw.a"}},
		{"group with a wildcard", Options{Servers: []string{"nats://127.0.0.1:1"}, Node: "gw-a", Publish: []string{"st*"}}},
		{"enforce without a firewall", Options{Servers: []string{"nats://127.0.0.1:1"}, Node: "gw-a", Enforce: []string{"staff"}}},
		{"confirm by itself", Options{Servers: []string{"nats://127.0.0.1:1"}, Node: "gw-a", Publish: []string{"staff"}, Confirm: []string{"gw-b", "gw-a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Start(tt.o)
			if err == nil {
				n.Close()
				t.Fatal("started")
			}
		})
	}
}
