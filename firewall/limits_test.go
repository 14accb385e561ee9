package firewall

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/internal/lockedbuf"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

// TestAllowCaps: an allowance past a cap fails with ErrLimit, adds
// nothing, leaves every live element in place, is counted by reason and
// logged at most once per limitLogEvery.
func TestAllowCaps(t *testing.T) {
	ns := newTestNS(t)
	clock := newFakeClock()
	m := metrics.New()
	var logs lockedbuf.Buffer
	spec := allowSpec()
	spec.MaxAddressesPerAnswer, spec.MaxElementsPerSet = 4, 6
	n := startNFTWith(t, ns, spec, clock, Options{Metrics: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	web := []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}, {Proto: policy.ProtoTCP, From: 80, To: 80}}
	steps := []struct {
		name    string
		a       Allowance
		limited bool
		d4, p4  int // kernel elements afterwards
	}{
		{"five addresses, cap four", Allowance{IPs: addrs("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5")}, true, 0, 0},
		{"four addresses", Allowance{IPs: addrs("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4")}, false, 4, 0},
		{"three more would make seven", Allowance{IPs: addrs("192.0.2.5", "192.0.2.6", "192.0.2.7")}, true, 4, 0},
		{"two more fill the set", Allowance{IPs: addrs("192.0.2.5", "192.0.2.6")}, false, 6, 0},
		{"known ones are refreshed, not counted", Allowance{IPs: addrs("192.0.2.1", "192.0.2.6"), TTL: time.Hour}, false, 6, 0},
		{"one more is refused", Allowance{IPs: addrs("192.0.2.9")}, true, 6, 0},
		{"other sets have their own room", Allowance{IPs: addrs("192.0.2.9", "192.0.2.10", "192.0.2.11"), Ports: web}, false, 6, 6},
	}
	for _, st := range steps {
		st.a.Group = "servers"
		if st.a.TTL == 0 {
			st.a.TTL = time.Minute
		}
		allowStep(t, n, ns, st.name, st.a, st.limited, map[string]int{"g_servers_d4": st.d4, "g_servers_p4": st.p4})
	}
	wantRejected(t, n, map[string]float64{rejectAddresses: 1, rejectSetFull: 2, rejectClientShare: 0})
	if c := strings.Count(logs.String(), "a cap is reached"); c != 2 {
		t.Errorf("%d log lines for 3 refusals of 2 reasons in one instant, want 2:\n%s", c, logs.String())
	}
	// A third set-full refusal in the same instant is not logged; after
	// limitLogEvery the next one is, with the count it stood for.
	if err := n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.12"), TTL: time.Minute}); !errors.Is(err, ErrLimit) {
		t.Fatalf("Allow past the cap = %v", err)
	}
	clock.Advance(limitLogEvery)
	if err := n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.12"), TTL: time.Minute}); !errors.Is(err, ErrLimit) {
		t.Fatalf("Allow past the cap = %v", err)
	}
	if c := strings.Count(logs.String(), "a cap is reached"); c != 3 || !strings.Contains(logs.String(), "suppressed_since_last=2") {
		t.Errorf("want a third line saying 2 refusals were not logged:\n%s", logs.String())
	}
	// Elements expired (by the index's clock) no longer count.
	clock.Advance(time.Hour + expiryMargin + spec.Grace)
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.12"), TTL: time.Minute})
	// Allow for a cache hit refuses past the address cap too.
	if n.InEffect(Allowance{Group: "servers", IPs: addrs("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5")}) {
		t.Error("InEffect true for an allowance past the address cap")
	}
}

// TestSetCapKeepsEarlierDestinations: over TCP, the destinations allowed
// before a set reached its cap stay reachable, the one refused is not,
// and the kernel set holds exactly the cap.
func TestSetCapKeepsEarlierDestinations(t *testing.T) {
	client, _ := linkedPair(t, "8080")
	spec := Spec{Table: "egressd", Hooks: []string{HookOutput}, Grace: 5 * time.Second, MaxElementsPerSet: 3,
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.98.0.0/24")}}}
	n := startNFT(t, client, spec, nil)
	ctx := context.Background()
	if err := n.Allow(ctx, Allowance{Group: "clients", IPs: addrs("10.98.0.2", "10.98.0.20", "10.98.0.21"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := n.Allow(ctx, Allowance{Group: "clients", IPs: addrs("10.98.0.3"), TTL: time.Minute}); !errors.Is(err, ErrLimit) {
		t.Fatalf("Allow past the set cap = %v, want ErrLimit", err)
	}
	if got := len(elements(t, client, "egressd", "g_clients_d4")); got != 3 {
		t.Errorf("kernel set holds %d elements, want the cap, 3", got)
	}
	expectDial(t, client, "10.98.0.2:8080", true)
	expectDial(t, client, "10.98.0.3:8080", false)
}

// TestClientShareOfSets: one client cannot fill its group's sets for the
// others. New elements count against the client whose answer added them
// (an IPv4 address, an IPv6 /64); past Spec.MaxElementsPerClient live
// ones that client's next new destination is refused with ErrLimit while
// the group's other clients are served, until the set itself is full.
// Refreshes and destinations another client added are not new; expired
// elements no longer count.
func TestClientShareOfSets(t *testing.T) {
	ns := newTestNS(t)
	clock := newFakeClock()
	m := metrics.New()
	spec := allowSpec()
	spec.MaxElementsPerSet, spec.MaxElementsPerClient = 8, 3
	n := startNFTWith(t, ns, spec, clock, Options{Metrics: m})
	a, b, c := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.1.0.6"), netip.MustParseAddr("10.1.0.7")
	v6a, v6b := netip.MustParseAddr("fd00:1::1"), netip.MustParseAddr("fd00:1::2:3") // one /64
	steps := []struct {
		name    string
		client  netip.Addr
		ips     []netip.Addr
		ttl     time.Duration
		limited string // rejection reason, "" for none
		d4, d6  int    // kernel elements afterwards
	}{
		{"a: three new", a, addrs("192.0.2.1", "192.0.2.2", "192.0.2.3"), 0, "", 3, 0},
		{"a: a fourth is past its share", a, addrs("192.0.2.4"), 0, rejectClientShare, 3, 0},
		{"a: refreshing its own is not new", a, addrs("192.0.2.1", "192.0.2.2", "192.0.2.3"), time.Hour, "", 3, 0},
		{"b: a's destinations are not new to b", b, addrs("192.0.2.1"), 0, "", 3, 0},
		{"b: is served while a is refused", b, addrs("192.0.2.4", "192.0.2.5", "192.0.2.6"), 0, "", 6, 0},
		{"b: then reaches its own share", b, addrs("192.0.2.7"), 0, rejectClientShare, 6, 0},
		{"c: two fill the set", c, addrs("192.0.2.7", "192.0.2.8"), 0, "", 8, 0},
		{"c: the full set refuses even within a share", c, addrs("192.0.2.9"), 0, rejectSetFull, 8, 0},
		{"v6: three new", v6a, addrs("2001:db8::1", "2001:db8::2", "2001:db8::3"), 0, "", 8, 3},
		{"v6: another address of the /64 shares its share", v6b, addrs("2001:db8::4"), 0, rejectClientShare, 8, 3},
	}
	for _, st := range steps {
		if st.ttl == 0 {
			st.ttl = time.Minute
		}
		a := Allowance{Group: "servers", Client: st.client, IPs: st.ips, TTL: st.ttl}
		allowStep(t, n, ns, st.name, a, st.limited != "", map[string]int{"g_servers_d4": st.d4, "g_servers_d6": st.d6})
	}
	wantRejected(t, n, map[string]float64{rejectAddresses: 0, rejectSetFull: 1, rejectClientShare: 3})
	// The gauge of the fullest share, published with the next sweep: a,
	// b and the /64 each hold three.
	d := netip.MustParseAddr("10.1.0.8")
	clock.Advance(sweepEvery)
	mustAllow(t, n, Allowance{Group: "servers", Client: d, IPs: addrs("2001:db8::9"), TTL: time.Minute})
	if got := testutil.ToFloat64(m.FirewallClientElementsMax); got != 3 {
		t.Errorf("egressd_firewall_client_elements_max = %v, want 3", got)
	}
	// b's elements expire (a's were refreshed for an hour): b has its
	// share again once the set has room.
	clock.Advance(time.Minute + spec.Grace + expiryMargin + time.Second)
	mustAllow(t, n, Allowance{Group: "servers", Client: b, IPs: addrs("192.0.2.10", "192.0.2.11"), TTL: time.Minute})
	if err := n.Allow(context.Background(), Allowance{Group: "servers", Client: a, IPs: addrs("192.0.2.12"), TTL: time.Minute}); !errors.Is(err, ErrLimit) {
		t.Errorf("a, still holding three live elements: Allow = %v, want ErrLimit", err)
	}
	// Every element expired: only d's new one is held.
	clock.Advance(2*time.Hour + spec.Grace + expiryMargin)
	mustAllow(t, n, Allowance{Group: "servers", Client: d, IPs: addrs("2001:db8::10"), TTL: time.Minute})
	if got := testutil.ToFloat64(m.FirewallClientElementsMax); got != 1 {
		t.Errorf("egressd_firewall_client_elements_max after every other element expired = %v, want 1", got)
	}
}

// allowStep runs Allow(a), named name, and fails the test unless a cap
// refused it exactly when limited says so and the kernel's sets then hold
// the elements sets counts.
func allowStep(t *testing.T, n *NFT, ns *testNS, name string, a Allowance, limited bool, sets map[string]int) {
	t.Helper()
	err := n.Allow(context.Background(), a)
	if limited != errors.Is(err, ErrLimit) || (!limited && err != nil) {
		t.Fatalf("%s: Allow = %v, want limited %v", name, err, limited)
	}
	for set, want := range sets {
		if got := len(elements(t, ns, "egressd", set)); got != want {
			t.Fatalf("%s: kernel set %s holds %d elements, want %d", name, set, got, want)
		}
	}
}

// wantRejected checks egressd_firewall_rejected_total by reason.
func wantRejected(t *testing.T, n *NFT, want map[string]float64) {
	t.Helper()
	for reason, w := range want {
		if got := testutil.ToFloat64(n.rejected.counter.WithLabelValues(reason)); got != w {
			t.Errorf("rejected{%s} = %v, want %v", reason, got, w)
		}
	}
}

// TestFullSetSweepsOnlyToRefuse: a set at its cap costs a walk of the
// expiry index only when a request would be refused, and at most one walk
// a second however many requests come: batches that add nothing new, or
// add to another set, do not walk it; refusals in the same second walk it
// once; a second later expired elements are found and make room.
func TestFullSetSweepsOnlyToRefuse(t *testing.T) {
	ns := newTestNS(t)
	clock := newFakeClock()
	spec := allowSpec()
	spec.MaxElementsPerSet = 3
	n := startNFTWith(t, ns, spec, clock, Options{})
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.1", "192.0.2.2"), TTL: time.Minute})
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.3"), TTL: time.Hour})
	clock.Advance(2 * time.Second)
	web := []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}}
	start := n.index.sweepCount()
	for i := range 20 {
		// Longer than the elements live: each is a batch that re-sends.
		ttl := 2*time.Hour + time.Duration(i)*time.Minute
		mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.1"), TTL: ttl})
		mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.1"), Ports: web, TTL: ttl})
	}
	if got := n.index.sweepCount() - start; got != 0 {
		t.Errorf("40 batches that add nothing to the full set walked the index %d times, want 0", got)
	}
	for range 20 {
		if err := n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.9"), TTL: time.Minute}); !errors.Is(err, ErrLimit) {
			t.Fatalf("Allow past the set cap = %v, want ErrLimit", err)
		}
	}
	if got := n.index.sweepCount() - start; got != 1 {
		t.Errorf("20 refusals in one instant walked the index %d times, want 1", got)
	}
	// 192.0.2.1 was refreshed; .2 expired; .3 lives an hour.
	clock.Advance(time.Minute + spec.Grace + expiryMargin + time.Second)
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.9"), TTL: time.Minute})
}

// TestCapsCountWhatTheSweepFreed: an element of the allowance that the
// index still held, expired, is not new when the cap is first counted;
// the sweep before refusing removes it, and it is new again. Both caps
// count it after the sweep: the set never holds more than its cap, nor a
// client more than its share.
func TestCapsCountWhatTheSweepFreed(t *testing.T) {
	for _, tc := range []struct {
		name         string
		set, share   int
		other        string // the client of the long-lived element
		reason       string
		setElemsLeft int // live elements after the refusal
	}{
		{"set cap", 2, 2, "10.1.0.6", rejectSetFull, 1},
		{"client share", 8, 2, "10.1.0.5", rejectClientShare, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			spec := allowSpec()
			spec.MaxElementsPerSet, spec.MaxElementsPerClient = tc.set, tc.share
			n := fakeNFT(t, k, spec, clock, nil)
			client := netip.MustParseAddr("10.1.0.5")
			allow := func(c netip.Addr, ttl time.Duration, ips ...string) error {
				return n.Allow(context.Background(), Allowance{Group: "servers", Client: c, IPs: addrs(ips...), TTL: ttl})
			}
			if err := allow(client, time.Minute, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			if err := allow(netip.MustParseAddr(tc.other), time.Hour, "192.0.2.2"); err != nil {
				t.Fatal(err)
			}
			// .1 expires; the index has not swept it yet.
			clock.Advance(time.Minute + spec.Grace + expiryMargin + time.Second)
			// .1 and .3 are both new once .1 is swept: one place is free.
			err := allow(client, time.Minute, "192.0.2.1", "192.0.2.3")
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("Allow of two new elements with room for one = %v, want ErrLimit", err)
			}
			if got := len(k.liveElements("egressd", "g_servers_d4")); got != tc.setElemsLeft {
				t.Errorf("set holds %d live elements, want %d", got, tc.setElemsLeft)
			}
			if got := testutil.ToFloat64(n.rejected.counter.WithLabelValues(tc.reason)); got != 1 {
				t.Errorf("rejected{%s} = %v, want 1", tc.reason, got)
			}
		})
	}
}
