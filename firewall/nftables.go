package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/metrics"
)

// Options are the NFTables backend's collaborators.
type Options struct {
	Metrics *metrics.Metrics // nil: no metrics
	Logger  *slog.Logger     // nil: slog.Default()
	Now     func() time.Time // nil: time.Now; tests inject a clock
	// NetNS is a file descriptor of the network namespace to manage; zero
	// means the namespace egressd runs in.
	NetNS int
	// VerifyEvery is how often the table's chains, rules and sets are
	// compared with what egressd installed, as a safety net behind the
	// change notifications. Zero means 10s; negative disables it.
	VerifyEvery time.Duration
	// NoWatch skips subscribing to nftables change notifications; drift is
	// then found only by the periodic check.
	NoWatch bool

	// probeSend replaces the kernel's answer to the feature probe in tests;
	// nil probes the kernel once per process (DetectFeatures).
	probeSend func(*nftables.Conn) error
	// connect replaces the netlink connection in unit tests; nil dials
	// the kernel.
	connect func() (nftConn, error)
	// libraryElements sends element batches through google/nftables, as
	// before elemBatch; tests and benchmarks compare the two.
	libraryElements bool
}

const (
	// maxBatchRequests caps how many queued Allow calls one netlink batch
	// serves, so a burst cannot build a message the kernel refuses.
	maxBatchRequests = 512
	// elementsPerMessage keeps each element list well under the 64 KiB a
	// netlink attribute can hold.
	elementsPerMessage = 256
	// expiryMargin covers clock skew between egressd's index and the
	// kernel's timers when deciding whether an element may still exist.
	expiryMargin = 2 * time.Second
	// sweepEvery bounds how often the index forgets expired elements.
	sweepEvery = 10 * time.Second
	// minTimeout is the shortest element lifetime egressd asks for.
	minTimeout = time.Second
	// defaultVerifyEvery is the periodic table check's interval.
	defaultVerifyEvery = 10 * time.Second
)

// NFT is the nftables backend. One goroutine at a time owns the netlink
// connection, the expiry index's writes and the drift state: whoever holds
// mu. Allow and Reload queue requests; a caller that finds mu free serves
// the queue itself, up to its own answer (see combine), and otherwise
// wakes the run goroutine, which serves what is left once mu is free. An
// Allow the expiry index shows already in effect returns at once.
type NFT struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	now     func() time.Time
	netns   int

	reqs chan request
	kick chan struct{} // capacity 1: requests are queued for the run goroutine
	quit chan struct{}
	done chan struct{}
	// mu is held by the goroutine acting as owner: the run goroutine, or a
	// caller serving queued requests itself (combine).
	mu sync.Mutex

	closed    chan struct{} // closed when Close starts; guards reqs senders
	closeOnce sync.Once
	closeErr  error

	// Owned by the holder of mu after construction.
	conn      nftConn
	connect   func() (nftConn, error) // nil: dial the kernel
	features  Features                // fixed at construction; read from any goroutine
	spec      Spec
	lay       layout
	sets      map[string]*nftables.Set
	index     *expiryIndex
	view      atomic.Pointer[allowView] // for Allow's check without the owner
	lastSweep time.Time
	flushes   int // netlink batches sent, for tests and benchmarks
	scratch   allowScratch
	// libraryElements sends element batches through google/nftables
	// instead of elemBatch; tests and benchmarks compare the two.
	libraryElements bool
	// inherited lists what the first install carried over from an
	// earlier table and every re-check since kept, inheritedAt the
	// elements they are; under inheritedMu, as Inherited reads them from
	// other goroutines.
	inheritedMu sync.Mutex
	inherited   []LiveElement
	inheritedAt []element
	// recheck and gen are the policy of the last ReloadRecheck and its
	// generation: an Allow decided under an older one is re-checked by
	// recheck first (see staleDenied).
	recheck Recheck
	gen     uint64

	// Drift detection and restore (see restore.go).
	own         *portIDs // port ids of the sockets egressd changes the table with
	watch       *watcher // nil with Options.NoWatch
	verifyEvery time.Duration
	restores    *prometheus.CounterVec
	rejected    *rejections                // allowances refused by a cap
	baseline    tableState                 // the table as listed right after install
	published   atomic.Pointer[tableState] // baseline for Check
	// driftSettled is the watcher's report count up to which the owner has
	// repaired everything; repairing is set while a change by others is
	// known but not yet repaired. Either way the index may list elements
	// the kernel lost, so Allow does not answer from it.
	driftSettled atomic.Uint64
	// baselineStale: the table was installed by a reload but could not be
	// read back, so baseline is the previous table's (owner only).
	baselineStale bool
	// elemGauges are egressd_firewall_elements by set, of the layout in
	// use (owner only).
	elemGauges map[string]prometheus.Gauge
	// epoch goes up before every table replace, which may drop elements
	// the index knew: notes of answers in effect (effectNote) taken
	// before it are not believed after.
	epoch     atomic.Uint64
	repairing atomic.Bool
	restoreGate
	// flushHook, when set, runs before each batch is sent; tests use it to
	// queue a message the kernel rejects, or to fail the batch outright.
	flushHook atomic.Pointer[func(nftConn) error]
}

type request struct {
	ctx     context.Context
	allow   Allowance
	reload  *Spec
	recheck Recheck  // with reload: re-check live elements
	gen     uint64   // with recheck: the policy's generation
	stats   chan int // test hook: reports the flush count
	result  chan error
}

// NewNFTables installs spec's table atomically (replacing any table of the
// same name in one netlink batch) and starts the goroutine that serves
// Allow calls.
func NewNFTables(spec Spec, opts Options) (*NFT, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	n := &NFT{
		log:     opts.Logger,
		metrics: opts.Metrics,
		now:     opts.Now,
		netns:   opts.NetNS,
		connect: opts.connect,
		reqs:    make(chan request, maxBatchRequests),
		kick:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		closed:  make(chan struct{}),
		index:   newExpiryIndex(),
		own:     &portIDs{},

		verifyEvery:     opts.VerifyEvery,
		libraryElements: opts.libraryElements,
	}
	if n.verifyEvery == 0 {
		n.verifyEvery = defaultVerifyEvery
	}
	var reg prometheus.Registerer
	if opts.Metrics != nil {
		reg = opts.Metrics.Registry
	}
	restores, err := restoreCounter(reg)
	if err != nil {
		return nil, fmt.Errorf("firewall: metrics: %w", err)
	}
	n.restores = restores
	if n.log == nil {
		n.log = slog.Default()
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.rejected, err = newRejections(reg, n.log, n.now); err != nil {
		return nil, fmt.Errorf("firewall: metrics: %w", err)
	}
	if n.features, err = detectFeatures(opts); err != nil {
		return nil, err
	}
	if err := n.dial(); err != nil {
		return nil, err
	}
	if !opts.NoWatch {
		// Subscribe before installing so no change after it goes unseen.
		if n.watch, err = startWatcher(n.netns, spec.Table, n.own, n.log); err != nil {
			_ = n.conn.CloseLasting()
			return nil, err
		}
	}
	if err := n.replace(spec, false, nil); err != nil {
		if n.watch != nil {
			n.watch.close()
		}
		_ = n.conn.CloseLasting()
		return nil, err
	}
	n.log.Info("firewall table installed", "backend", "nftables", "table", spec.Table,
		"hooks", spec.Hooks, "groups", len(spec.Groups), "scope", scopeName(spec.Scope), "audit", spec.Audit)
	n.reportFeatures()
	// Before run starts: a caller serving its own batch (combine) may
	// repair drift, which schedules retries on it.
	n.retry = time.NewTimer(time.Hour)
	n.retry.Stop()
	go n.run()
	return n, nil
}

func scopeName(s string) string {
	if s == "" {
		return ScopeGroup
	}
	return s
}

func (n *NFT) dial() error {
	if n.connect != nil {
		c, err := n.connect()
		if err != nil {
			return fmt.Errorf("firewall: netlink: %w", err)
		}
		n.conn = c
		return nil
	}
	var sock *netlink.Conn
	keep := func(c *netlink.Conn) error { sock = c; return nil }
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(n.netns), nftables.WithSockOptions(bigBuffers, n.rememberPortID, keep))
	if err != nil {
		return wrapPermission(fmt.Errorf("firewall: netlink: %w", err))
	}
	lc := &leanConn{Conn: c}
	if !n.libraryElements {
		// Element batches are written on the same socket (see elembatch.go).
		if lc.eb, err = newElemBatch(sock); err != nil {
			_ = c.CloseLasting()
			return fmt.Errorf("firewall: netlink: %w", err)
		}
	}
	n.conn = lc
	return nil
}

// Allow puts the allowance's destinations into its group's sets with
// timeout TTL + Grace and returns once the kernel has them (or ctx ends).
// An empty group means the client is in no group, which the firewall does
// not filter, so there is nothing to do.
//
// When the expiry index shows every element live at least a.TTL more,
// Allow returns at once without involving the goroutine that owns the
// netlink connection; the hot path of cached answers costs a map lookup
// per element under a read lock. Elements that are due for a refresh but
// still outlive a.TTL are refreshed by the owner meanwhile, without the
// caller waiting (see alreadyInEffect).
func (n *NFT) Allow(ctx context.Context, a Allowance) error {
	if a.Group == "" || len(a.IPs) == 0 {
		return nil
	}
	select {
	case <-n.closed:
		return errClosed
	default:
	}
	if err := n.checkAddresses(a); err != nil {
		return err
	}
	if ctx.Err() == nil && n.alreadyInEffect(&a) {
		return nil
	}
	return n.submit(ctx, &request{ctx: ctx, allow: a})
}

// Reload replaces the table with spec's in one atomic batch. Elements of
// sets that keep their name and type are carried over with their remaining
// lifetime; elements of removed or retyped sets are dropped.
func (n *NFT) Reload(spec Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	return n.submit(context.Background(), &request{ctx: context.Background(), reload: &spec})
}

// ReloadRecheck is Reload for a changed policy, check, of the given
// generation (enforce.Allowance.Generation): each live element is carried
// over only if check still approves one of the answers it remembers (see
// Allowance.Name), on the element's ports. The others are left out of the
// new table, in the same atomic batch. Elements carried over from an
// earlier process are re-checked by the name in their comment (see
// inheritElements); those without one are carried as Reload does.
//
// From then on, an Allow whose Generation is older (but not zero) is
// first asked of check and refused with enforce.ErrStale if check denies
// it: an answer decided before the reload cannot add what the new policy
// denies after the re-check.
func (n *NFT) ReloadRecheck(spec Spec, check Recheck, generation uint64) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	return n.submit(context.Background(), &request{ctx: context.Background(), reload: &spec, recheck: check, gen: generation})
}

// flushCount reports how many netlink batches have been sent.
func (n *NFT) flushCount() int {
	ch := make(chan int, 1)
	if err := n.submit(context.Background(), &request{ctx: context.Background(), stats: ch}); err != nil {
		return -1
	}
	return <-ch
}

var errClosed = errors.New("firewall: closed")

// submit queues r and waits for its answer. When no goroutine acts as
// owner, the caller serves the queue itself (combine): a miss at moderate
// load then costs no hand-off to the run goroutine and back, two wake-ups
// of other threads when they sleep. Otherwise the run goroutine is woken
// and serves r with whatever else queued, once the owner is done.
func (n *NFT) submit(ctx context.Context, r *request) error {
	r.result = resultChans.Get().(chan error)
	select {
	case <-n.closed:
		return errClosed
	default:
	}
	select {
	case n.reqs <- *r:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.closed:
		return errClosed
	}
	if n.mu.TryLock() {
		n.combine(r.result)
	} else {
		n.wakeOwner()
	}
	select {
	case err := <-r.result:
		// Answered and empty again: nobody sends on it any more.
		resultChans.Put(r.result)
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		// The owner answers before it exits; a request it never saw gets
		// errClosed.
		select {
		case err := <-r.result:
			return err
		default:
			return errClosed
		}
	}
}

// resultChans holds the result channels of answered requests for the
// next ones: every Allow that goes to the owner needs one. A channel whose
// request was given up on (ctx ended first) is left to the collector, as
// the owner may still answer on it.
var resultChans = sync.Pool{New: func() any { return make(chan error, 1) }}

// wakeOwner tells the run goroutine that requests are queued; it serves
// them once it holds mu.
func (n *NFT) wakeOwner() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// combine serves queued requests, in order and in batches, until mine
// (the caller's own result channel) has its answer, then lets go of mu,
// which the caller holds. Requests still queued then go to the run
// goroutine. Like the run goroutine it yields once first, so callers
// that are already runnable queue into the same batch.
func (n *NFT) combine(mine chan error) {
	defer func() {
		n.mu.Unlock()
		if len(n.reqs) > 0 {
			n.wakeOwner()
		}
	}()
	select {
	case <-n.closed:
		// Close has begun: it owns the connection from now on.
		n.failPending()
		return
	default:
	}
	runtime.Gosched()
	for len(mine) == 0 && n.serveQueued() {
	}
}

// serveQueued serves one batch of queued requests (up to
// maxBatchRequests) and reports whether there were any. Changes by others
// reported meanwhile are repaired first, so no answer relies on elements
// someone else deleted. The caller holds mu.
func (n *NFT) serveQueued() bool {
	batch := n.scratch.reqs[:0]
	defer func() {
		clear(batch) // no request's context or channel kept alive
		n.scratch.reqs = batch[:0]
	}()
drain:
	for len(batch) < maxBatchRequests {
		// Received straight into its slot: a request through a temporary
		// would sit twice in this frame, on a UDP worker's stack.
		batch = append(batch, request{})
		select {
		case batch[len(batch)-1] = <-n.reqs:
		default:
			batch = batch[:len(batch)-1]
			break drain
		}
	}
	if len(batch) == 0 {
		return false
	}
	if n.watch != nil {
		select {
		case <-n.watch.wake:
			n.repairDrift()
		default:
		}
	}
	n.serve(batch)
	return true
}

// Close stops serving. The table stays in place (fail closed) unless the
// spec asked for RemoveOnExit.
func (n *NFT) Close() error {
	n.closeOnce.Do(func() {
		close(n.closed)
		close(n.quit)
		<-n.done
		// A caller may still hold mu, serving; once it lets go, any later
		// one sees closed and only fails what is queued.
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.watch != nil {
			n.watch.close()
		}
		if n.spec.RemoveOnExit {
			n.conn.DelTable(n.lay.nftTable())
			if err := n.conn.Flush(); err != nil {
				n.closeErr = fmt.Errorf("firewall: remove table %s: %w", n.spec.Table, err)
			} else {
				n.log.Info("firewall table removed", "table", n.spec.Table)
			}
		}
		if err := n.conn.CloseLasting(); n.closeErr == nil {
			n.closeErr = err
		}
	})
	return n.closeErr
}

func (n *NFT) run() {
	defer close(n.done)
	var verify <-chan time.Time
	if n.verifyEvery > 0 {
		t := time.NewTicker(n.verifyEvery)
		defer t.Stop()
		verify = t.C
	}
	var changed <-chan struct{}
	if n.watch != nil {
		changed = n.watch.wake
	}
	defer n.retry.Stop()
	locked := func(f func()) {
		n.mu.Lock()
		defer n.mu.Unlock()
		f()
	}
	for {
		select {
		case <-changed:
			locked(n.repairDrift)
		case <-verify:
			locked(n.repairDrift)
		case <-n.retry.C:
			locked(n.repairDrift)
		case <-n.quit:
			locked(n.failPending)
			return
		case <-n.kick:
			locked(func() {
				// Let callers that are already runnable queue up first:
				// under a burst this turns many round trips into one
				// batch, and when nothing else is runnable it costs next
				// to nothing.
				runtime.Gosched()
				n.serveQueued()
			})
			if len(n.reqs) > 0 {
				// More than one batch queued: the next, after a look at
				// the other events.
				n.wakeOwner()
			}
		}
	}
}

// failPending answers requests still queued at shutdown.
//
// Out of line: combine calls it, and the request it receives would
// otherwise sit in combine's frame.
//
//go:noinline
func (n *NFT) failPending() {
	for {
		select {
		case r := <-n.reqs:
			r.result <- errClosed
		default:
			return
		}
	}
}

// serve handles requests in order: runs of Allow calls share one batch;
// a reload is applied between them.
func (n *NFT) serve(batch []request) {
	start := 0 // the run of Allow calls not served yet: batch[start:i]
	for i := range batch {
		r := &batch[i]
		if r.reload == nil && r.stats == nil {
			continue
		}
		n.applyAllows(batch[start:i])
		start = i + 1
		if r.reload != nil {
			n.serveReload(r)
		} else {
			r.stats <- n.flushes
			r.result <- nil
		}
	}
	n.applyAllows(batch[start:])
}

// serveReload applies a Reload or ReloadRecheck request. Out of line: a
// spec is large, and serve's frame is on every UDP worker's stack that
// serves a batch (TestAllowFitsWorkerStack).
//
//go:noinline
func (n *NFT) serveReload(r *request) {
	// The new generation goes out with the new table's view, so no Allow
	// of an older policy answers from the index after it.
	prevCheck, prevGen := n.recheck, n.gen
	if r.recheck != nil {
		n.recheck, n.gen = r.recheck, max(n.gen, r.gen)
	}
	err := n.replace(*r.reload, true, r.recheck)
	if err != nil {
		n.recheck, n.gen = prevCheck, prevGen
		n.publishView()
	}
	r.result <- err
}

// replace installs spec's layout in one batch, carrying over live elements
// (only those check approves, when set). logReload logs the outcome as a
// config reload.
func (n *NFT) replace(spec Spec, logReload bool, check Recheck) error {
	n.epoch.Add(1)
	lay := buildLayout(spec, n.features)
	now := n.now()
	keep := map[string]bool{}
	inherited := n.sets == nil
	if inherited {
		// First install: a table left by an earlier egressd still holds
		// what its clients were told; carry that over, not just the index.
		var err error
		var left int
		if keep, left, err = n.inheritElements(lay, now); err != nil {
			n.log.Warn("firewall: cannot read the previous table's elements; starting with empty sets", "table", spec.Table, "err", err)
			keep = nil
		} else if left > 0 {
			n.log.Warn("firewall: elements of the previous table whose comment does not hold the answer they were added for are not carried over: nothing could re-check them", "table", spec.Table, "elements", left)
		}
	} else {
		old := map[string]setDef{}
		for _, s := range n.lay.sets {
			old[s.name] = s
		}
		for _, s := range lay.sets {
			// Same group, same key: the elements mean the same thing.
			o, ok := old[s.name]
			if ok && s.dynamic() && o.group == s.group && o.kind == s.kind && o.typeText() == s.typeText() {
				keep[s.name] = true
			}
		}
	}
	if n.sets != nil && n.spec.Table != spec.Table {
		// Renamed: the old table goes in the same batch (added first so
		// the delete cannot fail).
		old := n.lay.nftTable()
		n.conn.AddTable(old)
		n.conn.DelTable(old)
	}
	sets, err := lay.queueReplace(n.conn)
	if err != nil {
		n.resetConn()
		return err
	}
	var approved func(entryView) bool
	if check != nil {
		approved = approvedBy(lay, check, now)
	}
	carried, dropped := n.index.carryOver(now, keep, approved)
	for name, elems := range carried {
		if err := queueElements(n.conn, sets[name], elems, false); err != nil {
			n.resetConn()
			return err
		}
	}
	if err := n.flush(); err != nil {
		n.count("error")
		return wrapPermission(fmt.Errorf("firewall: install table %s: %w", spec.Table, err))
	}
	n.count("ok")
	n.keepInherited()
	n.tuneSetGC(spec, lay, sets)
	if logReload {
		n.log.Info("firewall table reloaded", "table", spec.Table, "groups", len(spec.Groups), "carried_sets", len(carried),
			"carried_elements", countElements(carried), "dropped_by_policy", dropped)
	} else if inherited && len(carried) > 0 {
		n.log.Info("firewall elements carried over from the previous table", "table", spec.Table,
			"carried_sets", len(carried), "carried_elements", countElements(carried))
	}
	n.forgetGauges(lay)
	n.spec, n.lay, n.sets = spec, lay, sets
	n.publishView()
	n.updateGauges(now, true, nil)
	err = n.takeBaseline()
	if err != nil && logReload {
		// The new table is in the kernel and in use: the reload stands
		// (failing it would leave the caller on its old config over the
		// new table). What is missing is the listing later checks compare
		// with; the next check takes it, or restores the table if it is
		// not what was installed.
		n.log.Warn("firewall: table reloaded, but reading it back failed; checking it again shortly", "table", spec.Table, "err", err)
		n.baselineStale = true
		n.resetConn()
		n.later(drift{}, verifyRetry)
		return nil
	}
	return err
}

// setGCTuner is the part of the production connection that sets a set's
// garbage collection interval (leanConn; the unit tests' fake connection
// has none, so their tables keep the kernel's default).
type setGCTuner interface {
	SetGCInterval([]*nftables.Set, time.Duration) error
}

// tuneSetGC sets the kernel's garbage collection interval of the sets
// Allow fills, just installed, to spec.SetGCInterval. By default the kernel
// walks every element of such a set once a second to free the expired
// ones: for a hash set (addresses) in a worker on the CPU that created the
// set, 2-4 ms for 60,000 elements, during which that CPU serves nothing
// else; for a concatenated interval set (addresses with ports) inside the
// next commit, an Allow's batch. Expired elements never match
// a packet (nor appear in a listing), so a longer interval only keeps
// their memory a while longer. Kernels that do not apply updates of an
// existing set (before 6.10) accept the message and keep a second; a
// failure is logged and changes nothing else.
func (n *NFT) tuneSetGC(spec Spec, lay layout, sets map[string]*nftables.Set) {
	t, ok := n.conn.(setGCTuner)
	if !ok || spec.SetGCInterval <= 0 {
		return
	}
	var dynamic []*nftables.Set
	for _, s := range lay.sets {
		if s.dynamic() && sets[s.name] != nil {
			dynamic = append(dynamic, sets[s.name])
		}
	}
	if len(dynamic) == 0 {
		return
	}
	err := t.SetGCInterval(dynamic, spec.SetGCInterval)
	if errors.Is(err, errNotLean) {
		// Element batches go through the library (Options for tests and
		// benchmarks): it cannot send the update.
		n.log.Debug("firewall: sets keep the kernel's garbage collection interval", "table", spec.Table)
		return
	}
	if err != nil {
		n.log.Warn("firewall: cannot set the sets' garbage collection interval; the kernel keeps its default",
			"table", spec.Table, "gc_interval", spec.SetGCInterval, "err", err)
	}
}

// publishView publishes what Allow needs outside the owner goroutine.
func (n *NFT) publishView() {
	n.view.Store(&allowView{groups: n.lay.groups, grace: n.spec.Grace, gen: n.gen,
		limits: limitView{maxAddr: n.spec.maxAddresses(), maxElems: n.spec.maxElements()}})
}

func countElements(bySet map[string][]nftables.SetElement) int {
	total := 0
	for _, elems := range bySet {
		total += len(elems)
	}
	return total
}

// queueElements adds (or deletes) elements in chunks that fit a message:
// at most elementsPerMessage, and an element list within the 64 KiB a
// netlink attribute can hold (google/nftables writes a longer one with a
// wrapped length, and the kernel took the elements up to it: 256 elements
// with 250-byte comments left 28 in the set, and the batch succeeded).
func queueElements(c nftConn, set *nftables.Set, elems []nftables.SetElement, del bool) error {
	for start := 0; start < len(elems); {
		end, size := start, 0
		for end < len(elems) && end-start < elementsPerMessage {
			n := elemListItemSize(set, elems[end])
			if end > start && size+n > maxElemListBytes {
				break
			}
			size += n
			end++
		}
		chunk := elems[start:end]
		start = end
		var err error
		if del {
			err = c.SetDeleteElements(set, chunk)
		} else {
			err = c.SetAddElements(set, chunk)
		}
		if err != nil {
			return fmt.Errorf("firewall: set %s: %w", set.Name, err)
		}
	}
	return nil
}

// flush sends the queued batch, timing it; a failed batch gets a fresh
// connection since unread acknowledgements may be left on the old one.
func (n *NFT) flush() error {
	start := time.Now()
	var err error
	if hook := n.flushHook.Load(); hook != nil {
		err = (*hook)(n.conn)
	}
	if err == nil {
		err = n.conn.Flush()
	}
	n.flushes++
	if n.metrics != nil {
		n.metrics.FirewallDuration.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		_ = n.conn.CloseLasting()
		if derr := n.dial(); derr != nil {
			n.log.Error("firewall: reconnect failed", "err", derr)
		}
	}
	return err
}

func (n *NFT) count(result string) {
	if n.metrics != nil {
		n.metrics.FirewallUpdates.WithLabelValues(result).Inc()
	}
}

// updateGauges sweeps the index at most every sweepEvery (unless forced)
// and publishes egressd_firewall_elements from its per-set counts (and,
// after a sweep, egressd_firewall_client_elements_max): of every set after
// a sweep, else only of the sets in touched (those a batch
// added to), so that a miss's batch does not update a gauge per set.
func (n *NFT) updateGauges(now time.Time, force bool, touched map[string]int) {
	all := force
	if force || now.Sub(n.lastSweep) >= sweepEvery {
		n.lastSweep = now
		n.index.sweep(now, expiryMargin)
		all = true
	}
	if n.metrics == nil {
		return
	}
	if force { // a new layout: its sets' gauges
		n.elemGauges = map[string]prometheus.Gauge{}
		for _, s := range n.lay.sets {
			if s.dynamic() {
				n.elemGauges[s.name] = n.metrics.FirewallElements.WithLabelValues(s.name)
			}
		}
	}
	if all {
		for set, g := range n.elemGauges {
			g.Set(float64(n.index.count(set)))
		}
		n.metrics.FirewallClientElementsMax.Set(float64(n.index.maxOwned()))
		return
	}
	for set := range touched {
		if g := n.elemGauges[set]; g != nil {
			g.Set(float64(n.index.count(set)))
		}
	}
}

// forgetGauges drops the element gauges of sets the next layout lacks.
func (n *NFT) forgetGauges(next layout) {
	if n.metrics == nil {
		return
	}
	keep := map[string]bool{}
	for _, s := range next.sets {
		keep[s.name] = true
	}
	for _, s := range n.lay.sets {
		if !keep[s.name] {
			n.metrics.FirewallElements.DeleteLabelValues(s.name)
		}
	}
}
