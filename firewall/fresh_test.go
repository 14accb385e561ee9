package firewall

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/policy"
)

// lifetimeLeft is how long, by the injected clock, the index believes the
// element of set with key lives on.
func (n *NFT) lifetimeLeft(t *testing.T, set string, key []byte) time.Duration {
	t.Helper()
	n.index.mu.RLock()
	defer n.index.mu.RUnlock()
	e := n.index.lookup(set, key, nil)
	if e == nil {
		t.Fatalf("index lacks %s element %x", set, key)
	}
	return e.left(n.now())
}

// TestIndexCovers checks the lock-free check of Allow against the elements
// the owner records: covered only when every element is known and has
// enough left.
func TestIndexCovers(t *testing.T) {
	group := groupSets{d4: "d4", d6: "d6", p4: "p4", p6: "p6"}
	scoped := group
	scoped.scoped = true
	now := time.Unix(1_700_000_000, 0)
	client := netip.MustParseAddr("10.0.0.9")
	web := []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}, {From: 8000, To: 8080}}
	known := []Allowance{
		{IPs: addrs("192.0.2.1", "2001:db8::1")},
		{IPs: addrs("198.51.100.1"), Ports: web},
	}
	knownScoped := Allowance{Client: client, IPs: addrs("192.0.2.1")}
	x := newExpiryIndex()
	record := func(gs groupSets, a Allowance, left time.Duration) {
		elems, err := elementsFor(gs, a, left)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range elems {
			x.put(e, now.Add(left))
		}
	}
	for _, a := range known {
		record(group, a, time.Minute)
	}
	record(scoped, knownScoped, time.Minute)

	cases := []struct {
		name string
		gs   groupSets
		a    Allowance
		need time.Duration
		want bool
	}{
		{"both families known", group, known[0], time.Minute, true},
		{"mapped address is the IPv4 one", group, Allowance{IPs: addrs("::ffff:192.0.2.1")}, time.Minute, true},
		{"needs more than is left", group, known[0], time.Minute + time.Millisecond, false},
		{"one address unknown", group, Allowance{IPs: addrs("192.0.2.1", "192.0.2.2")}, time.Second, false},
		{"port ranges known", group, known[1], time.Minute, true},
		{"one port range unknown", group, Allowance{IPs: addrs("198.51.100.1"), Ports: append(web[:1:1], policy.PortRange{Proto: policy.ProtoUDP, From: 443, To: 443})}, time.Second, false},
		{"any-port element does not cover a port", group, Allowance{IPs: addrs("192.0.2.1"), Ports: web[:1]}, time.Second, false},
		{"client scope keyed by client", scoped, knownScoped, time.Minute, true},
		{"client scope, another client", scoped, Allowance{Client: netip.MustParseAddr("10.0.0.10"), IPs: addrs("192.0.2.1")}, time.Second, false},
		{"client scope skips the other family", scoped, Allowance{Client: client, IPs: addrs("192.0.2.1", "2001:db8::99")}, time.Second, true},
		{"invalid port range goes to the owner", group, Allowance{IPs: addrs("198.51.100.1"), Ports: []policy.PortRange{{From: 90, To: 80}}}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got, due, _ := x.covers(&tc.gs, &tc.a, tc.need, tc.need, now); got != tc.want || due {
				t.Errorf("covers = %v, due %v, want %v, not due", got, due, tc.want)
			}
		})
	}
	// Due: covered for the TTL but with less than dueBelow left, which is
	// between ahead and the middle of [need, ahead]. One caller a
	// refreshAheadEvery claims the refresh.
	for _, tc := range []struct {
		name      string
		at        time.Time
		need      time.Duration
		ahead     time.Duration
		want, due bool
	}{
		{"more than ahead left", now, 30 * time.Second, time.Minute, true, false},
		{"less than the window's middle left: due", now, 30 * time.Second, 90*time.Second + time.Millisecond, true, true},
		{"asked for again at once: not claimed", now, 30 * time.Second, 90*time.Second + time.Millisecond, true, false},
		{"short of the TTL: not covered, not due", now, time.Minute + time.Millisecond, 2 * time.Minute, false, false},
		{"a refreshAheadEvery later: claimed again", now.Add(refreshAheadEvery), 30 * time.Second, 90 * time.Second, true, true},
	} {
		if got, due, _ := x.covers(&group, &known[0], tc.need, tc.ahead, tc.at); got != tc.want || due != tc.due {
			t.Errorf("%s: covers = %v, due %v, want %v, %v", tc.name, got, due, tc.want, tc.due)
		}
	}
	allocs := testing.AllocsPerRun(100, func() { x.covers(&group, &known[1], time.Second, time.Second, now) })
	if allocs != 0 {
		t.Errorf("covers allocates %v times per call, want 0", allocs)
	}
}

// TestAllowDuringPostponedRestore deletes an element while the restore
// backoff postpones re-adding it: the index still lists the element as
// live, but Allow must not believe it and must put the element back
// before returning.
func TestAllowDuringPostponedRestore(t *testing.T) {
	f := newDriftFixture(t, Options{VerifyEvery: -1})
	deleteIt := func() {
		f.ns.exec(t, "nft", "delete", "element", "inet", "egressd", "g_servers_d4", "{ 192.0.2.10 }")
	}
	// Two restores in a row: the next one waits at least a second.
	for range 2 {
		deleteIt()
		f.waitRestored(t)
	}
	before := f.n.watch.reported.Load()
	deleteIt()
	if !wait.Until(restoreLimit, time.Millisecond, func() bool { return f.n.watch.reported.Load() != before }) {
		t.Fatal("the deletion was never reported")
	}
	mustAllow(t, f.n, Allowance{Group: "servers", IPs: addrs("192.0.2.10"), TTL: time.Minute})
	d4, _ := f.setElements(t, "g_servers_d4")
	e, ok := findElement(d4, f.d4, nil)
	if !ok {
		t.Fatalf("Allow returned while the deleted element was still missing: %v", d4)
	}
	if e.Expires < time.Minute {
		t.Errorf("re-added element expires in %v, less than the 1m TTL", e.Expires)
	}
	if got := f.restores(t, restoreElements); got != 2 {
		t.Logf("restores{elements} = %v: the postponed restore already ran", got)
	}
}

// TestFreshAllowsAcrossReloads keeps answering fresh allowances from other
// goroutines while the table is reloaded: a group the reload removed must
// be unknown as soon as Reload returns (not answered from the index), and
// one that comes back must really be added again.
func TestFreshAllowsAcrossReloads(t *testing.T) {
	ns := newTestNS(t)
	specA := allowSpec()
	specA.Grace = 30 * time.Second
	specA.Groups = append(specA.Groups, GroupSpec{Name: "lab", Clients: prefixes("10.2.0.0/16")})
	specB := specA
	specB.Groups = specA.Groups[:1]
	n := startNFT(t, ns, specA, nil)
	servers := Allowance{Group: "servers", IPs: addrs("192.0.2.60", "2001:db8::60"), TTL: time.Minute}
	lab := Allowance{Group: "lab", IPs: addrs("192.0.2.62"), TTL: time.Minute}
	mustAllow(t, n, servers)
	mustAllow(t, n, lab)

	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := n.Allow(ctx, servers); err != nil && ctx.Err() == nil {
					errs <- err
					return
				}
			}
		}()
	}
	steps := []struct {
		spec    Spec
		labErr  error
		labSets bool
	}{
		{specB, ErrUnknownGroup, false},
		{specA, nil, true},
	}
	for _, st := range steps {
		if err := n.Reload(st.spec); err != nil {
			t.Fatal(err)
		}
		if err := n.Allow(context.Background(), lab); !errors.Is(err, st.labErr) {
			t.Errorf("Allow(lab) after reload = %v, want %v", err, st.labErr)
		}
		if _, ok := findElement(elements(t, ns, "egressd", "g_servers_d4"), servers.IPs[0].AsSlice(), nil); !ok {
			t.Error("servers element lost across the reload")
		}
		if st.labSets {
			if _, ok := findElement(elements(t, ns, "egressd", "g_lab_d4"), lab.IPs[0].AsSlice(), nil); !ok {
				t.Error("lab element not added again after its group came back")
			}
		}
	}
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Allow of a fresh allowance during reloads: %v", err)
	}
}

// TestInEffect: InEffect answers true only for what Allow has put in place
// for long enough, and false once the backend is closed.
func TestInEffect(t *testing.T) {
	ns := newTestNS(t)
	spec := allowSpec()
	spec.Grace = 30 * time.Second
	n := startNFT(t, ns, spec, nil)
	allowed := Allowance{Group: "servers", IPs: addrs("192.0.2.70", "2001:db8::70"), TTL: time.Minute}
	mustAllow(t, n, allowed)
	for _, tc := range []struct {
		name string
		a    Allowance
		want bool
	}{
		{"allowed", allowed, true},
		{"one address of it", Allowance{Group: "servers", IPs: addrs("2001:db8::70"), TTL: time.Minute}, true},
		{"a longer TTL than was allowed", Allowance{Group: "servers", IPs: addrs("192.0.2.70"), TTL: time.Hour}, false},
		{"an address never allowed", Allowance{Group: "servers", IPs: addrs("192.0.2.70", "192.0.2.71"), TTL: time.Minute}, false},
		{"an unknown group", Allowance{Group: "nobody", IPs: addrs("192.0.2.70"), TTL: time.Minute}, false},
		{"no addresses", Allowance{Group: "servers", TTL: time.Minute}, false},
	} {
		if got := n.InEffect(tc.a); got != tc.want {
			t.Errorf("%s: InEffect = %v, want %v", tc.name, got, tc.want)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if n.InEffect(allowed) {
		t.Error("InEffect is true after Close")
	}
}

// TestRefreshAheadSpread: elements pushed in the same moment do not all
// come due for a refresh in the same moment. Over the upper half of the
// due window [TTL, TTL + grace/2] each comes due once, at a point its key
// decides; at the window's top none is due, from its middle on all are.
func TestRefreshAheadSpread(t *testing.T) {
	const (
		ttl   = 5 * time.Minute
		grace = 30 * time.Second
		n     = 1000
	)
	group := groupSets{d4: "d4", d6: "d6", p4: "p4", p6: "p6"}
	start := time.Unix(1_700_000_000, 0)
	x := newExpiryIndex()
	for i := range n {
		elems, err := elementsFor(group, Allowance{IPs: []netip.Addr{seqAddr(i)}}, ttl+grace)
		if err != nil {
			t.Fatal(err)
		}
		x.put(elems[0], start.Add(ttl+grace))
	}
	// Steps of grace/16 over the upper half of the window, each more than
	// refreshAheadEvery apart, so every due element is claimed again
	// (nothing refreshes them here): the count of due elements grows.
	var dueAt []int
	for left := ttl + grace/2; left >= ttl+grace/4-time.Millisecond; left -= grace / 16 {
		now := start.Add(ttl + grace - left)
		due := 0
		for i := range n {
			covered, d, _ := x.covers(&group, &Allowance{IPs: []netip.Addr{seqAddr(i)}}, ttl, ttl+grace/2, now)
			if !covered {
				t.Fatalf("element %d not covered with %v left", i, left)
			}
			if d {
				due++
			}
		}
		dueAt = append(dueAt, due)
	}
	if dueAt[0] != 0 || dueAt[len(dueAt)-1] != n {
		t.Fatalf("due per step %v: want none at the window's top and all %d by its middle", dueAt, n)
	}
	for i := 1; i < len(dueAt); i++ {
		if newly := dueAt[i] - dueAt[i-1]; newly <= 0 || newly > n/2 {
			t.Errorf("step %d: %d of %d came due at once (due per step %v), want them spread", i, newly, n, dueAt)
		}
	}
}
