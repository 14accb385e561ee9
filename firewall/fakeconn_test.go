package firewall

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/fakeclock"
	"github.com/egressd/egressd/metrics"
)

// fakeKernel stands in for nftables in unit tests: the connections it
// hands out queue messages, and Flush applies a batch to an in-memory
// table all or nothing, as the kernel does, and records it. Elements
// expire by the test's clock. Re-adding an element that exists keeps its
// old timeout, as older kernels do, so only a delete and add refreshes it.
type fakeKernel struct {
	now func() time.Time

	mu      sync.Mutex
	tables  map[string]*fakeTable
	batches []fakeBatch
	dials   int
	nextID  uint32
	// beforeFlush, when set, runs (without the lock) at the start of
	// every Flush; a test blocks in it to let requests queue up.
	beforeFlush func(ops []fakeOp)
	// reject, when set, decides a batch's fate before it is applied.
	reject func(ops []fakeOp) error
	// discard makes every batch succeed without being applied or
	// recorded, so a benchmark measures the backend, not this fake.
	discard bool
	// failListings makes that many table listings fail next, as a dump
	// the kernel interrupted does.
	failListings int
}

// fakeBatch is one Flush: its messages in order and how it ended.
type fakeBatch struct {
	ops []fakeOp
	err error
}

// fakeOp is one queued message.
type fakeOp struct {
	verb  string // "add table", "del table", "add set", "add chain", "add rule", "add elem", "del elem"
	table string
	name  string // set or chain
	set   *nftables.Set
	chain *nftables.Chain
	rule  *nftables.Rule
	elem  nftables.SetElement
}

// String is how tests compare operations: "add elem g_servers_d4
// 192.0.2.1 65s", "del elem g_servers_d4 192.0.2.1", "add set
// g_servers_d4".
func (o fakeOp) String() string {
	switch o.verb {
	case "add elem":
		return fmt.Sprintf("add elem %s %s %s", o.name, elemText(o.elem), o.elem.Timeout)
	case "del elem":
		return fmt.Sprintf("del elem %s %s", o.name, elemText(o.elem))
	case "add table", "del table":
		return o.verb + " " + o.table
	}
	return o.verb + " " + o.name
}

// elemText shows an address key as an address, other keys in hex.
func elemText(e nftables.SetElement) string {
	text := func(b []byte) string {
		if a, ok := netip.AddrFromSlice(b); ok {
			return a.String()
		}
		return hex.EncodeToString(b)
	}
	s := text(e.Key)
	if e.KeyEnd != nil {
		s += "-" + text(e.KeyEnd)
	}
	if e.IntervalEnd {
		s += " end"
	}
	return s
}

type fakeTable struct {
	chains []*nftables.Chain
	rules  map[string][]*nftables.Rule
	sets   map[string]*fakeSet
}

type fakeSet struct {
	set   *nftables.Set
	elems map[string]fakeElem
}

type fakeElem struct {
	e        nftables.SetElement
	deadline time.Time // zero: no timeout
}

func newFakeKernel(now func() time.Time) *fakeKernel {
	return &fakeKernel{now: now, tables: map[string]*fakeTable{}}
}

// dial is Options.connect: a fresh connection to this kernel.
func (k *fakeKernel) dial() (nftConn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dials++
	return &fakeConn{k: k}, nil
}

// recorded returns the batches flushed so far.
func (k *fakeKernel) recorded() []fakeBatch {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.batches)
}

// setHooks sets beforeFlush and reject (nil clears them).
func (k *fakeKernel) setHooks(beforeFlush func([]fakeOp), reject func([]fakeOp) error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.beforeFlush, k.reject = beforeFlush, reject
}

// elementOps renders, in order, a batch's element messages for the given
// set: the part of a batch that Allow and the carrying over of elements
// decide.
func (b fakeBatch) elementOps(set string) []string {
	var out []string
	for _, o := range b.ops {
		if (o.verb == "add elem" || o.verb == "del elem") && o.name == set {
			out = append(out, o.String())
		}
	}
	return out
}

// has reports whether the batch holds an operation of this verb.
func (b fakeBatch) has(verb string) bool {
	return slices.ContainsFunc(b.ops, func(o fakeOp) bool { return o.verb == verb })
}

// live lists a set's unexpired elements as "addr lifetime-left".
func (k *fakeKernel) live(table, set string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.tables[table]
	if t == nil || t.sets[set] == nil {
		return nil
	}
	now := k.now()
	var out []string
	for _, fe := range t.sets[set].elems {
		if fe.deadline.IsZero() || fe.deadline.After(now) {
			out = append(out, fmt.Sprintf("%s %s", elemText(fe.e), fe.deadline.Sub(now)))
		}
	}
	slices.Sort(out)
	return out
}

// putElement adds an element with a lifetime left (none: no timeout), as
// an earlier process or an administrator would have.
func (k *fakeKernel) putElement(table, set string, e nftables.SetElement, left time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fe := fakeElem{e: e}
	if left > 0 {
		fe.deadline = k.now().Add(left)
	}
	k.tables[table].sets[set].elems[fakeKey(e)] = fe
}

// deleteTable removes a table as someone else's `nft delete table` would.
func (k *fakeKernel) deleteTable(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.tables, name)
}

func fakeKey(e nftables.SetElement) string {
	return fmt.Sprintf("%x/%x/%t", e.Key, e.KeyEnd, e.IntervalEnd)
}

// apply runs ops against a copy of the tables and installs the copy only
// if every op succeeds.
func (k *fakeKernel) apply(ops []fakeOp) error {
	now := k.now()
	next := make(map[string]*fakeTable, len(k.tables))
	for name, t := range k.tables {
		next[name] = t.clone()
	}
	for i, o := range ops {
		if err := applyOp(next, o, now); err != nil {
			return fmt.Errorf("message %d (%s): %w", i, o, err)
		}
	}
	k.tables = next
	return nil
}

func (t *fakeTable) clone() *fakeTable {
	c := &fakeTable{chains: slices.Clone(t.chains), rules: maps.Clone(t.rules), sets: make(map[string]*fakeSet, len(t.sets))}
	for name, s := range t.sets {
		c.sets[name] = &fakeSet{set: s.set, elems: maps.Clone(s.elems)}
	}
	return c
}

func applyOp(tables map[string]*fakeTable, o fakeOp, now time.Time) error {
	if o.verb == "add table" {
		if tables[o.table] == nil {
			tables[o.table] = &fakeTable{rules: map[string][]*nftables.Rule{}, sets: map[string]*fakeSet{}}
		}
		return nil
	}
	t := tables[o.table]
	if t == nil {
		return unix.ENOENT
	}
	switch o.verb {
	case "del table":
		delete(tables, o.table)
	case "add set":
		if t.sets[o.name] != nil {
			return unix.EEXIST
		}
		cp := *o.set
		fs := &fakeSet{set: &cp, elems: map[string]fakeElem{}}
		t.sets[o.name] = fs
	case "add chain":
		if !slices.ContainsFunc(t.chains, func(c *nftables.Chain) bool { return c.Name == o.name }) {
			cp := *o.chain
			t.chains = append(t.chains, &cp)
		}
	case "add rule":
		if !slices.ContainsFunc(t.chains, func(c *nftables.Chain) bool { return c.Name == o.name }) {
			return unix.ENOENT
		}
		t.rules[o.name] = append(slices.Clone(t.rules[o.name]), o.rule)
	case "add elem", "del elem":
		fs := t.sets[o.name]
		if fs == nil {
			return unix.ENOENT
		}
		k := fakeKey(o.elem)
		cur, ok := fs.elems[k]
		live := ok && (cur.deadline.IsZero() || cur.deadline.After(now))
		if o.verb == "del elem" {
			if !live {
				return unix.ENOENT
			}
			delete(fs.elems, k)
			return nil
		}
		if live {
			return nil // exists: older kernels keep the old timeout
		}
		fe := fakeElem{e: o.elem}
		if o.elem.Timeout > 0 {
			fe.deadline = now.Add(o.elem.Timeout)
		}
		fs.elems[k] = fe
	default:
		return fmt.Errorf("unknown operation %q", o.verb)
	}
	return nil
}

// fakeConn is one connection to a fakeKernel.
type fakeConn struct {
	k      *fakeKernel
	queue  []fakeOp
	closed bool
}

var errFakeClosed = errors.New("fake netlink connection used after close")

func (c *fakeConn) AddTable(t *nftables.Table) *nftables.Table {
	c.queue = append(c.queue, fakeOp{verb: "add table", table: t.Name})
	return t
}

func (c *fakeConn) DelTable(t *nftables.Table) {
	c.queue = append(c.queue, fakeOp{verb: "del table", table: t.Name})
}

func (c *fakeConn) AddSet(s *nftables.Set, elems []nftables.SetElement) error {
	if s.ID == 0 {
		// The caller serializes set creation (setIDs).
		c.k.nextID++
		s.ID = c.k.nextID
	}
	c.queue = append(c.queue, fakeOp{verb: "add set", table: s.Table.Name, name: s.Name, set: s})
	for _, e := range elems {
		c.queue = append(c.queue, fakeOp{verb: "add elem", table: s.Table.Name, name: s.Name, elem: e})
	}
	return nil
}

func (c *fakeConn) AddChain(ch *nftables.Chain) *nftables.Chain {
	c.queue = append(c.queue, fakeOp{verb: "add chain", table: ch.Table.Name, name: ch.Name, chain: ch})
	return ch
}

func (c *fakeConn) AddRule(r *nftables.Rule) *nftables.Rule {
	c.queue = append(c.queue, fakeOp{verb: "add rule", table: r.Table.Name, name: r.Chain.Name, rule: r})
	return r
}

func (c *fakeConn) SetAddElements(s *nftables.Set, elems []nftables.SetElement) error {
	return c.queueElements("add elem", s, elems)
}

func (c *fakeConn) SetDeleteElements(s *nftables.Set, elems []nftables.SetElement) error {
	return c.queueElements("del elem", s, elems)
}

func (c *fakeConn) queueElements(verb string, s *nftables.Set, elems []nftables.SetElement) error {
	if len(elems) > elementsPerMessage {
		return fmt.Errorf("%d elements in one message, more than %d", len(elems), elementsPerMessage)
	}
	for _, e := range elems {
		c.queue = append(c.queue, fakeOp{verb: verb, table: s.Table.Name, name: s.Name, elem: e})
	}
	return nil
}

func (c *fakeConn) Flush() error {
	if c.closed {
		return errFakeClosed
	}
	ops := c.queue
	c.queue = c.queue[:0]
	c.k.mu.Lock()
	hook, discard := c.k.beforeFlush, c.k.discard
	c.k.mu.Unlock()
	if discard {
		return nil
	}
	c.queue = nil // ops is recorded below
	if hook != nil {
		hook(ops)
	}
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	var err error
	if c.k.reject != nil {
		err = c.k.reject(ops)
	}
	if err == nil {
		err = c.k.apply(ops)
	}
	c.k.batches = append(c.k.batches, fakeBatch{ops: ops, err: err})
	return err
}

func (c *fakeConn) ListTablesOfFamily(f nftables.TableFamily) ([]*nftables.Table, error) {
	var out []*nftables.Table
	err := c.eachTable(func(name string, _ *fakeTable) {
		out = append(out, &nftables.Table{Family: f, Name: name})
	})
	return out, err
}

func (c *fakeConn) ListChainsOfTableFamily(f nftables.TableFamily) ([]*nftables.Chain, error) {
	var out []*nftables.Chain
	err := c.eachTable(func(name string, t *fakeTable) {
		for _, ch := range t.chains {
			cp := *ch
			cp.Table = &nftables.Table{Family: f, Name: name}
			out = append(out, &cp)
		}
	})
	return out, err
}

// eachTable calls fn for every table, by name, under the kernel's lock.
func (c *fakeConn) eachTable(fn func(name string, t *fakeTable)) error {
	if c.closed {
		return errFakeClosed
	}
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	if c.k.failListings > 0 {
		c.k.failListings--
		return unix.EINTR
	}
	for _, name := range slices.Sorted(maps.Keys(c.k.tables)) {
		fn(name, c.k.tables[name])
	}
	return nil
}

// lookup locks the kernel and finds a table in it; on success the caller
// unlocks.
func (c *fakeConn) lookup(table string) (*fakeTable, error) {
	if c.closed {
		return nil, errFakeClosed
	}
	c.k.mu.Lock()
	ft := c.k.tables[table]
	if ft == nil {
		c.k.mu.Unlock()
		return nil, unix.ENOENT
	}
	return ft, nil
}

func (c *fakeConn) GetRules(t *nftables.Table, ch *nftables.Chain) ([]*nftables.Rule, error) {
	ft, err := c.lookup(t.Name)
	if err != nil {
		return nil, err
	}
	defer c.k.mu.Unlock()
	return slices.Clone(ft.rules[ch.Name]), nil
}

func (c *fakeConn) GetSets(t *nftables.Table) ([]*nftables.Set, error) {
	ft, err := c.lookup(t.Name)
	if err != nil {
		return nil, err
	}
	defer c.k.mu.Unlock()
	var out []*nftables.Set
	for _, name := range slices.Sorted(maps.Keys(ft.sets)) {
		cp := *ft.sets[name].set
		cp.Table = t
		out = append(out, &cp)
	}
	return out, nil
}

func (c *fakeConn) GetSetElements(s *nftables.Set) ([]nftables.SetElement, error) {
	ft, err := c.lookup(s.Table.Name)
	if err != nil {
		return nil, err
	}
	defer c.k.mu.Unlock()
	if ft.sets[s.Name] == nil {
		return nil, unix.ENOENT
	}
	now := c.k.now()
	var out []nftables.SetElement
	for _, k := range slices.Sorted(maps.Keys(ft.sets[s.Name].elems)) {
		fe := ft.sets[s.Name].elems[k]
		e := fe.e
		if !fe.deadline.IsZero() {
			if !fe.deadline.After(now) {
				continue
			}
			e.Expires = fe.deadline.Sub(now)
		}
		out = append(out, e)
	}
	return out, nil
}

func (c *fakeConn) CloseLasting() error {
	c.closed = true
	return nil
}

// fakeNFT starts a backend on a fake kernel with the test's clock; it
// neither watches the table nor checks it periodically, and takes the
// kernel to have conntrack labels.
func fakeNFT(t testing.TB, k *fakeKernel, spec Spec, clock *fakeclock.Clock, m *metrics.Metrics) *NFT {
	t.Helper()
	n, err := NewNFTables(spec, Options{
		Logger: quietLogger, Now: clock.Now, Metrics: m, NoWatch: true, VerifyEvery: -1,
		probeSend: func(*nftables.Conn) error { return nil },
		connect:   k.dial,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}
