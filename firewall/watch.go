package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A watcher listens to nftables change notifications and reports changes
// other netlink sockets make to egressd's table.
//
// It reads the multicast group with its own small decoder instead of
// nftables.Monitor: v0.3.0's type filter (flags&1<<type) passes every
// message whenever table events are wanted, so each of egressd's own
// element updates would be fully parsed. Here an element addition costs a
// header check.
type watcher struct {
	conn   *netlink.Conn
	log    *slog.Logger
	table  atomic.Pointer[string] // the table to watch; Reload may rename it
	own    *portIDs
	wake   chan struct{} // capacity 1: a report is waiting in pending
	done   chan struct{}
	closed atomic.Bool

	mu      sync.Mutex
	pending drift
	// reported counts reports; the owner notes up to which one it has
	// repaired (NFT.driftSettled).
	reported atomic.Uint64
	// received counts the notifications read, for tests.
	received atomic.Uint64
}

// drift is what the notifications say changed since the owner last looked.
type drift struct {
	changes  []string        // "delete table", "add rule to chain forward", ...
	elements map[string]bool // sets someone deleted elements from
	// replaced: the table or a set was deleted, so its elements are gone
	// even if an identical one took its place.
	replaced bool
	lost     bool // notifications were dropped; anything may have changed
}

func (d drift) empty() bool {
	return len(d.changes) == 0 && len(d.elements) == 0 && !d.replaced && !d.lost
}

func (d *drift) merge(o drift) {
	d.changes = appendUnique(d.changes, o.changes...)
	for s := range o.elements {
		if d.elements == nil {
			d.elements = map[string]bool{}
		}
		d.elements[s] = true
	}
	d.replaced = d.replaced || o.replaced
	d.lost = d.lost || o.lost
}

func (d drift) String() string {
	parts := append([]string(nil), d.changes...)
	for _, c := range d.changes {
		if c == "delete table" {
			// Deleting a table deletes each of its objects first; naming
			// them all says nothing more.
			return c
		}
	}
	if len(d.elements) > 0 {
		sets := make([]string, 0, len(d.elements))
		for s := range d.elements {
			sets = append(sets, s)
		}
		sort.Strings(sets)
		parts = append(parts, "delete elements from set "+strings.Join(sets, ", "))
	}
	if d.lost {
		parts = append(parts, "notifications lost")
	}
	return strings.Join(parts, "; ")
}

// maxDriftChanges bounds the change descriptions kept between two looks.
const maxDriftChanges = 32

func appendUnique(list []string, items ...string) []string {
	for _, it := range items {
		if len(list) >= maxDriftChanges {
			break
		}
		dup := false
		for _, have := range list {
			if have == it {
				dup = true
				break
			}
		}
		if !dup {
			list = append(list, it)
		}
	}
	return list
}

// portIDs are the netlink port ids of egressd's own nftables sockets; the
// kernel stamps each notification with the port id of the socket whose
// batch caused it.
type portIDs struct {
	mu  sync.Mutex
	ids []uint32
	// changed, when set, is told the new list after each add (under mu,
	// so calls come in order).
	changed func(ids []uint32)
}

// maxOwnPortIDs: a reconnect gets a new port id; notifications of the old
// socket may still be queued, so a few old ones are remembered.
const maxOwnPortIDs = 8

func (p *portIDs) add(id uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids = append(p.ids, id)
	if len(p.ids) > maxOwnPortIDs {
		p.ids = p.ids[len(p.ids)-maxOwnPortIDs:]
	}
	if p.changed != nil {
		p.changed(p.ids)
	}
}

// watchWith sets f to be told the list now and after each add.
func (p *portIDs) watchWith(f func(ids []uint32)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changed = f
	f(p.ids)
}

func (p *portIDs) has(id uint32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, have := range p.ids {
		if have == id {
			return true
		}
	}
	return false
}

// portIDOf reads the port id the kernel bound a netlink socket to.
func portIDOf(c *netlink.Conn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var id uint32
	var serr error
	cerr := raw.Control(func(fd uintptr) {
		var sa unix.Sockaddr
		sa, serr = unix.Getsockname(int(fd))
		if nl, ok := sa.(*unix.SockaddrNetlink); ok {
			id = nl.Pid
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	return id, serr
}

// startWatcher subscribes to nftables notifications in the namespace netns
// (zero: the current one).
func startWatcher(netns int, table string, own *portIDs, log *slog.Logger) (*watcher, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("firewall: watch: %w", err)
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		c.Close()
		return nil, fmt.Errorf("firewall: watch: join nftables group: %w", err)
	}
	// A burst of egressd's own element updates must not overflow the
	// socket and cost a refill.
	if err := bigBuffers(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("firewall: watch: %w", err)
	}
	w := &watcher{conn: c, log: log, own: own, wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.table.Store(&table)
	own.watchWith(w.skipOwn)
	go w.loop()
	return w, nil
}

// skipOwn has the kernel drop notifications sent by egressd's own
// sockets before they reach the watcher's: every message of a committed
// batch, its closing NEWGEN included, carries the port id of the socket
// that sent the batch, and handle would only skip them. Without this each
// new element woke the watcher, which read the notification into a fresh
// page-sized buffer: about 10 KiB and 45 allocations per Allow. handle
// still checks the port id, for notifications queued before a new id was
// added. If the filter cannot be attached, handle alone skips them.
func (w *watcher) skipOwn(ids []uint32) {
	prog := ownPortFilter(ids)
	raw, err := w.conn.SyscallConn()
	if err == nil {
		cerr := raw.Control(func(fd uintptr) {
			err = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
				&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
		})
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		w.log.Warn("firewall: cannot filter egressd's own changes out of the notifications; reading them all", "err", err)
	}
}

// ownPortFilter is a classic BPF socket filter that drops a netlink
// message whose header's port id (nlmsg_pid, offset 12) is one of ids
// and keeps everything else. A notification skb holds messages of one
// committed batch, all with the same port id.
func ownPortFilter(ids []uint32) []unix.SockFilter {
	n := len(ids)
	prog := make([]unix.SockFilter, 0, n+3)
	prog = append(prog, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 12})
	for i, id := range ids {
		// BPF loads in network byte order; the header is in host order.
		k := binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, id))
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: uint8(n - i), K: k})
	}
	return append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}, // keep
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0})          // drop
}

func (w *watcher) close() {
	if w.closed.Swap(true) {
		return
	}
	w.conn.Close()
	<-w.done
}

// take returns and clears what was reported so far.
func (w *watcher) take() drift {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.pending
	w.pending = drift{}
	return d
}

func (w *watcher) report(d drift) {
	if d.empty() {
		return
	}
	w.mu.Lock()
	w.pending.merge(d)
	w.reported.Add(1)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) loop() {
	defer close(w.done)
	var batch drift
	for {
		msgs, err := w.conn.Receive()
		if err != nil {
			if w.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// The kernel dropped notifications (ENOBUFS); the socket stays
			// usable and the owner re-checks everything.
			w.report(drift{lost: true})
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			w.log.Error("firewall: nftables change notifications stopped; only the periodic check finds changes now", "err", err)
			return
		}
		w.received.Add(uint64(len(msgs)))
		for _, m := range msgs {
			w.handle(m, &batch)
		}
	}
}

// handle collects others' changes to the table into batch and reports
// them when the kernel announces the end of the committed batch.
func (w *watcher) handle(m netlink.Message, batch *drift) {
	if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return
	}
	typ := int(m.Header.Type & 0xff)
	if typ == unix.NFT_MSG_NEWGEN {
		// One generation per committed batch: report what it did.
		w.report(*batch)
		*batch = drift{}
		return
	}
	// describe is cheap for the common case, egressd's own element
	// additions; the port id check comes second.
	if d, ok := w.describe(typ, m.Data); ok && !w.own.has(m.Header.PID) {
		batch.merge(d)
	}
}

// Attribute numbers shared by the table, chain, rule, set and element
// messages: the table name comes first in all of them.
const (
	attrTable      = 1 // NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,SET_TABLE,SET_ELEM_LIST_TABLE}
	attrRuleChain  = unix.NFTA_RULE_CHAIN
	attrChainName  = unix.NFTA_CHAIN_NAME
	attrSetName    = unix.NFTA_SET_NAME
	attrElemSet    = unix.NFTA_SET_ELEM_LIST_SET
	nfgenHeaderLen = 4
)

// describe turns a notification about egressd's table into a drift entry.
// Additions of elements are not drift: egressd's own updates are the
// common case and another process adding destinations is out of scope.
func (w *watcher) describe(typ int, data []byte) (drift, bool) {
	var nameAttr uint16
	var what string
	switch typ {
	case unix.NFT_MSG_DELTABLE:
		what = "delete table"
	case unix.NFT_MSG_NEWCHAIN:
		what, nameAttr = "add chain", attrChainName
	case unix.NFT_MSG_DELCHAIN:
		what, nameAttr = "delete chain", attrChainName
	case unix.NFT_MSG_NEWRULE:
		what, nameAttr = "add rule to chain", attrRuleChain
	case unix.NFT_MSG_DELRULE:
		what, nameAttr = "delete rule from chain", attrRuleChain
	case unix.NFT_MSG_NEWSET:
		what, nameAttr = "add set", attrSetName
	case unix.NFT_MSG_DELSET:
		what, nameAttr = "delete set", attrSetName
	case unix.NFT_MSG_DELSETELEM:
		nameAttr = attrElemSet
	default:
		return drift{}, false
	}
	if len(data) < nfgenHeaderLen || data[0] != unix.NFPROTO_INET {
		return drift{}, false
	}
	ad, err := netlink.NewAttributeDecoder(data[nfgenHeaderLen:])
	if err != nil {
		return drift{}, false
	}
	var table, name string
	for ad.Next() {
		switch ad.Type() {
		case attrTable:
			table = ad.String()
		case nameAttr:
			name = ad.String()
		}
	}
	if ad.Err() != nil || table != *w.table.Load() {
		return drift{}, false
	}
	if typ == unix.NFT_MSG_DELSETELEM {
		return drift{elements: map[string]bool{name: true}}, true
	}
	if name != "" {
		what += " " + name
	}
	replaced := typ == unix.NFT_MSG_DELTABLE || typ == unix.NFT_MSG_DELSET
	return drift{changes: []string{what}, replaced: replaced}, true
}
