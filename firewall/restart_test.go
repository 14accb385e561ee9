package firewall

import (
	"sync"
	"sync/atomic"
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

	var polls, gaps, torn atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := nftables.New(nftables.WithNetNSFd(ns.fd))
		if err != nil {
			gaps.Add(1)
			return
		}
		gen, err := newGenReader(ns.fd)
		if err != nil {
			gaps.Add(1)
			return
		}
		defer gen.Close()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			// A listing that overlaps a commit may be torn (the kernel
			// flags such dumps, the library does not report it): only a
			// reading within one ruleset generation counts.
			before, err1 := gen.id()
			ok := enforcing(c)
			after, err2 := gen.id()
			switch {
			case err1 != nil || err2 != nil:
				gaps.Add(1)
			case before != after:
				torn.Add(1)
				continue
			case !ok:
				gaps.Add(1)
			}
			polls.Add(1)
		}
	}()
	// waitPolls lets the poller finish k more readings (bounded in time).
	waitPolls := func(k int64) {
		deadline := time.Now().Add(2 * time.Second)
		for p := polls.Load(); polls.Load() < p+k && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 20 {
		waitPolls(1)
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
	waitPolls(3)
	close(stop)
	wg.Wait()
	_ = n.Close()
	if polls.Load() < 20 {
		t.Fatalf("only %d polls; the test proved nothing", polls.Load())
	}
	if g := gaps.Load(); g != 0 {
		t.Errorf("enforcement missing in %d of %d polls during restarts", g, polls.Load())
	}
	t.Logf("%d polls, no gap (%d readings overlapped a commit)", polls.Load(), torn.Load())
}
