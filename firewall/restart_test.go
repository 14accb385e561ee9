package firewall

import (
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/egressd/egressd/metrics"
)

// enforcing reports whether the table, read over c, sends the group's
// clients to the group chain and that chain ends in a drop.
func enforcing(c *nftables.Conn) bool {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: "egressd"}
	fwd, err := c.GetRules(t, &nftables.Chain{Name: "forward", Table: t})
	if err != nil {
		return false
	}
	jumps := false
	for _, r := range fwd {
		for _, e := range r.Exprs {
			if v, ok := e.(*expr.Verdict); ok && v.Kind == expr.VerdictJump && v.Chain == "g_servers" {
				jumps = true
			}
		}
	}
	group, err := c.GetRules(t, &nftables.Chain{Name: "g_servers", Table: t})
	if err != nil || len(group) == 0 || !jumps {
		return false
	}
	last := group[len(group)-1].Exprs
	v, ok := last[len(last)-1].(*expr.Verdict)
	return ok && v.Kind == expr.VerdictDrop
}

// TestRestartKeepsEnforcement starts egressd's backend again and again on
// the same table, one after the other and overlapping, while another
// socket keeps checking that the drop for unapproved destinations is in
// place. It must never be missing.
func TestRestartKeepsEnforcement(t *testing.T) {
	ns := newTestNS(t)
	if enforcing(newTestNS(t).conn(t)) {
		t.Fatal("enforcing reports a table in an empty namespace")
	}
	m := metrics.New() // shared, as a restarted process would re-register
	start := func() *NFT {
		t.Helper()
		n, err := NewNFTables(allowSpec(), Options{NetNS: ns.fd, Logger: quietLogger, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		mustAllow(t, n, Allowance{Group: "servers", IPs: addrs("192.0.2.50"), TTL: time.Minute})
		return n
	}
	n := start()

	poller := pollTable(t, ns, withinOneGeneration, enforcing)
	for i := range 20 {
		poller.waitPolls(1)
		if i%2 == 0 {
			// The old process is gone; its table stayed.
			_ = n.Close()
			n = start()
		} else {
			// The new process starts while the old one still runs.
			next := start()
			_ = n.Close()
			n = next
		}
	}
	// Give the poller a few rounds on the final table too.
	poller.waitPolls(3)
	poller.stopPolling()
	_ = n.Close()
	polls := poller.polls.Load()
	if polls < 20 {
		t.Fatalf("only %d polls; the test proved nothing", polls)
	}
	if g := poller.failures.Load(); g != 0 {
		t.Errorf("enforcement missing in %d of %d polls during restarts", g, polls)
	}
	t.Logf("%d polls, no gap (%d readings overlapped a commit)", polls, poller.torn.Load())
}
