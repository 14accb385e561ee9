package firewall

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/lockedbuf"
	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

// restoreLimit bounds how long a restore may take in these tests; the
// watcher usually restores within milliseconds.
const restoreLimit = 5 * time.Second

// driftFixture is a watched backend with elements in two sets.
type driftFixture struct {
	ns     *testNS
	n      *NFT
	m      *metrics.Metrics
	logs   *lockedbuf.Buffer
	d4, p4 []byte // keys of the allowed elements
	p4End  []byte
	table  *nftables.Table
}

func newDriftFixture(t *testing.T, opts Options) *driftFixture {
	t.Helper()
	ns := newTestNS(t)
	f := &driftFixture{ns: ns, m: metrics.New(), logs: &lockedbuf.Buffer{},
		table: &nftables.Table{Family: nftables.TableFamilyINet, Name: "egressd"}}
	opts.NetNS, opts.Metrics = ns.fd, f.m
	opts.Logger = slog.New(slog.NewTextHandler(f.logs, nil))
	n, err := NewNFTables(allowSpec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	f.n = n
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.10", "192.0.2.11"), TTL: time.Minute})
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.12"), TTL: time.Minute,
		Ports: []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}, {Proto: policy.ProtoTCP, From: 80, To: 80}}})
	f.d4 = netip.MustParseAddr("192.0.2.10").AsSlice()
	f.p4 = portKey(netip.MustParseAddr("192.0.2.12").AsSlice(), policy.ProtoTCP, 443)
	f.p4End = f.p4
	return f
}

// setElements lists a set, or reports that it is missing.
func (f *driftFixture) setElements(t *testing.T, name string) ([]nftables.SetElement, bool) {
	t.Helper()
	c := f.ns.conn(t)
	s, err := c.GetSetByName(f.table, name)
	if err != nil {
		return nil, false
	}
	elems, err := c.GetSetElements(s)
	if err != nil {
		return nil, false
	}
	return elems, true
}

// restored reports whether the table matches what egressd installed and
// the allowed elements are back in it.
func (f *driftFixture) restored(t *testing.T) bool {
	if f.n.Check() != nil {
		return false
	}
	d4, ok := f.setElements(t, "g_servers_d4")
	if !ok || len(d4) != 2 {
		return false
	}
	if _, ok := findElement(d4, f.d4, nil); !ok {
		return false
	}
	p4, ok := f.setElements(t, "g_servers_p4")
	if !ok || len(p4) != 2 {
		return false
	}
	_, ok = findElement(p4, f.p4, f.p4End)
	return ok
}

func (f *driftFixture) waitRestored(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	if !wait.Until(restoreLimit, 20*time.Millisecond, func() bool { return f.restored(t) }) {
		t.Fatalf("not restored within %s; Check: %v\nlogs:\n%s", restoreLimit, f.n.Check(), f.logs.String())
	}
	// The table is visible before the owner goroutine counts the restore;
	// a request it answers afterwards orders the count before the caller's
	// reads.
	f.n.flushCount()
	return time.Since(start)
}

func (f *driftFixture) restores(t *testing.T, reason string) float64 {
	t.Helper()
	return restoresOn(t, f.m, reason)
}

// restoresOn reads egressd_firewall_restores_total{reason} as the registry
// exports it, so the test also proves the collector is registered.
func restoresOn(t *testing.T, m *metrics.Metrics, reason string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != "egressd_firewall_restores_total" {
			continue
		}
		for _, mt := range fam.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("egressd_firewall_restores_total{reason=%q} not exported", reason)
	return 0
}

// ruleHandle finds the handle of the first rule of chain whose listing
// matches pattern.
func (f *driftFixture) ruleHandle(t *testing.T, chain, pattern string) string {
	t.Helper()
	out := f.ns.exec(t, "nft", "-a", "list", "chain", "inet", "egressd", chain)
	re := regexp.MustCompile(pattern + `.*# handle (\d+)`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no rule matching %q in:\n%s", pattern, out)
	}
	return m[1]
}

func TestDriftIsRestored(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, f *driftFixture)
		reason string
		logged string // the warning must name what changed, and what was re-added
	}{
		{"delete table", func(t *testing.T, f *driftFixture) {
			f.ns.exec(t, "nft", "delete", "table", "inet", "egressd")
		}, restoreTable, "table inet egressd missing"},
		{"flush dynamic set", func(t *testing.T, f *driftFixture) {
			f.ns.exec(t, "nft", "flush", "set", "inet", "egressd", "g_servers_d4")
		}, restoreElements, `events="delete elements from set g_servers_d4" elements=2`},
		{"delete one of two elements", func(t *testing.T, f *driftFixture) {
			f.ns.exec(t, "nft", "delete", "element", "inet", "egressd", "g_servers_d4", "{ 192.0.2.11 }")
		}, restoreElements, `events="delete elements from set g_servers_d4" elements=1`},
		{"delete one element", func(t *testing.T, f *driftFixture) {
			f.ns.exec(t, "nft", "delete", "element", "inet", "egressd", "g_servers_p4", "{ 192.0.2.12 . tcp . 443 }")
		}, restoreElements, `events="delete elements from set g_servers_p4" elements=1`},
		{"delete drop rule", func(t *testing.T, f *driftFixture) {
			h := f.ruleHandle(t, "g_servers", `drop`)
			f.ns.exec(t, "nft", "delete", "rule", "inet", "egressd", "g_servers", "handle", h)
		}, restoreLayout, "rules of chain g_servers changed"},
		{"insert accept rule", func(t *testing.T, f *driftFixture) {
			f.ns.exec(t, "nft", "insert", "rule", "inet", "egressd", "g_servers", "accept")
		}, restoreLayout, "rules of chain g_servers changed"},
		{"add chain", func(t *testing.T, f *driftFixture) {
			f.ns.exec(t, "nft", "add", "chain", "inet", "egressd", "extra")
		}, restoreLayout, "chain extra unexpected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newDriftFixture(t, Options{VerifyEvery: -1}) // notifications only
			if !f.restored(t) {
				t.Fatalf("fixture not in place: Check: %v", f.n.Check())
			}
			tc.change(t, f)
			took := f.waitRestored(t)
			t.Logf("restored after %s\n%s", took, f.logs.String())
			for _, r := range []string{restoreTable, restoreLayout, restoreElements} {
				want := 0.0
				if r == tc.reason {
					want = 1
				}
				if got := f.restores(t, r); got != want {
					t.Errorf("restores{reason=%q} = %v, want %v", r, got, want)
				}
			}
			if logs := f.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, tc.logged) {
				t.Errorf("no warning naming %q:\n%s", tc.logged, logs)
			}
			// Enforcement still works after the restore.
			mustAllow(t, f.n, Allowance{Group: "servers", IPs: addrs("192.0.2.13"), TTL: time.Minute})
			d4, _ := f.setElements(t, "g_servers_d4")
			if _, ok := findElement(d4, netip.MustParseAddr("192.0.2.13").AsSlice(), nil); !ok {
				t.Errorf("Allow after restore did not reach the kernel: %v", d4)
			}
		})
	}
}

// TestCheckReportsDriftUntilPeriodicRestore disables notifications: Check
// must name the change right away, and the periodic check alone must
// restore the table.
func TestCheckReportsDriftUntilPeriodicRestore(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, f *driftFixture)
		found  string
		reason string
	}{
		{"delete table", func(t *testing.T, f *driftFixture) {
			f.ns.exec(t, "nft", "delete", "table", "inet", "egressd")
		}, "table inet egressd missing", restoreTable},
		{"delete drop rule", func(t *testing.T, f *driftFixture) {
			h := f.ruleHandle(t, "g_servers", `drop`)
			f.ns.exec(t, "nft", "delete", "rule", "inet", "egressd", "g_servers", "handle", h)
		}, "rules of chain g_servers changed", restoreLayout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newDriftFixture(t, Options{NoWatch: true, VerifyEvery: 1500 * time.Millisecond})
			if err := f.n.Check(); err != nil {
				t.Fatalf("Check before any change: %v", err)
			}
			tc.change(t, f)
			err := f.n.Check()
			if err == nil || !strings.Contains(err.Error(), tc.found) {
				t.Fatalf("Check after the change = %v, want an error naming %q", err, tc.found)
			}
			f.waitRestored(t)
			if got := f.restores(t, tc.reason); got != 1 {
				t.Errorf("restores{reason=%q} = %v, want 1", tc.reason, got)
			}
		})
	}
}

func TestCheckAfterClose(t *testing.T) {
	ns := newTestNS(t)
	n := startNFT(t, ns, allowSpec(), nil)
	if err := n.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	_ = n.Close()
	if err := n.Check(); !errors.Is(err, errClosed) {
		t.Errorf("Check after Close = %v, want errClosed", err)
	}
}

// failFlushes makes every batch fail with err before it is sent.
func failFlushes(n *NFT, err error) {
	hook := func(nftConn) error { return err }
	n.flushHook.Store(&hook)
}

// rejectFlushes queues, at the end of every batch, the deletion of a table
// that does not exist: the kernel rejects the whole batch with ENOENT.
func rejectFlushes(n *NFT) {
	hook := func(c nftConn) error {
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "egressd_absent"})
		return nil
	}
	n.flushHook.Store(&hook)
}

// TestAllowFailsClosed: when the kernel does not take an update, Allow
// reports it (the resolver answers SERVFAIL) and nothing of the batch is
// applied; once netlink works again the same allowance goes through.
func TestAllowFailsClosed(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(t *testing.T, ns *testNS, n *NFT)
		want    error // nil: any error
	}{
		{"ENOBUFS", func(_ *testing.T, _ *testNS, n *NFT) { failFlushes(n, unix.ENOBUFS) }, unix.ENOBUFS},
		{"EPERM", func(_ *testing.T, _ *testNS, n *NFT) { failFlushes(n, unix.EPERM) }, unix.EPERM},
		{"batch rejected by the kernel", func(_ *testing.T, _ *testNS, n *NFT) { rejectFlushes(n) }, unix.ENOENT},
		{"table deleted underneath", func(t *testing.T, ns *testNS, _ *NFT) {
			ns.exec(t, "nft", "delete", "table", "inet", "egressd")
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := newTestNS(t)
			m := metrics.New()
			n, err := NewNFTables(allowSpec(), Options{NetNS: ns.fd, Logger: quietLogger, Metrics: m, NoWatch: true, VerifyEvery: -1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = n.Close() })
			mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.20"), TTL: time.Minute})
			tc.breakIt(t, ns, n)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a := Allowance{Group: "servers", IPs: addrs("192.0.2.21", "192.0.2.22"), TTL: time.Minute}
			err = n.Allow(ctx, a)
			if err == nil {
				t.Fatal("Allow succeeded although the update failed")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Allow error = %v, want %v", err, tc.want)
			}
			if got := testutil.ToFloat64(m.FirewallUpdates.WithLabelValues("error")); got < 1 {
				t.Errorf("updates{result=error} = %v, want at least 1", got)
			}
			if tc.want == nil {
				return // the table is gone; nothing to read back
			}
			d4 := elements(t, ns, "egressd", "g_servers_d4")
			for _, ip := range []string{"192.0.2.21", "192.0.2.22"} {
				if _, ok := findElement(d4, netip.MustParseAddr(ip).AsSlice(), nil); ok {
					t.Errorf("%s is in the set although its batch failed", ip)
				}
			}
			n.flushHook.Store(nil)
			mustAllow(t, n, a)
			d4 = elements(t, ns, "egressd", "g_servers_d4")
			if len(d4) != 3 {
				t.Errorf("after recovery d4 = %v, want 3 elements", d4)
			}
		})
	}
}

// TestFailedReloadKeepsOldTable: a reload the kernel rejects must leave the
// previous table, elements included, exactly as it was.
func TestFailedReloadKeepsOldTable(t *testing.T) {
	ns := newTestNS(t)
	n := startUnwatchedNFT(t, ns, allowSpec(), nil)
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.30"), TTL: time.Minute})
	before := ns.exec(t, "nft", "list", "table", "inet", "egressd")

	next := allowSpec()
	next.Groups = append(next.Groups, GroupSpec{Name: "lab", Clients: prefixes("10.2.0.0/16")})
	rejectFlushes(n)
	if err := n.Reload(next); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Reload = %v, want the kernel's ENOENT", err)
	}
	after := ns.exec(t, "nft", "list", "table", "inet", "egressd")
	if normalizeTimeouts(after) != normalizeTimeouts(before) {
		t.Errorf("failed reload changed the table:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if err := n.Check(); err != nil {
		t.Errorf("Check after failed reload: %v", err)
	}
	n.flushHook.Store(nil)
	if err := n.Reload(next); err != nil {
		t.Fatalf("Reload after recovery: %v", err)
	}
	if out := ns.exec(t, "nft", "list", "chain", "inet", "egressd", "g_lab"); !strings.Contains(out, "drop") {
		t.Errorf("reloaded table lacks the new group's chain:\n%s", out)
	}
	if err := n.Check(); err != nil {
		t.Errorf("Check after reload: %v", err)
	}
}

// normalizeTimeouts drops the "expires" countdowns, which tick between two
// listings.
func normalizeTimeouts(s string) string {
	return normalize(regexp.MustCompile(`expires [0-9hms.]+`).ReplaceAllString(s, ""))
}

// TestRestoreRetriesAfterFailure: while netlink fails, a deleted table
// cannot be restored; Check keeps reporting it and Allow fails. Once
// netlink works again the retry restores it.
func TestRestoreRetriesAfterFailure(t *testing.T) {
	f := newDriftFixture(t, Options{VerifyEvery: -1})
	failFlushes(f.n, unix.ENOBUFS)
	f.ns.exec(t, "nft", "delete", "table", "inet", "egressd")
	if !wait.Until(restoreLimit, 20*time.Millisecond, func() bool {
		return strings.Contains(f.logs.String(), "restoring the table failed")
	}) {
		t.Fatalf("no failed restore logged:\n%s", f.logs.String())
	}
	if err := f.n.Check(); err == nil {
		t.Error("Check reports no drift while the table is missing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.n.Allow(ctx, Allowance{Group: "servers", IPs: addrs("192.0.2.40"), TTL: time.Minute}); err == nil {
		t.Error("Allow succeeded while the table is missing")
	}
	if got := f.restores(t, restoreTable); got != 0 {
		t.Errorf("restores{reason=table} = %v before any restore succeeded", got)
	}
	f.n.flushHook.Store(nil)
	f.waitRestored(t)
	if got := f.restores(t, restoreTable); got != 1 {
		t.Errorf("restores{reason=table} = %v, want 1", got)
	}
}

// TestLostNotificationsResendOnlyMissing: after an overflow of the
// notification socket egressd cannot know what changed. It must compare
// the sets with its index and re-add only what is missing, or its own
// re-adds would overflow the socket again.
func TestLostNotificationsResendOnlyMissing(t *testing.T) {
	f := newDriftFixture(t, Options{VerifyEvery: -1})
	idle := func() int {
		before := f.n.flushCount()
		f.n.watch.report(drift{lost: true})
		time.Sleep(200 * time.Millisecond)
		return f.n.flushCount() - before
	}
	if sent := idle(); sent != 0 {
		t.Errorf("lost notifications with nothing missing sent %d batches", sent)
	}

	// Delete an element through a socket the watcher takes for egressd's
	// own, as if its notification had been dropped.
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(f.ns.fd), nftables.WithSockOptions(f.n.rememberPortID))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	set := &nftables.Set{Table: f.table, Name: "g_servers_d4", KeyType: nftables.TypeIPAddr}
	if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: f.d4}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if f.restored(t) {
		t.Fatal("the deletion was noticed; the test cannot simulate lost notifications")
	}
	f.n.watch.report(drift{lost: true})
	f.waitRestored(t)
	if got := f.restores(t, restoreElements); got != 1 {
		t.Errorf("restores{reason=elements} = %v, want 1", got)
	}
	if logs := f.logs.String(); !strings.Contains(logs, `events="notifications lost" elements=1`) {
		t.Errorf("want one element re-added after lost notifications:\n%s", logs)
	}
}
