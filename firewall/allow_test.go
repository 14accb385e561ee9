package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/internal/fakeclock"
	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

func allowSpec() Spec {
	return Spec{
		Table: "egressd", Hooks: []string{HookForward}, Grace: 5 * time.Second,
		Groups: []GroupSpec{{Name: "servers", Clients: prefixes("10.1.0.0/16", "fd00:1::/64")}},
	}
}

func startNFT(t *testing.T, ns *testNS, spec Spec, clock *fakeclock.Clock) *NFT {
	t.Helper()
	return startNFTWith(t, ns, spec, clock, Options{})
}

// startUnwatchedNFT starts a backend that neither watches nor checks its
// table, for tests that break the table on purpose.
func startUnwatchedNFT(t *testing.T, ns *testNS, spec Spec, clock *fakeclock.Clock) *NFT {
	t.Helper()
	return startNFTWith(t, ns, spec, clock, Options{NoWatch: true, VerifyEvery: -1})
}

func startNFTWith(t *testing.T, ns *testNS, spec Spec, clock *fakeclock.Clock, opts Options) *NFT {
	t.Helper()
	opts.NetNS = ns.fd
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	if clock != nil {
		opts.Now = clock.Now
	}
	n, err := NewNFTables(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// elements reads a set's live elements back from the kernel.
func elements(t testing.TB, ns *testNS, table, set string) []nftables.SetElement {
	t.Helper()
	c := ns.conn(t)
	s, err := c.GetSetByName(&nftables.Table{Family: nftables.TableFamilyINet, Name: table}, set)
	if err != nil {
		t.Fatalf("get set %s: %v", set, err)
	}
	elems, err := c.GetSetElements(s)
	if err != nil {
		t.Fatalf("get elements of %s: %v", set, err)
	}
	return elems
}

// onlyElement lists a set of table egressd and fails the test unless it
// holds exactly one element.
func onlyElement(t *testing.T, ns *testNS, set string) nftables.SetElement {
	t.Helper()
	elems := elements(t, ns, "egressd", set)
	if len(elems) != 1 {
		t.Fatalf("%s = %v, want exactly one element", set, elems)
	}
	return elems[0]
}

func findElement(elems []nftables.SetElement, key, keyEnd []byte) (nftables.SetElement, bool) {
	for _, e := range elems {
		if bytes.Equal(e.Key, key) && (keyEnd == nil || bytes.Equal(e.KeyEnd, keyEnd)) {
			return e, true
		}
	}
	return nftables.SetElement{}, false
}

func mustAllow(t testing.TB, n *NFT, a Allowance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Allow(ctx, a); err != nil {
		t.Fatalf("Allow(%+v): %v", a, err)
	}
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// checkTimeout asserts the kernel element carries the wanted timeout and
// has at most that much, and not much less, left.
func checkTimeout(t *testing.T, e nftables.SetElement, want time.Duration) {
	t.Helper()
	if e.Timeout != want {
		t.Errorf("element %x timeout = %v, want %v", e.Key, e.Timeout, want)
	}
	if e.Expires > want || e.Expires < want-3*time.Second {
		t.Errorf("element %x expires in %v, want just under %v", e.Key, e.Expires, want)
	}
}

func TestAllowAddsElementsWithTimeout(t *testing.T) {
	ns := newTestNS(t)
	n := startNFT(t, ns, allowSpec(), nil)
	mustAllow(t, n, Allowance{Group: "servers", Client: netip.MustParseAddr("10.1.0.5"),
		IPs: addrs("192.0.2.10", "2001:db8::10", "::ffff:192.0.2.11"), TTL: 60 * time.Second})
	mustAllow(t, n, Allowance{Group: "servers", Client: netip.MustParseAddr("10.1.0.5"),
		IPs:   addrs("198.51.100.7", "2001:db8::7"),
		Ports: []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}, {Proto: policy.ProtoUDP, From: 3478, To: 3480}},
		TTL:   20 * time.Second})

	d4 := elements(t, ns, "egressd", "g_servers_d4")
	for _, ip := range []string{"192.0.2.10", "192.0.2.11"} {
		e, ok := findElement(d4, netip.MustParseAddr(ip).AsSlice(), nil)
		if !ok {
			t.Fatalf("%s missing from d4: %v", ip, d4)
		}
		checkTimeout(t, e, 65*time.Second)
	}
	if len(d4) != 2 {
		t.Errorf("d4 has %d elements, want 2", len(d4))
	}
	d6 := elements(t, ns, "egressd", "g_servers_d6")
	if e, ok := findElement(d6, netip.MustParseAddr("2001:db8::10").AsSlice(), nil); !ok || len(d6) != 1 {
		t.Errorf("d6 = %v, want only 2001:db8::10", d6)
	} else {
		checkTimeout(t, e, 65*time.Second)
	}

	p4 := elements(t, ns, "egressd", "g_servers_p4")
	dst := netip.MustParseAddr("198.51.100.7").AsSlice()
	for _, pr := range []policy.PortRange{{Proto: 6, From: 443, To: 443}, {Proto: 17, From: 3478, To: 3480}} {
		e, ok := findElement(p4, portKey(dst, pr.Proto, pr.From), portKey(dst, pr.Proto, pr.To))
		if !ok {
			t.Fatalf("p4 lacks %v: %v", pr, p4)
		}
		checkTimeout(t, e, 25*time.Second)
	}
	listing := ns.exec(t, "nft", "list", "set", "inet", "egressd", "g_servers_p6")
	for _, want := range []string{"2001:db8::7 . tcp . 443", "2001:db8::7 . udp . 3478-3480"} {
		if !bytes.Contains([]byte(listing), []byte(want)) {
			t.Errorf("p6 listing lacks %q:\n%s", want, listing)
		}
	}
}

func TestAllowRejects(t *testing.T) {
	ns := newTestNS(t)
	n := startNFT(t, ns, allowSpec(), nil)
	ctx := context.Background()
	err := n.Allow(ctx, Allowance{Group: "nobody", IPs: addrs("192.0.2.1"), TTL: time.Second})
	if !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("unknown group: err = %v, want ErrUnknownGroup", err)
	}
	err = n.Allow(ctx, Allowance{Group: "servers", IPs: addrs("192.0.2.1"), TTL: time.Second,
		Ports: []policy.PortRange{{Proto: 6, From: 90, To: 80}}})
	if err == nil {
		t.Error("reversed port range accepted")
	}
	if err := n.Allow(ctx, Allowance{Group: "", IPs: addrs("192.0.2.1"), TTL: time.Second}); err != nil {
		t.Errorf("no-group allowance: %v, want nil (unfiltered)", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := n.Allow(cancelled, Allowance{Group: "servers", IPs: addrs("192.0.2.2"), TTL: time.Second}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: err = %v", err)
	}
	if got := elements(t, ns, "egressd", "g_servers_d4"); len(got) != 0 {
		t.Errorf("rejected allowances left elements: %v", got)
	}
}

func TestAllowWithinLifetimeSendsNothing(t *testing.T) {
	ns := newTestNS(t)
	clock := newFakeClock()
	n := startNFT(t, ns, allowSpec(), clock)
	a := Allowance{Group: "servers", IPs: addrs("192.0.2.10", "2001:db8::1"), TTL: 60 * time.Second}
	mustAllow(t, n, a)
	base := n.flushCount()

	cases := []struct {
		name    string
		advance time.Duration
		ttl     time.Duration
		flushes int
	}{
		// 65s left after the first push; fresh needs TTL + 2.5s.
		{"same answer again", 0, 60 * time.Second, 0},
		{"cached answer with lower TTL later", 20 * time.Second, 40 * time.Second, 0},
		{"45s left cover TTL plus half the grace exactly", 0, 42500 * time.Millisecond, 0},
		// Short of TTL plus half the grace, the element is due somewhere in
		// the upper half of that window (its spread); short of TTL plus a
		// quarter of it, always: refreshed ahead, without the Allow waiting.
		{"45s left fall short of TTL plus a quarter of the grace", 0, 43751 * time.Millisecond, 1},
		{"needs more than the refresh left", 0, 50 * time.Second, 1},
		{"again after refresh", 0, 50 * time.Second, 0},
	}
	for _, tc := range cases {
		clock.Advance(tc.advance)
		a.TTL = tc.ttl
		mustAllow(t, n, a)
		got := n.flushCount() - base
		if got != tc.flushes {
			t.Errorf("%s: %d flushes, want %d", tc.name, got, tc.flushes)
		}
		base += got
	}
}

// TestHotElementRefreshPace re-allows one destination every second, as a
// resolver answering a hot cached name does, with TTLs clamped to 5m and a
// 30s grace. Each element must be refreshed about once per grace/2, never
// once per second, and must always outlive the TTL the client is told.
func TestHotElementRefreshPace(t *testing.T) {
	const (
		maxTTL = 5 * time.Minute
		grace  = 30 * time.Second
		period = 2 * time.Minute
	)
	// A refresh comes due once the 5m30s element has less than 5m15s left.
	paced := [2]int{int(period / grace), int(period/(grace/2)) + 1}
	cases := []struct {
		name      string
		ttl       func(elapsed time.Duration) time.Duration
		refreshes [2]int // at least, at most
	}{
		{"clamped TTL every time", func(time.Duration) time.Duration { return maxTTL }, paced},
		// The TTL shrinks as fast as the element's lifetime: never due.
		{"cached TTL counting down", func(e time.Duration) time.Duration { return maxTTL - e%maxTTL }, [2]int{0, 0}},
		{"clamped and short TTLs mixed", func(e time.Duration) time.Duration {
			if e%(7*time.Second) == 0 {
				return 10 * time.Second
			}
			return maxTTL
		}, paced},
	}
	ns := newTestNS(t)
	spec := allowSpec()
	spec.Grace = grace
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			n := startNFT(t, ns, spec, clock)
			a := Allowance{Group: "servers", IPs: addrs(fmt.Sprintf("192.0.2.%d", 100+i))}
			a.TTL = tc.ttl(0)
			mustAllow(t, n, a)
			base := n.flushCount()
			for elapsed := time.Second; elapsed <= period; elapsed += time.Second {
				clock.Advance(time.Second)
				a.TTL = tc.ttl(elapsed)
				mustAllow(t, n, a)
				if left := n.lifetimeLeft(t, "g_servers_d4", a.IPs[0].AsSlice()); left < a.TTL {
					t.Fatalf("at %v: element lives %v more, less than the %v TTL handed out", elapsed, left, a.TTL)
				}
			}
			refreshes := n.flushCount() - base
			if refreshes < tc.refreshes[0] || refreshes > tc.refreshes[1] {
				t.Errorf("%d refreshes in %v, want %d..%d", refreshes, period, tc.refreshes[0], tc.refreshes[1])
			}
		})
	}
}

func TestRefreshExtendsTimeout(t *testing.T) {
	ns := newTestNS(t)
	clock := newFakeClock()
	spec := allowSpec()
	spec.Grace = 0
	n := startNFT(t, ns, spec, clock)
	ip := netip.MustParseAddr("192.0.2.20")
	ports := []policy.PortRange{{Proto: 6, From: 8000, To: 8080}}
	mustAllow(t, n, Allowance{Group: "servers", IPs: []netip.Addr{ip}, TTL: 10 * time.Second})
	mustAllow(t, n, Allowance{Group: "servers", IPs: []netip.Addr{ip}, Ports: ports, TTL: 10 * time.Second})
	e, _ := findElement(elements(t, ns, "egressd", "g_servers_d4"), ip.AsSlice(), nil)
	checkTimeout(t, e, 10*time.Second)

	// Six seconds later by egressd's clock, a longer TTL must extend both.
	clock.Advance(6 * time.Second)
	mustAllow(t, n, Allowance{Group: "servers", IPs: []netip.Addr{ip}, TTL: 40 * time.Second})
	mustAllow(t, n, Allowance{Group: "servers", IPs: []netip.Addr{ip}, Ports: ports, TTL: 40 * time.Second})
	checkTimeout(t, onlyElement(t, ns, "g_servers_d4"), 40*time.Second)
	checkTimeout(t, onlyElement(t, ns, "g_servers_p4"), 40*time.Second)
}

// TestRefreshOfVanishedElement covers the race the add-delete-add refresh
// is built for: the index believes an element is live, but the kernel no
// longer has it (expired early, or removed by hand).
func TestRefreshOfVanishedElement(t *testing.T) {
	ns := newTestNS(t)
	clock := newFakeClock()
	n := startUnwatchedNFT(t, ns, allowSpec(), clock)
	a := Allowance{Group: "servers", IPs: addrs("192.0.2.30"), TTL: 30 * time.Second}
	mustAllow(t, n, a)
	ns.exec(t, "nft", "delete", "element", "inet", "egressd", "g_servers_d4", "{ 192.0.2.30 }")
	clock.Advance(10 * time.Second)
	a.TTL = 60 * time.Second
	mustAllow(t, n, a)
	checkTimeout(t, onlyElement(t, ns, "g_servers_d4"), 65*time.Second) // the element is back
}

func TestElementsExpire(t *testing.T) {
	ns := newTestNS(t)
	spec := allowSpec()
	spec.Grace = 0
	n := startNFT(t, ns, spec, nil)
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.40"), TTL: time.Second})
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.41"), TTL: time.Minute})
	if got := elements(t, ns, "egressd", "g_servers_d4"); len(got) != 2 {
		t.Fatalf("d4 = %v, want 2 elements", got)
	}
	var got []nftables.SetElement
	if !wait.Until(5*time.Second, 100*time.Millisecond, func() bool {
		got = elements(t, ns, "egressd", "g_servers_d4")
		return len(got) == 1 && bytes.Equal(got[0].Key, netip.MustParseAddr("192.0.2.41").AsSlice())
	}) {
		t.Fatalf("short-lived element did not expire: %v", got)
	}
	// Once expired, a new Allow must really add it again (the index must not
	// claim it is still fresh).
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.40"), TTL: time.Minute})
	if got := elements(t, ns, "egressd", "g_servers_d4"); len(got) != 2 {
		t.Errorf("re-allowed element missing: %v", got)
	}
}

func TestScopeClientKeys(t *testing.T) {
	ns := newTestNS(t)
	spec := allowSpec()
	spec.Scope = ScopeClient
	n := startNFT(t, ns, spec, nil)
	client := netip.MustParseAddr("10.1.0.5")
	mustAllow(t, n, Allowance{Group: "servers", Client: client, IPs: addrs("192.0.2.50", "2001:db8::50"), TTL: time.Minute})
	mustAllow(t, n, Allowance{Group: "servers", Client: client, IPs: addrs("192.0.2.51"),
		Ports: []policy.PortRange{{Proto: 6, From: 443, To: 443}}, TTL: time.Minute})

	d4 := elements(t, ns, "egressd", "g_servers_d4")
	want := append(client.AsSlice(), netip.MustParseAddr("192.0.2.50").AsSlice()...)
	if _, ok := findElement(d4, want, nil); !ok || len(d4) != 1 {
		t.Errorf("d4 = %v, want only client . 192.0.2.50", d4)
	}
	if d6 := elements(t, ns, "egressd", "g_servers_d6"); len(d6) != 0 {
		t.Errorf("IPv6 destination keyed for an IPv4 client: %v", d6)
	}
	listing := ns.exec(t, "nft", "list", "set", "inet", "egressd", "g_servers_p4")
	if !bytes.Contains([]byte(listing), []byte("10.1.0.5 . 192.0.2.51 . tcp . 443")) {
		t.Errorf("p4 lacks client . dest . tcp . 443:\n%s", listing)
	}
	if err := n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.52"), TTL: time.Minute}); err == nil {
		t.Error("client scope accepted an allowance without a client")
	}
}

func TestConcurrentAllowsAreBatched(t *testing.T) {
	ns := newTestNS(t)
	n := startNFT(t, ns, allowSpec(), nil)
	base := n.flushCount()
	const callers = 100
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := make(chan struct{})
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
			errs <- n.Allow(context.Background(), Allowance{Group: "servers", IPs: []netip.Addr{ip}, TTL: time.Minute})
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	flushes := n.flushCount() - base
	if got := len(elements(t, ns, "egressd", "g_servers_d4")); got != callers {
		t.Errorf("%d elements, want %d", got, callers)
	}
	t.Logf("%d concurrent Allow calls took %d netlink batches", callers, flushes)
	if flushes < 1 || flushes > callers/4 {
		t.Errorf("%d batches for %d concurrent calls, want a few", flushes, callers)
	}
}

func TestCloseLeavesTableUnlessRemoveOnExit(t *testing.T) {
	for _, remove := range []bool{false, true} {
		t.Run(fmt.Sprint("remove=", remove), func(t *testing.T) {
			ns := newTestNS(t)
			spec := allowSpec()
			spec.RemoveOnExit = remove
			n, err := NewNFTables(spec, Options{NetNS: ns.fd, Logger: quietLogger})
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			if err := n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.1")}); !errors.Is(err, errClosed) {
				t.Errorf("Allow after Close: %v", err)
			}
			_, err = ns.conn(t).ListTableOfFamily("egressd", nftables.TableFamilyINet)
			if present := err == nil; present == remove {
				t.Errorf("table present = %v after Close with RemoveOnExit = %v", present, remove)
			}
		})
	}
}

func TestZeroTTLStillExpires(t *testing.T) {
	ns := newTestNS(t)
	spec := allowSpec()
	spec.Grace = 0
	n := startNFT(t, ns, spec, nil)
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.80"), TTL: 0})
	d4 := elements(t, ns, "egressd", "g_servers_d4")
	if len(d4) != 1 || d4[0].Timeout != minTimeout {
		t.Errorf("zero TTL element = %+v, want timeout %v (never a permanent element)", d4, minTimeout)
	}
}

func TestCloseIsIdempotentAndConcurrent(t *testing.T) {
	ns := newTestNS(t)
	n := startNFT(t, ns, allowSpec(), nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() { defer wg.Done(); _ = n.Close() }()
		go func() {
			defer wg.Done()
			err := n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.90"), TTL: time.Minute})
			if err != nil && !errors.Is(err, errClosed) {
				t.Errorf("Allow racing Close: %v", err)
			}
		}()
	}
	wg.Wait()
}

// TestFailingRequestDoesNotFailItsBatch breaks one group's set behind
// egressd's back; an allowance for that group must fail alone while the
// other request in the same batch still succeeds.
func TestFailingRequestDoesNotFailItsBatch(t *testing.T) {
	ns := newTestNS(t)
	spec := allowSpec()
	spec.Groups = append(spec.Groups, GroupSpec{Name: "lab", Clients: prefixes("10.2.0.0/16")})
	m := metrics.New()
	n, err := NewNFTables(spec, Options{NetNS: ns.fd, Logger: quietLogger, Metrics: m, NoWatch: true, VerifyEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	// Both chains that look the set up must let go of it first.
	ns.exec(t, "nft", "flush", "chain", "inet", "egressd", "g_lab")
	ns.exec(t, "nft", "flush", "chain", "inet", "egressd", "prenat_forward")
	ns.exec(t, "nft", "delete", "set", "inet", "egressd", "g_lab_d4")

	// The owner goroutine is idle (its last answer ordered its writes before
	// this point), so the test may drive one batch directly.
	n.flushCount()
	good := request{ctx: context.Background(), result: make(chan error, 1),
		allow: Allowance{Group: "servers", IPs: addrs("192.0.2.100"), TTL: time.Minute}}
	bad := request{ctx: context.Background(), result: make(chan error, 1),
		allow: Allowance{Group: "lab", IPs: addrs("192.0.2.101"), TTL: time.Minute}}
	n.applyAllows([]request{bad, good})
	if err := <-good.result; err != nil {
		t.Errorf("healthy request failed with its batch: %v", err)
	}
	if err := <-bad.result; err == nil {
		t.Error("request for the broken set succeeded")
	}
	if _, ok := findElement(elements(t, ns, "egressd", "g_servers_d4"), netip.MustParseAddr("192.0.2.100").AsSlice(), nil); !ok {
		t.Error("healthy element missing")
	}
	// install ok; shared batch error; alone: lab error, servers ok.
	if ok, failed := testutil.ToFloat64(m.FirewallUpdates.WithLabelValues("ok")), testutil.ToFloat64(m.FirewallUpdates.WithLabelValues("error")); ok != 2 || failed != 2 {
		t.Errorf("updates ok=%v error=%v, want 2 and 2", ok, failed)
	}
	if got := testutil.ToFloat64(m.FirewallElements.WithLabelValues("g_servers_d4")); got != 1 {
		t.Errorf("elements gauge = %v, want 1", got)
	}
}

// newFakeClock is the index's clock; the kernel keeps real time.
func newFakeClock() *fakeclock.Clock { return fakeclock.New(time.Unix(1_700_000_000, 0)) }
