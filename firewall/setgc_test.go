package firewall

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/lockedbuf"
	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

// gcIntervalOf reads a set's gc-interval line from nft's listing ("" when
// the set has the kernel's default).
func gcIntervalOf(t *testing.T, ns *testNS, set string) string {
	t.Helper()
	for _, line := range strings.Split(ns.exec(t, "nft", "list", "set", "inet", "egressd", set), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "gc-interval "); ok {
			return v
		}
	}
	return ""
}

// TestSetGCInterval: the sets Allow fills (addresses, and addresses with
// ports) get Spec.SetGCInterval
// at install, reload and restore, in the real kernel; the update is not
// mistaken for a change by someone else; zero leaves the kernel's default.
func TestSetGCInterval(t *testing.T) {
	ns := newTestNS(t)
	m, logs := metrics.New(), &lockedbuf.Buffer{}
	spec := allowSpec()
	spec.SetGCInterval = 10 * time.Second
	n, err := NewNFTables(spec, Options{NetNS: ns.fd, Metrics: m, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	want := func(stage, interval string) {
		t.Helper()
		for _, set := range []string{"g_servers_d4", "g_servers_d6", "g_servers_p4", "g_servers_p6"} {
			if got := gcIntervalOf(t, ns, set); got != interval {
				t.Errorf("%s: %s gc-interval %q, want %q", stage, set, got, interval)
			}
		}
	}
	want("install", "10s")
	// nft-rules prints the interval where nft lists it.
	checkInstalledAsRendered(t, ns, spec, AllFeatures())

	spec.SetGCInterval = 90 * time.Second // nft lists "1m30s"
	if err := n.Reload(spec); err != nil {
		t.Fatal(err)
	}
	checkInstalledAsRendered(t, ns, spec, AllFeatures())
	spec.SetGCInterval = 20 * time.Second
	if err := n.Reload(spec); err != nil {
		t.Fatal(err)
	}
	want("reload", "20s")
	for _, a := range []Allowance{
		{Group: "servers", IPs: addrs("192.0.2.10", "2001:db8::10"), TTL: time.Minute},
		{Group: "servers", IPs: addrs("192.0.2.11", "2001:db8::11"), TTL: time.Minute,
			Ports: []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}}},
	} {
		mustAllow(t, n, a)
		if !n.InEffect(a) {
			t.Errorf("elements allowed after the update are not in effect: %+v", a)
		}
	}
	if listing := ns.exec(t, "nft", "list", "set", "inet", "egressd", "g_servers_p4"); !strings.Contains(listing, "192.0.2.11 . tcp . 443") {
		t.Errorf("port element missing after the update:\n%s", listing)
	}
	if err := n.Check(); err != nil {
		t.Errorf("Check after the update: %v", err)
	}
	n.flushCount()
	for _, reason := range []string{restoreTable, restoreLayout, restoreElements} {
		if got := restoresOn(t, m, reason); got != 0 {
			t.Errorf("restores{%s} = %v after install and reload: egressd's own update was taken for drift\n%s", reason, got, logs.String())
		}
	}

	// The watcher restores a deleted table with its sets tuned again.
	ns.exec(t, "nft", "delete", "table", "inet", "egressd")
	var listing string
	if !wait.Until(restoreLimit, 20*time.Millisecond, func() bool {
		out, err := ns.Exec("nft", "list", "set", "inet", "egressd", "g_servers_d4")
		listing = out
		return err == nil && strings.Contains(out, "gc-interval 20s")
	}) {
		t.Errorf("restored set lacks its gc-interval:\n%s\nlogs:\n%s", listing, logs.String())
	}

	spec.SetGCInterval = 0
	if err := n.Reload(spec); err != nil {
		t.Fatal(err)
	}
	want("reload with zero", "")
	if strings.Contains(logs.String(), "garbage collection interval") {
		t.Errorf("a warning about the interval was logged:\n%s", logs.String())
	}
}

// TestSetGCIntervalReaddsExpired: an element that expired but that the
// kernel has not collected yet (a long gc interval) is allowed again like
// a new one, in an address set and in a set with ports: the expired one
// never matches and does not stand in the way.
func TestSetGCIntervalReaddsExpired(t *testing.T) {
	ns := newTestNS(t)
	spec := allowSpec()
	spec.Grace, spec.SetGCInterval = 0, time.Hour
	n, err := NewNFTables(spec, Options{NetNS: ns.fd, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	allowances := []Allowance{
		{Group: "servers", IPs: addrs("192.0.2.20"), TTL: time.Second},
		{Group: "servers", IPs: addrs("192.0.2.21"), TTL: time.Second,
			Ports: []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}}},
	}
	for _, a := range allowances {
		mustAllow(t, n, a)
	}
	// Past the elements' one-second timeout and the index's margin, so the
	// next Allow sends them as new (add only), not as refreshes.
	time.Sleep(minTimeout + expiryMargin + 100*time.Millisecond)
	for _, set := range []string{"g_servers_d4", "g_servers_p4"} {
		if listing := ns.exec(t, "nft", "list", "set", "inet", "egressd", set); strings.Contains(listing, "192.0.2.2") {
			t.Fatalf("%s still lists an expired element:\n%s", set, listing)
		}
	}
	for _, a := range allowances {
		a.TTL = time.Minute
		mustAllow(t, n, a)
		// With no grace an element lives exactly the TTL; ask about an
		// answer with half of it.
		a.TTL /= 2
		if !n.InEffect(a) {
			t.Errorf("re-allowed elements are not in effect: %+v", a)
		}
	}
	for set, want := range map[string]string{"g_servers_d4": "192.0.2.20", "g_servers_p4": "192.0.2.21 . tcp . 443"} {
		if listing := ns.exec(t, "nft", "list", "set", "inet", "egressd", set); !strings.Contains(listing, want) {
			t.Errorf("%s lacks %s after it was allowed again:\n%s", set, want, listing)
		}
	}
}
