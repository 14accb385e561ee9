package firewall

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/fakeclock"
	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/policy"
)

// These tests run the backend's owner goroutine against fakeKernel: no
// root, no namespace. They assert on the batches it sends. What the kernel
// makes of those batches is proved by the namespace tests.

const d4 = "g_servers_d4"

// batchesSince returns the batches flushed after the first from.
func batchesSince(k *fakeKernel, from int) []fakeBatch {
	return k.recorded()[from:]
}

// sorted returns a sorted copy, for batches whose order within a set
// follows map iteration.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// holdNextFlush makes the next batch wait until the returned release is
// called; entered is closed once that batch is being sent.
func holdNextFlush(k *fakeKernel) (entered <-chan struct{}, release func()) {
	in, out := make(chan struct{}), make(chan struct{})
	var once sync.Once
	k.setHooks(func([]fakeOp) {
		once.Do(func() {
			close(in)
			<-out
		})
	}, nil)
	return in, func() { close(out) }
}

// TestQueuedAllowsShareOneBatch: Allow calls that queue while a batch is
// being sent are served together by the next one, whatever their number up
// to the queue's size, and each caller hears back only after it.
func TestQueuedAllowsShareOneBatch(t *testing.T) {
	for _, queued := range []int{1, 2, 50, maxBatchRequests} {
		t.Run(fmt.Sprint(queued), func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			n := fakeNFT(t, k, allowSpec(), clock, nil)
			from := len(k.recorded())
			entered, release := holdNextFlush(k)

			first := make(chan error, 1)
			go func() {
				first <- n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("198.51.100.1"), TTL: 60 * time.Second})
			}()
			<-entered
			errs := make(chan error, queued)
			var want []string
			for i := range queued {
				ip := netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i + 1)})
				want = append(want, fmt.Sprintf("add elem %s %s 1m5s", d4, ip))
				go func() {
					errs <- n.Allow(context.Background(), Allowance{Group: "servers", IPs: []netip.Addr{ip}, TTL: 60 * time.Second})
				}()
			}
			if !wait.Until(10*time.Second, time.Millisecond, func() bool { return len(n.reqs) == queued }) {
				t.Fatalf("%d of %d requests queued", len(n.reqs), queued)
			}
			select {
			case err := <-errs:
				t.Fatalf("an Allow returned before its batch was sent: %v", err)
			default:
			}
			release()
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			for range queued {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			got := batchesSince(k, from)
			if len(got) != 2 {
				t.Fatalf("%d batches, want 2 (the held one, then one for all queued)", len(got))
			}
			if ops := got[0].elementOps(d4); !slices.Equal(ops, []string{"add elem " + d4 + " 198.51.100.1 1m5s"}) {
				t.Errorf("held batch: %q", ops)
			}
			if ops := sorted(got[1].elementOps(d4)); !slices.Equal(ops, sorted(want)) {
				t.Errorf("second batch has %d element messages, want the %d queued:\n%q", len(ops), len(want), ops)
			}
		})
	}
}

// TestAllowRefreshes: an element that may still be in the kernel is
// added, deleted and added again in one batch, so its new timeout holds on
// kernels that keep the old one on a re-add (the first add makes the
// delete find it even if the kernel has just expired it); one the index
// knows expired is only added; a refresh the kernel refuses with ENOENT is
// sent again add only. Grace 5s: a 60s TTL asks for 1m5s, and an element
// is fresh enough for a TTL while it has TTL + 2.5s left.
func TestAllowRefreshes(t *testing.T) {
	const ip = "192.0.2.10"
	add := "add elem " + d4 + " " + ip + " 1m5s"
	del := "del elem " + d4 + " " + ip
	refuseDeletes := func(ops []fakeOp) error {
		if slices.ContainsFunc(ops, func(o fakeOp) bool { return o.verb == "del elem" }) {
			return unix.ENOENT
		}
		return nil
	}
	tests := []struct {
		name    string
		advance time.Duration // after the first Allow
		ttl     time.Duration // of the second Allow
		reject  func([]fakeOp) error
		batches [][]string // element messages of each batch the second Allow sends
		failed  []bool     // which of them the kernel refused
		left    string     // the kernel's element afterwards
	}{
		{name: "fresh enough: nothing sent", advance: 20 * time.Second, ttl: 42500 * time.Millisecond,
			left: ip + " 45s"},
		{name: "short of TTL plus half the grace: refresh", advance: 20 * time.Second, ttl: 60 * time.Second,
			batches: [][]string{{add, del, add}}, failed: []bool{false}, left: ip + " 1m5s"},
		{name: "expired in the kernel, within the index's margin: refresh", advance: 65*time.Second + expiryMargin/2, ttl: 60 * time.Second,
			batches: [][]string{{add, del, add}}, failed: []bool{false}, left: ip + " 1m5s"},
		{name: "expired by the index's margin: add only", advance: 65*time.Second + expiryMargin, ttl: 60 * time.Second,
			batches: [][]string{{add}}, failed: []bool{false}, left: ip + " 1m5s"},
		{name: "refresh refused with ENOENT: add only", advance: 20 * time.Second, ttl: 60 * time.Second, reject: refuseDeletes,
			batches: [][]string{{add, del, add}, {add}}, failed: []bool{true, false}, left: ip + " 45s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			n := fakeNFT(t, k, allowSpec(), clock, nil)
			mustAllow(t, n, Allowance{Group: "servers", IPs: addrs(ip), TTL: 60 * time.Second})
			from := len(k.recorded())
			clock.Advance(tt.advance)
			k.setHooks(nil, tt.reject)
			mustAllow(t, n, Allowance{Group: "servers", IPs: addrs(ip), TTL: tt.ttl})
			got := batchesSince(k, from)
			if len(got) != len(tt.batches) {
				t.Fatalf("%d batches, want %d: %+v", len(got), len(tt.batches), got)
			}
			for i, b := range got {
				if ops := b.elementOps(d4); !slices.Equal(ops, tt.batches[i]) {
					t.Errorf("batch %d: %q, want %q", i, ops, tt.batches[i])
				}
				if failed := b.err != nil; failed != tt.failed[i] {
					t.Errorf("batch %d: err %v, want failed=%t", i, b.err, tt.failed[i])
				}
				if b.err != nil && !errors.Is(b.err, unix.ENOENT) {
					t.Errorf("batch %d failed with %v, want ENOENT", i, b.err)
				}
			}
			if live := k.live("egressd", d4); !slices.Equal(live, []string{tt.left}) {
				t.Errorf("kernel holds %q, want %q", live, tt.left)
			}
		})
	}
}

// TestAllowSetCap: Allow never takes a set past MaxElementsPerSet. Elements
// already in the set or in the same batch do not count twice, expired
// ones stop counting, and a request refused in a shared batch leaves the
// others in it alone.
func TestAllowSetCap(t *testing.T) {
	type step struct {
		advance time.Duration
		ips     []string
		wantErr error
		sent    []string // addresses in the batch this step sends; nil: no batch
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "up to the cap, then refused", steps: []step{
			{ips: []string{"192.0.2.1", "192.0.2.2"}, sent: []string{"192.0.2.1", "192.0.2.2"}},
			{ips: []string{"192.0.2.3"}, sent: []string{"192.0.2.3"}},
			{ips: []string{"192.0.2.4"}, wantErr: ErrLimit},
		}},
		{name: "one answer over the cap adds nothing", steps: []step{
			{ips: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}, wantErr: ErrLimit},
		}},
		{name: "an address already in the set does not count again", steps: []step{
			{ips: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, sent: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}},
			{ips: []string{"192.0.2.2", "192.0.2.3"}},
		}},
		{name: "expired elements free room", steps: []step{
			{ips: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, sent: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}},
			{ips: []string{"192.0.2.4"}, wantErr: ErrLimit},
			{advance: 65*time.Second + expiryMargin + time.Millisecond, ips: []string{"192.0.2.4"}, sent: []string{"192.0.2.4"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			spec := allowSpec()
			spec.MaxElementsPerSet = 3
			n := fakeNFT(t, k, spec, clock, nil)
			for i, st := range tt.steps {
				clock.Advance(st.advance)
				from := len(k.recorded())
				err := n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs(st.ips...), TTL: 60 * time.Second})
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("step %d: Allow = %v, want %v", i, err, st.wantErr)
				}
				checkSent(t, fmt.Sprintf("step %d", i), batchesSince(k, from), st.sent)
			}
		})
	}

	t.Run("shared batch", func(t *testing.T) {
		clock := newFakeClock()
		k := newFakeKernel(clock.Now)
		spec := allowSpec()
		spec.MaxElementsPerSet = 3
		n := fakeNFT(t, k, spec, clock, nil)
		entered, release := holdNextFlush(k)
		first := make(chan error, 1)
		go func() {
			first <- n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.1"), TTL: time.Minute})
		}()
		<-entered
		from := len(k.recorded()) + 1 // after the held batch
		fits := make(chan error, 1)
		go func() {
			fits <- n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.2", "192.0.2.3"), TTL: time.Minute})
		}()
		if !wait.Until(10*time.Second, time.Millisecond, func() bool { return len(n.reqs) == 1 }) {
			t.Fatal("first request did not queue")
		}
		over := make(chan error, 1)
		go func() {
			over <- n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.4"), TTL: time.Minute})
		}()
		if !wait.Until(10*time.Second, time.Millisecond, func() bool { return len(n.reqs) == 2 }) {
			t.Fatal("second request did not queue")
		}
		release()
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if err := <-fits; err != nil {
			t.Errorf("request within the cap: %v", err)
		}
		if err := <-over; !errors.Is(err, ErrLimit) {
			t.Errorf("request past the cap: %v, want ErrLimit", err)
		}
		checkSent(t, "shared batch", batchesSince(k, from), []string{"192.0.2.2", "192.0.2.3"})
	})
}

// checkSent asserts that batches is one batch adding exactly ips to d4,
// or none when ips is nil.
func checkSent(t *testing.T, what string, batches []fakeBatch, ips []string) {
	t.Helper()
	if ips == nil {
		if len(batches) != 0 {
			t.Errorf("%s: sent %d batches, want none", what, len(batches))
		}
		return
	}
	if len(batches) != 1 {
		t.Fatalf("%s: sent %d batches, want 1", what, len(batches))
	}
	var want []string
	for _, ip := range ips {
		want = append(want, fmt.Sprintf("add elem %s %s 1m5s", d4, ip))
	}
	if got := sorted(batches[0].elementOps(d4)); !slices.Equal(got, sorted(want)) {
		t.Errorf("%s: sent %q, want %q", what, got, want)
	}
}

// TestReloadCarriesElements: a reload replaces the table in one batch
// (table added, deleted, added, then built) and re-adds, in that batch,
// the live elements of every set that keeps its name and key, with the
// lifetime they have left; sets that go or change their key start empty,
// and ReloadRecheck leaves out what the new policy no longer approves.
func TestReloadCarriesElements(t *testing.T) {
	approveOnly := func(name string) Recheck {
		return func(_ string, _, _ netip.Addr, names []string) ([]policy.PortRange, bool) {
			return nil, names[0] == name
		}
	}
	tests := []struct {
		name    string
		change  func(*Spec)
		recheck Recheck
		table   string              // the table after the reload
		want    map[string][]string // set -> carried addresses (40s left)
	}{
		{name: "same spec", want: map[string][]string{
			"g_servers_d4": {"192.0.2.1", "192.0.2.2"}, "g_servers_d6": {"2001:db8::1"}, "g_web_d4": {"198.51.100.1"}}},
		{name: "grace changed", change: func(s *Spec) { s.Grace = time.Minute }, want: map[string][]string{
			"g_servers_d4": {"192.0.2.1", "192.0.2.2"}, "g_servers_d6": {"2001:db8::1"}, "g_web_d4": {"198.51.100.1"}}},
		{name: "group removed", change: func(s *Spec) { s.Groups = s.Groups[:1] }, want: map[string][]string{
			"g_servers_d4": {"192.0.2.1", "192.0.2.2"}, "g_servers_d6": {"2001:db8::1"}}},
		{name: "scope changed: every key changes", change: func(s *Spec) { s.Scope = ScopeClient }, want: map[string][]string{}},
		{name: "table renamed", change: func(s *Spec) { s.Table = "egressd2" }, table: "egressd2", want: map[string][]string{
			"g_servers_d4": {"192.0.2.1", "192.0.2.2"}, "g_servers_d6": {"2001:db8::1"}, "g_web_d4": {"198.51.100.1"}}},
		{name: "recheck drops what policy no longer approves", recheck: approveOnly("a.example."), want: map[string][]string{
			"g_servers_d4": {"192.0.2.1"}, "g_servers_d6": {"2001:db8::1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			spec := allowSpec()
			spec.Groups = append(spec.Groups, GroupSpec{Name: "web", Clients: prefixes("10.2.0.0/16")})
			n := fakeNFT(t, k, spec, clock, nil)
			for _, a := range []Allowance{
				{Group: "servers", IPs: addrs("192.0.2.1", "2001:db8::1"), Name: "a.example."},
				{Group: "servers", IPs: addrs("192.0.2.2"), Name: "b.example."},
				{Group: "web", IPs: addrs("198.51.100.1"), Name: "c.example."},
			} {
				a.TTL = 40 * time.Second
				mustAllow(t, n, a)
			}
			clock.Advance(5 * time.Second) // 40s of the 45s left
			from := len(k.recorded())
			next := spec
			next.Groups = slices.Clone(spec.Groups)
			if tt.change != nil {
				tt.change(&next)
			}
			var err error
			if tt.recheck != nil {
				err = n.ReloadRecheck(next, tt.recheck, 0)
			} else {
				err = n.Reload(next)
			}
			if err != nil {
				t.Fatal(err)
			}
			got := batchesSince(k, from)
			if len(got) != 1 {
				t.Fatalf("%d batches, want 1", len(got))
			}
			table := tt.table
			if table == "" {
				table = "egressd"
			}
			var head []string
			for _, o := range got[0].ops[:3] {
				head = append(head, o.String())
			}
			if want := []string{"add table " + table, "del table " + table, "add table " + table}; table == "egressd" && !slices.Equal(head, want) {
				t.Errorf("batch starts %q, want %q", head, want)
			}
			if table != "egressd" {
				if want := []string{"add table egressd", "del table egressd"}; !slices.Equal(head[:2], want) {
					t.Errorf("renamed: batch starts %q, want the old table removed first %q", head, want)
				}
			}
			for _, set := range []string{"g_servers_d4", "g_servers_d6", "g_web_d4", "g_servers_p4"} {
				var want []string
				for _, ip := range tt.want[set] {
					want = append(want, fmt.Sprintf("add elem %s %s 40s", set, ip))
				}
				if ops := sorted(got[0].elementOps(set)); !slices.Equal(ops, sorted(want)) {
					t.Errorf("set %s: carried %q, want %q", set, ops, want)
				}
			}
			var live []string
			for _, set := range []string{"g_servers_d4", "g_servers_d6", "g_web_d4"} {
				live = append(live, k.live(table, set)...)
			}
			var wantLive []string
			for _, ips := range tt.want {
				for _, ip := range ips {
					wantLive = append(wantLive, ip+" 40s")
				}
			}
			if !slices.Equal(sorted(live), sorted(wantLive)) {
				t.Errorf("kernel holds %q, want %q", sorted(live), sorted(wantLive))
			}
		})
	}
}

// TestInstallInheritsElements: a backend started where an earlier one
// left its table carries that table's timed elements over in its first
// batch, with the lifetime the kernel still gives them; elements without
// a timeout (not egressd's) and sets whose key changed are left behind.
func TestInstallInheritsElements(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Spec)
		want   []string // carried d4 elements
	}{
		{name: "same spec", want: []string{"add elem g_servers_d4 192.0.2.1 30s"}},
		{name: "scope changed", change: func(s *Spec) { s.Scope = ScopeClient }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			first := fakeNFT(t, k, allowSpec(), clock, nil)
			mustAllow(t, first, Allowance{Group: "servers", IPs: addrs("192.0.2.1"), TTL: 40 * time.Second, Name: "a.test."})
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			k.putElement("egressd", d4, nftables.SetElement{Key: netip.MustParseAddr("192.0.2.99").AsSlice()}, 0) // no timeout
			clock.Advance(15 * time.Second)

			spec := allowSpec()
			if tt.change != nil {
				tt.change(&spec)
			}
			from := len(k.recorded())
			fakeNFT(t, k, spec, clock, nil)
			got := batchesSince(k, from)
			if len(got) != 1 {
				t.Fatalf("%d batches, want 1", len(got))
			}
			if ops := got[0].elementOps(d4); !slices.Equal(ops, tt.want) {
				t.Errorf("carried %q, want %q", ops, tt.want)
			}
		})
	}
}

// TestRestoreRefillsDeletedTable: when the periodic check finds the table
// gone, the owner installs it again in one batch with the live elements
// the index knows of.
func TestRestoreRefillsDeletedTable(t *testing.T) {
	clock := newFakeClock()
	k := newFakeKernel(clock.Now)
	n, err := NewNFTables(allowSpec(), Options{
		Logger: quietLogger, Now: clock.Now, NoWatch: true, VerifyEvery: time.Millisecond,
		probeSend: func(*nftables.Conn) error { return nil },
		connect:   k.dial,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.1"), TTL: 40 * time.Second})
	clock.Advance(10 * time.Second)
	from := len(k.recorded())
	k.deleteTable("egressd")
	if !wait.Until(restoreLimit, time.Millisecond, func() bool { return len(k.live("egressd", d4)) > 0 }) {
		t.Fatalf("table not restored within %v", restoreLimit)
	}
	got := batchesSince(k, from)
	if len(got) != 1 {
		t.Fatalf("%d batches, want 1", len(got))
	}
	if !got[0].has("add chain") {
		t.Errorf("restore batch does not rebuild the table: %+v", got[0].ops)
	}
	if ops, want := got[0].elementOps(d4), []string{"add elem " + d4 + " 192.0.2.1 35s"}; !slices.Equal(ops, want) {
		t.Errorf("restored %q, want %q", ops, want)
	}
}

// TestIdleOwnerCallerSendsItsBatch: with no batch in progress, Allow and
// Reload send their batch from the caller's own goroutine instead of
// handing the request to the run goroutine and waiting to be woken (a
// thread wake-up each way when the threads sleep); a refresh ahead of
// expiry is still sent by the run goroutine, so the cache hit that asked
// for it does not wait.
func TestIdleOwnerCallerSendsItsBatch(t *testing.T) {
	const sender = "github.com/egressd/egressd/firewall.(*NFT).run("
	for _, tc := range []struct {
		name     string
		call     func(n *NFT, clock *fakeclock.Clock) error
		byRunner bool // the run goroutine sends the batch
	}{
		{"allow", func(n *NFT, _ *fakeclock.Clock) error {
			return n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.1"), TTL: time.Minute})
		}, false},
		{"reload", func(n *NFT, _ *fakeclock.Clock) error { return n.Reload(allowSpec()) }, false},
		{"refresh ahead", func(n *NFT, clock *fakeclock.Clock) error {
			a := Allowance{Group: "servers", IPs: addrs("192.0.2.1"), TTL: 10 * time.Second}
			if err := n.Allow(context.Background(), a); err != nil {
				return err
			}
			// 10s + grace 5s pushed; 4s later 11s are left: more than the
			// TTL, less than TTL + grace/4, so due for a refresh ahead.
			clock.Advance(4 * time.Second)
			return n.Allow(context.Background(), a)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			n := fakeNFT(t, k, allowSpec(), clock, nil)
			from := len(k.recorded())
			stacks := make(chan string, 4)
			k.setHooks(func([]fakeOp) {
				buf := make([]byte, 64<<10)
				stacks <- string(buf[:runtime.Stack(buf, false)])
			}, nil)
			if err := tc.call(n, clock); err != nil {
				t.Fatal(err)
			}
			want := len(batchesSince(k, from))
			if tc.byRunner {
				want++ // the refresh, sent after the call returned
				if !wait.Until(10*time.Second, time.Millisecond, func() bool { return len(stacks) == want }) {
					t.Fatalf("%d batches, want %d", len(stacks), want)
				}
			}
			if len(stacks) != want || want == 0 {
				t.Fatalf("%d batches seen by the hook, %d recorded", len(stacks), want)
			}
			for range want - 1 {
				<-stacks
			}
			last := <-stacks
			if got := strings.Contains(last, sender); got != tc.byRunner {
				t.Errorf("batch sent by the run goroutine: %v, want %v; stack:\n%s", got, tc.byRunner, last)
			}
		})
	}
}

// TestCloseWaitsForCallerServing: Close during a batch a caller sends
// itself waits for it; that caller gets its answer, later calls errClosed,
// and the connection is closed only after the batch.
func TestCloseWaitsForCallerServing(t *testing.T) {
	clock := newFakeClock()
	k := newFakeKernel(clock.Now)
	n := fakeNFT(t, k, allowSpec(), clock, nil)
	entered, release := holdNextFlush(k)
	first := make(chan error, 1)
	go func() {
		first <- n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.1"), TTL: time.Minute})
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	if !wait.Until(10*time.Second, time.Millisecond, func() bool {
		select {
		case <-n.closed:
			return true
		default:
			return false
		}
	}) {
		t.Fatal("Close did not begin")
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a batch was being sent", err)
	default:
	}
	release()
	if err := <-first; err != nil {
		t.Errorf("Allow whose batch was being sent: %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := n.Allow(context.Background(), Allowance{Group: "servers", IPs: addrs("192.0.2.2"), TTL: time.Minute}); !errors.Is(err, errClosed) {
		t.Errorf("Allow after Close: %v, want errClosed", err)
	}
}
