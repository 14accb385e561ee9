package firewall

import (
	"bytes"
	"github.com/egressd/egressd/internal/wait"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/metrics"
)

// hasForwardChain reports whether the table's forward chain can be listed.
func hasForwardChain(c *nftables.Conn) bool {
	ch, err := c.ListChain(&nftables.Table{Family: nftables.TableFamilyINet, Name: "egressd"}, "forward")
	return err == nil && ch != nil
}

func TestReloadKeepsEnforcementAndLiveElements(t *testing.T) {
	ns := newTestNS(t)
	clock := newFakeClock()
	m := metrics.New()
	specA := Spec{
		Table: "egressd", Hooks: []string{HookForward}, Grace: 0,
		Groups: []GroupSpec{
			{Name: "servers", Clients: prefixes("10.1.0.0/16")},
			{Name: "lab", Clients: prefixes("10.2.0.0/16")},
		},
	}
	specB := specA
	specB.Groups = []GroupSpec{
		{Name: "servers", Clients: prefixes("10.1.0.0/16", "10.5.0.0/16")},
		{Name: "ops", Clients: prefixes("10.3.0.0/16")},
	}
	n, err := NewNFTables(specA, Options{NetNS: ns.fd, Logger: quietLogger, Now: clock.Now, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.60", "192.0.2.61"), TTL: 100 * time.Second})
	mustAllow(t, n, Allowance{Group: "lab", IPs: addrs("192.0.2.62"), TTL: 100 * time.Second})
	if got := testutil.ToFloat64(m.FirewallElements.WithLabelValues("g_servers_d4")); got != 2 {
		t.Errorf("elements gauge for g_servers_d4 = %v, want 2", got)
	}

	// Watch the table from another socket while reloading: it must never
	// be missing, not even for one listing.
	poller := pollTable(t, ns, everyReading, hasForwardChain)
	clock.Advance(40 * time.Second)
	for i := range 20 {
		spec := specB
		if i%2 == 1 {
			spec = specA
		}
		if err := n.Reload(spec); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	poller.stopPolling()
	if missing, polls := poller.failures.Load(), poller.polls.Load(); missing != 0 || polls == 0 {
		t.Errorf("table missing in %d of %d listings during reloads", missing, polls)
	}

	// The last reload installed specA; servers' elements survived every
	// reload with their remaining lifetime, lab's came back only if lab
	// existed throughout (it did not: specB dropped it).
	d4 := elements(t, ns, "egressd", "g_servers_d4")
	if len(d4) != 2 {
		t.Fatalf("servers d4 after reloads = %v, want 2 carried elements", d4)
	}
	for _, e := range d4 {
		if e.Expires > 60*time.Second || e.Expires < 55*time.Second {
			t.Errorf("carried element %x expires in %v, want about 60s", e.Key, e.Expires)
		}
	}
	if lab := elements(t, ns, "egressd", "g_lab_d4"); len(lab) != 0 {
		t.Errorf("lab elements survived a reload without lab: %v", lab)
	}
	if got := testutil.ToFloat64(m.FirewallUpdates.WithLabelValues("ok")); got != 23 {
		t.Errorf("firewall updates ok = %v, want 23 (install, 2 allows, 20 reloads)", got)
	}

	// A reload that changes the key type (scope) cannot carry elements.
	specC := specA
	specC.Scope = ScopeClient
	if err := n.Reload(specC); err != nil {
		t.Fatal(err)
	}
	if d4 := elements(t, ns, "egressd", "g_servers_d4"); len(d4) != 0 {
		t.Errorf("elements carried into a retyped set: %v", d4)
	}
	client := netip.MustParseAddr("10.1.0.9")
	mustAllow(t, n, Allowance{Group: "servers", Client: client, IPs: addrs("192.0.2.60"), TTL: time.Minute})
	d4 = elements(t, ns, "egressd", "g_servers_d4")
	want := append(client.AsSlice(), netip.MustParseAddr("192.0.2.60").AsSlice()...)
	if len(d4) != 1 || !bytes.Equal(d4[0].Key, want) {
		t.Errorf("after scope reload d4 = %v, want client . dest", d4)
	}
}

func TestReloadRejectsInvalidSpecAndKeepsTable(t *testing.T) {
	ns := newTestNS(t)
	n := startNFT(t, ns, allowSpec(), nil)
	bad := allowSpec()
	bad.Hooks = []string{"prerouting"}
	if err := n.Reload(bad); err == nil {
		t.Fatal("invalid spec reloaded")
	}
	got := ns.exec(t, "nft", "list", "table", "inet", "egressd")
	if normalize(got) != normalize(Render(allowSpec())) {
		t.Errorf("table changed after rejected reload:\n%s", got)
	}
}

func TestReloadWithNewTableNameRemovesTheOld(t *testing.T) {
	ns := newTestNS(t)
	n := startNFT(t, ns, allowSpec(), nil)
	renamed := allowSpec()
	renamed.Table = "egressd2"
	if err := n.Reload(renamed); err != nil {
		t.Fatal(err)
	}
	c := ns.conn(t)
	if _, err := c.ListTableOfFamily("egressd", nftables.TableFamilyINet); err == nil {
		t.Error("old table still present after rename")
	}
	if _, err := c.ListTableOfFamily("egressd2", nftables.TableFamilyINet); err != nil {
		t.Errorf("new table missing: %v", err)
	}
}

// TestReloadNeverHandsElementsToAnotherGroup: when ids shift so that a set
// name now belongs to a different group, its elements must not carry over.
func TestReloadNeverHandsElementsToAnotherGroup(t *testing.T) {
	ns := newTestNS(t)
	spec := Spec{Table: "egressd", Hooks: []string{HookForward},
		Groups: []GroupSpec{{Name: "a-b", Clients: prefixes("10.1.0.0/16")}}}
	n := startNFT(t, ns, spec, nil)
	mustAllow(t, n, Allowance{Group: "a-b", IPs: addrs("192.0.2.110"), TTL: time.Minute})
	spec.Groups = []GroupSpec{{Name: "a.b", Clients: prefixes("10.2.0.0/16")}, {Name: "a-b", Clients: prefixes("10.1.0.0/16")}}
	if err := n.Reload(spec); err != nil {
		t.Fatal(err)
	}
	if got := elements(t, ns, "egressd", "g_a_b_d4"); len(got) != 0 {
		t.Errorf("group a.b inherited a-b's elements: %v", got)
	}
}

// TestReloadCarriesShortLivedElements: an element with less than the
// index's expiry margin left still backs an answer a client holds; a
// reload must carry it with the lifetime it has left, not drop it.
func TestReloadCarriesShortLivedElements(t *testing.T) {
	ns := newTestNS(t)
	clock := newFakeClock()
	spec := allowSpec()
	spec.Grace = 500 * time.Millisecond
	n := startNFT(t, ns, spec, clock)
	mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.70"), TTL: 10 * time.Second})
	// By the index's clock 1.9s are left (the kernel's timer has ~10.5s).
	clock.Advance(8600 * time.Millisecond)
	if err := n.Reload(spec); err != nil {
		t.Fatal(err)
	}
	e := onlyElement(t, ns, "g_servers_d4")
	if e.Timeout != 1900*time.Millisecond || e.Expires > 1900*time.Millisecond {
		t.Errorf("carried element timeout %v, expires in %v; want 1.9s, at most 1.9s left", e.Timeout, e.Expires)
	}
	if left := n.lifetimeLeft(t, "g_servers_d4", netip.MustParseAddr("192.0.2.70").AsSlice()); left != 1900*time.Millisecond {
		t.Errorf("index lifetime after reload = %v, want 1.9s", left)
	}
}

// TestReloadStandsWhenReadBackFails: a reload whose table is installed
// but cannot be listed right after (an interrupted dump) succeeds, so the
// caller moves to the config the kernel now enforces; the listing later
// checks compare with is taken by the next check, without restoring the
// table.
func TestReloadStandsWhenReadBackFails(t *testing.T) {
	clock := newFakeClock()
	k := newFakeKernel(clock.Now)
	n := fakeNFT(t, k, allowSpec(), clock, nil)
	next := allowSpec()
	next.Groups = append(next.Groups, GroupSpec{Name: "lab", Clients: prefixes("10.2.0.0/16")})
	k.mu.Lock()
	k.failListings = 1
	k.mu.Unlock()
	if err := n.Reload(next); err != nil {
		t.Fatalf("Reload = %v, want the installed table to stand", err)
	}
	mustAllow(t, n, Allowance{Group: "lab", IPs: addrs("192.0.2.80"), TTL: time.Minute})
	if !wait.Until(restoreLimit, 10*time.Millisecond, func() bool {
		st := n.published.Load()
		_, ok := st.objects["chain g_lab"]
		return ok
	}) {
		t.Fatal("the reloaded table was never read back")
	}
	installs := 0
	for _, b := range k.recorded() {
		if b.has("add table") {
			installs++
		}
	}
	if installs != 2 {
		t.Errorf("%d table installs, want 2 (start and reload; no restore)", installs)
	}
}
