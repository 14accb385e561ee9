package firewall

import (
	"encoding/binary"
	"reflect"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nftMessage builds a notification as the kernel sends it: nfgenmsg
// header, then attributes.
func nftMessage(t *testing.T, typ int, family uint8, portID uint32, attrs map[uint16]string) netlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	for _, k := range []uint16{1, 2, 3} { // fixed order
		if v, ok := attrs[k]; ok {
			ae.String(k, v)
		}
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), PID: portID},
		Data:   append([]byte{family, 0, 0, 0}, b...),
	}
}

func newTestWatcher(table string, own ...uint32) *watcher {
	w := &watcher{own: &portIDs{}, wake: make(chan struct{}, 1)}
	w.table.Store(&table)
	for _, id := range own {
		w.own.add(id)
	}
	return w
}

func TestWatcherReportsOthersChangesToItsTable(t *testing.T) {
	const own, other = 100, 200
	inet := uint8(unix.NFPROTO_INET)
	cases := []struct {
		name string
		msgs []testMsg
		want drift
	}{
		{
			name: "table deleted by another process",
			msgs: msgs(m(unix.NFT_MSG_DELTABLE, inet, other, map[uint16]string{1: "egressd"})),
			want: drift{changes: []string{"delete table"}, replaced: true},
		},
		{
			name: "own changes are ignored",
			msgs: msgs(
				m(unix.NFT_MSG_DELTABLE, inet, own, map[uint16]string{1: "egressd"}),
				m(unix.NFT_MSG_DELSETELEM, inet, own, map[uint16]string{1: "egressd", 2: "g_a_d4"}),
			),
		},
		{
			name: "other tables and families are ignored",
			msgs: msgs(
				m(unix.NFT_MSG_DELTABLE, inet, other, map[uint16]string{1: "filter"}),
				m(unix.NFT_MSG_DELTABLE, unix.NFPROTO_IPV4, other, map[uint16]string{1: "egressd"}),
			),
		},
		{
			name: "rules, chains and sets are named",
			msgs: msgs(
				m(unix.NFT_MSG_NEWRULE, inet, other, map[uint16]string{1: "egressd", 2: "forward"}),
				m(unix.NFT_MSG_DELRULE, inet, other, map[uint16]string{1: "egressd", 2: "g_a"}),
				m(unix.NFT_MSG_NEWCHAIN, inet, other, map[uint16]string{1: "egressd", 3: "extra"}),
				m(unix.NFT_MSG_DELSET, inet, other, map[uint16]string{1: "egressd", 2: "g_a_p4"}),
			),
			want: drift{changes: []string{"add rule to chain forward", "delete rule from chain g_a", "add chain extra", "delete set g_a_p4"}, replaced: true},
		},
		{
			name: "element deletions name the set; additions are not drift",
			msgs: msgs(
				m(unix.NFT_MSG_DELSETELEM, inet, other, map[uint16]string{1: "egressd", 2: "g_a_d4"}),
				m(unix.NFT_MSG_DELSETELEM, inet, other, map[uint16]string{1: "egressd", 2: "g_a_d4"}),
				m(unix.NFT_MSG_NEWSETELEM, inet, other, map[uint16]string{1: "egressd", 2: "g_a_d6"}),
			),
			want: drift{elements: map[string]bool{"g_a_d4": true}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newTestWatcher("egressd", own)
			var batch drift
			for _, x := range tc.msgs {
				w.handle(nftMessage(t, x.typ, x.family, x.port, x.attrs), &batch)
			}
			if got := w.take(); !got.empty() {
				t.Fatalf("reported before the generation ended: %+v", got)
			}
			w.handle(nftMessage(t, unix.NFT_MSG_NEWGEN, 0, other, nil), &batch)
			got := w.take()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("reported %+v, want %+v", got, tc.want)
			}
			woken := len(w.wake) == 1
			if woken == tc.want.empty() {
				t.Errorf("owner woken = %v for %+v", woken, tc.want)
			}
		})
	}
}

type testMsg = struct {
	typ    int
	family uint8
	port   uint32
	attrs  map[uint16]string
}

func m(typ int, family uint8, port uint32, attrs map[uint16]string) testMsg {
	return testMsg{typ, family, port, attrs}
}

func msgs(ms ...testMsg) []testMsg { return ms }

func TestDriftString(t *testing.T) {
	cases := []struct {
		d    drift
		want string
	}{
		{drift{changes: []string{"delete rule from chain forward", "delete table"}, elements: map[string]bool{"x": true}}, "delete table"},
		{drift{changes: []string{"add chain extra"}, elements: map[string]bool{"b": true, "a": true}, lost: true},
			"add chain extra; delete elements from set a, b; notifications lost"},
		{drift{}, ""},
	}
	for _, tc := range cases {
		if got := tc.d.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestDriftMergeBoundsChanges(t *testing.T) {
	var d drift
	for i := range 3 * maxDriftChanges {
		d.merge(drift{changes: []string{"add rule to chain c" + string(rune('a'+i%26)) + string(rune('a'+i/26))}})
		d.merge(drift{changes: []string{"delete table"}})
	}
	if len(d.changes) != maxDriftChanges {
		t.Errorf("kept %d changes, want %d", len(d.changes), maxDriftChanges)
	}
}

func TestPortIDsRememberRecentOnes(t *testing.T) {
	var p portIDs
	for id := uint32(1); id <= maxOwnPortIDs+2; id++ {
		p.add(id)
	}
	for id, want := range map[uint32]bool{1: false, 2: false, 3: true, maxOwnPortIDs + 2: true, 99: false} {
		if got := p.has(id); got != want {
			t.Errorf("has(%d) = %v, want %v", id, got, want)
		}
	}
}

func TestRestoreGapGrowsWhenRestoresComeClose(t *testing.T) {
	var g restoreGate
	t0 := time.Unix(1000, 0)
	steps := []struct {
		after time.Duration // since the previous restore
		want  time.Duration
	}{
		{0, 0}, // first restore ever
		{time.Second, minRestoreGap},
		{2 * time.Second, 2 * minRestoreGap},
		{3 * time.Second, 4 * minRestoreGap},
		{restoreQuiet + time.Second, 0}, // quiet again
	}
	now := t0
	for i, s := range steps {
		now = now.Add(s.after)
		g.noteRestore(now)
		if g.restoreGap != s.want {
			t.Errorf("step %d: gap = %s, want %s", i, g.restoreGap, s.want)
		}
	}
	for range 20 {
		now = now.Add(time.Second)
		g.noteRestore(now)
	}
	if g.restoreGap != maxRestoreGap {
		t.Errorf("gap after many close restores = %s, want the cap %s", g.restoreGap, maxRestoreGap)
	}
}
