package firewall

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
)

const (
	// A restore within restoreQuiet of the previous one doubles the wait
	// before the next, from minRestoreGap up to maxRestoreGap, so two
	// processes fighting over the table cannot spin.
	restoreQuiet  = 30 * time.Second
	minRestoreGap = time.Second
	maxRestoreGap = time.Minute
	// verifyRetry is the wait after a failed check or restore.
	verifyRetry = time.Second
)

// restoreGate paces restores; owned by the run goroutine.
type restoreGate struct {
	lastRestore time.Time
	restoreGap  time.Duration
	deferred    drift // reported while waiting for the gap to pass
	awaiting    bool  // a retry is scheduled: something is not repaired yet
	retry       *time.Timer
}

// noteRestore records a restore made at now and widens the gap when
// restores come close together.
func (g *restoreGate) noteRestore(now time.Time) {
	if !g.lastRestore.IsZero() && now.Sub(g.lastRestore) < restoreQuiet {
		g.restoreGap = min(max(2*g.restoreGap, minRestoreGap), maxRestoreGap)
	} else {
		g.restoreGap = 0
	}
	g.lastRestore = now
}

// later keeps d for a retry after wait.
func (g *restoreGate) later(d drift, wait time.Duration) {
	g.deferred.merge(d)
	g.awaiting = true
	g.retry.Reset(wait)
}

// rememberPortID notes the port id of each socket egressd changes the table
// with, so the watcher can tell egressd's own changes from others'.
func (n *NFT) rememberPortID(c *netlink.Conn) error {
	id, err := portIDOf(c)
	if err != nil {
		return fmt.Errorf("firewall: netlink port id: %w", err)
	}
	n.own.add(id)
	return nil
}

// takeBaseline lists the freshly installed table: later listings are
// compared with it. It must have exactly the layout's objects.
func (n *NFT) takeBaseline() error {
	st, err := readTableState(n.conn, n.spec.Table)
	if err == nil {
		err = st.matchesLayout(n.lay)
	}
	if err != nil {
		return fmt.Errorf("firewall: read back table %s: %w", n.spec.Table, err)
	}
	n.adoptBaseline(st)
	return nil
}

// adoptBaseline makes st, a listing of the table as installed, what later
// listings are compared with.
func (n *NFT) adoptBaseline(st tableState) {
	n.baselineStale = false
	n.baseline = st
	n.published.Store(&st)
	if n.watch != nil {
		table := n.spec.Table
		n.watch.table.Store(&table)
	}
}

// repairDrift takes what the watcher reported and handles it. Once
// nothing is left to retry, the index is trusted again up to the reports
// taken.
func (n *NFT) repairDrift() {
	var d drift
	var seen uint64
	if n.watch != nil {
		seen = n.watch.reported.Load()
		d = n.watch.take()
	}
	n.handleDrift(d)
	if !n.awaiting {
		n.driftSettled.Store(seen)
		n.repairing.Store(false)
	}
}

// indexTrusted reports whether the index may be believed: no change by
// others is reported or known and unrepaired.
func (n *NFT) indexTrusted() bool {
	if n.repairing.Load() {
		return false
	}
	return n.watch == nil || n.watch.reported.Load() == n.driftSettled.Load()
}

// handleDrift runs on the owner goroutine when the watcher reported
// changes by others, on the periodic check, and on retries. The table's
// structure is compared with the baseline: any difference restores the
// whole table in one batch, carrying the live elements over. If only
// elements were deleted, the live ones of those sets are added back
// (add-only, so another egressd sharing the table is not disturbed).
func (n *NFT) handleDrift(d drift) {
	d.merge(n.deferred)
	n.deferred, n.awaiting = drift{}, false
	got, err := readTableState(n.conn, n.spec.Table)
	if err != nil {
		n.log.Warn("firewall: cannot check the table", "table", n.spec.Table, "err", err)
		n.resetConn()
		n.later(d, verifyRetry)
		return
	}
	var found []string
	if n.baselineStale {
		// Not read back since a reload installed it: the table as it is
		// becomes the baseline if it is what the layout says, else it is
		// restored. The baseline still held is the previous table's, so
		// differences from it say nothing.
		if err := got.matchesLayout(n.lay); err != nil {
			found = []string{err.Error()}
		} else {
			n.adoptBaseline(got)
		}
	} else {
		found = n.baseline.differences(got)
	}
	sets := d.elements
	if d.lost || d.replaced {
		sets = n.dynamicSets()
	}
	if len(found) == 0 && len(sets) == 0 {
		return
	}
	n.repairing.Store(true)
	now := time.Now()
	if wait := n.lastRestore.Add(n.restoreGap).Sub(now); wait > 0 {
		n.later(d, wait)
		return
	}
	if len(found) > 0 {
		n.restoreTable(d, found, got.present, now)
		return
	}
	n.refill(d, sets, now)
}

func (n *NFT) restoreTable(d drift, found []string, present bool, now time.Time) {
	reason := restoreLayout
	if !present {
		reason = restoreTable
	}
	n.log.Warn("firewall table changed outside egressd; restoring it",
		"table", n.spec.Table, "found", strings.Join(found, ", "), "events", d.String())
	n.noteRestore(now)
	if err := n.replace(n.spec, false, nil); err != nil {
		n.log.Error("firewall: restoring the table failed; retrying", "table", n.spec.Table, "err", err)
		n.later(d, max(verifyRetry, n.restoreGap))
		return
	}
	n.restores.WithLabelValues(reason).Inc()
}

// refill adds back the live elements (as the index sees them) that the
// kernel's sets lack. Only missing ones are sent: re-adding everything
// would flood the watcher with egressd's own notifications, and after an
// overflow that would repeat.
func (n *NFT) refill(d drift, sets map[string]bool, now time.Time) {
	missing, err := n.missingElements(sets)
	if err != nil {
		n.log.Warn("firewall: cannot list set elements", "table", n.spec.Table, "err", err)
		n.resetConn()
		n.later(d, verifyRetry)
		return
	}
	total := 0
	for name, elems := range missing {
		if err := queueElements(n.conn, n.sets[name], elems, false); err != nil {
			n.resetConn()
			n.log.Error("firewall: re-adding elements failed; retrying", "err", err)
			n.later(d, max(verifyRetry, n.restoreGap))
			return
		}
		total += len(elems)
	}
	if total == 0 {
		return
	}
	n.noteRestore(now)
	if err := n.flush(); err != nil {
		n.count("error")
		n.log.Error("firewall: re-adding elements failed; retrying", "table", n.spec.Table, "err", err)
		n.later(d, max(verifyRetry, n.restoreGap))
		return
	}
	n.count("ok")
	n.log.Warn("firewall set elements deleted outside egressd; re-added the live ones",
		"table", n.spec.Table, "events", d.String(), "elements", total)
	n.restores.WithLabelValues(restoreElements).Inc()
}

// missingElements lists, per set, the index's live elements that the
// kernel does not have.
func (n *NFT) missingElements(sets map[string]bool) (map[string][]nftables.SetElement, error) {
	live := n.index.live(n.now(), sets)
	for name, want := range live {
		set := n.sets[name]
		if set == nil {
			delete(live, name)
			continue
		}
		have, err := n.conn.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("list set %s: %w", name, err)
		}
		present := make(map[string]bool, len(have))
		for _, e := range have {
			present[elementKey(e)] = true
		}
		var lacking []nftables.SetElement
		for _, e := range want {
			if !present[elementKey(e)] {
				lacking = append(lacking, e)
			}
		}
		if len(lacking) == 0 {
			delete(live, name)
		} else {
			live[name] = lacking
		}
	}
	return live, nil
}

func elementKey(e nftables.SetElement) string {
	return string(e.Key) + "\x00" + string(e.KeyEnd)
}

// dynamicSets names every set Allow fills.
func (n *NFT) dynamicSets() map[string]bool {
	out := map[string]bool{}
	for _, s := range n.lay.sets {
		if s.dynamic() {
			out[s.name] = true
		}
	}
	return out
}

// Check compares the table as the kernel lists it now with what egressd
// installed (chains, rules and sets; not set elements). It returns nil
// when they match, for a readiness probe. It is safe to call from any
// goroutine and uses a netlink socket of its own for the call.
func (n *NFT) Check() error {
	select {
	case <-n.closed:
		return errClosed
	default:
	}
	want := n.published.Load()
	if want == nil {
		return fmt.Errorf("firewall: table not installed")
	}
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(n.netns))
	if err != nil {
		return wrapPermission(fmt.Errorf("firewall: netlink: %w", err))
	}
	defer c.CloseLasting()
	got, err := readTableState(c, want.table)
	if err != nil {
		return err
	}
	if found := want.differences(got); len(found) > 0 {
		return fmt.Errorf("firewall: table inet %s differs from what egressd installed: %s", want.table, strings.Join(found, ", "))
	}
	return nil
}
