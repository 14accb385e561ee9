package firewall

import (
	"bytes"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// elemCall is one SetAddElements or SetDeleteElements call.
type elemCall struct {
	set   *nftables.Set
	elems []nftables.SetElement
	del   bool
}

// libraryBatch returns the messages google/nftables sends for calls, batch
// begin and end included, as a fake socket receives them.
func libraryBatch(t *testing.T, calls []elemCall) []netlink.Message {
	t.Helper()
	var sent []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req == nil {
			// The acknowledgement of one message.
			return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}, nil
		}
		sent = append(sent, req...)
		return nil, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range calls {
		if cl.del {
			err = c.SetDeleteElements(cl.set, cl.elems)
		} else {
			err = c.SetAddElements(cl.set, cl.elems)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return sent
}

// TestElemBatchMatchesLibrary: for every kind of element egressd sends
// (group and client scope, IPv4 and IPv6, port ranges with a key end,
// timeouts, comments of every padding, sets without timeouts, adds and
// deletes, several messages per batch), elemBatch encodes the same
// messages, byte for byte, as google/nftables, up to the sequence numbers
// (consecutive in both, from a different start).
func TestElemBatchMatchesLibrary(t *testing.T) {
	inet := &nftables.Table{Family: nftables.TableFamilyINet, Name: "egressd"}
	d4 := &nftables.Set{Table: inet, Name: "g_servers_d4", ID: 7, HasTimeout: true, KeyType: nftables.TypeIPAddr}
	d6 := &nftables.Set{Table: inet, Name: "g_servers_d6", ID: 8, HasTimeout: true, KeyType: nftables.TypeIP6Addr}
	p4 := &nftables.Set{Table: inet, Name: "g_servers_p4", ID: 9, HasTimeout: true, Interval: true, Concatenation: true}
	c6 := &nftables.Set{Table: inet, Name: "g_a_c6", ID: 1 << 30, Interval: true, Constant: true}
	clientScoped := &nftables.Set{Table: &nftables.Table{Family: nftables.TableFamilyINet, Name: "t"}, Name: "g_b_d4", ID: 3, HasTimeout: true}

	v4 := func(s string) []byte { a := netip.MustParseAddr(s).As4(); return a[:] }
	v6 := func(s string) []byte { a := netip.MustParseAddr(s).As16(); return a[:] }
	port := func(addr []byte, p uint16) []byte { return appendPortKey(append([]byte(nil), addr...), 6, p) }
	long := strings.Repeat("a", 61) + "." + strings.Repeat("b", 62) + "." + strings.Repeat("c", 62) + "." + strings.Repeat("d", 61) + "."

	var many []nftables.SetElement
	for i := range elementsPerMessage {
		many = append(many, nftables.SetElement{Key: v4(seqAddr(i).String()), Timeout: time.Duration(i+1) * time.Second, Comment: "n" + strings.Repeat("x", i%5) + "."})
	}
	cases := []struct {
		name  string
		calls []elemCall
	}{
		{"one IPv4 element with comment", []elemCall{{set: d4, elems: []nftables.SetElement{{Key: v4("192.0.2.1"), Timeout: 65 * time.Second, Comment: "api.example.com."}}}}},
		{"no comment", []elemCall{{set: d4, elems: []nftables.SetElement{{Key: v4("192.0.2.1"), Timeout: time.Second}}}}},
		{"comment paddings", []elemCall{{set: d6, elems: []nftables.SetElement{
			{Key: v6("2001:db8::1"), Timeout: 1500 * time.Millisecond, Comment: "a"},
			{Key: v6("2001:db8::2"), Timeout: 2 * time.Second, Comment: "ab"},
			{Key: v6("2001:db8::3"), Timeout: 3 * time.Second, Comment: "abc"},
			{Key: v6("2001:db8::4"), Timeout: 4 * time.Second, Comment: "abcd"},
			{Key: v6("2001:db8::5"), Timeout: 5*time.Second + 999*time.Microsecond, Comment: long},
		}}}},
		{"port ranges", []elemCall{{set: p4, elems: []nftables.SetElement{
			{Key: port(v4("198.51.100.7"), 443), KeyEnd: port(v4("198.51.100.7"), 443), Timeout: time.Minute, Comment: "x.example."},
			{Key: port(v4("198.51.100.7"), 8000), KeyEnd: port(v4("198.51.100.7"), 8999), Timeout: time.Minute},
		}}}},
		{"client scope", []elemCall{{set: clientScoped, elems: []nftables.SetElement{
			{Key: append(v4("10.1.0.5"), v4("192.0.2.9")...), Timeout: 30 * time.Second, Comment: "c.example."},
		}}}},
		{"set without timeouts", []elemCall{{set: c6, elems: []nftables.SetElement{
			{Key: v6("fd00:1::"), KeyEnd: v6("fd00:2::"), Timeout: time.Second},
		}}}},
		{"refresh: add, delete, add", []elemCall{
			{set: d4, elems: []nftables.SetElement{{Key: v4("192.0.2.1"), Timeout: 65 * time.Second, Comment: "a.example."}, {Key: v4("192.0.2.2"), Timeout: 65 * time.Second}}},
			{set: d4, elems: []nftables.SetElement{{Key: v4("192.0.2.2"), Timeout: 65 * time.Second}}, del: true},
			{set: d4, elems: []nftables.SetElement{{Key: v4("192.0.2.2"), Timeout: 65 * time.Second}}},
			{set: d6, elems: []nftables.SetElement{{Key: v6("2001:db8::9"), Timeout: 5 * time.Second}}},
		}},
		{"a full message", []elemCall{{set: d4, elems: many}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// elemListItemSize, which queueElements chunks by, is what
			// an element adds to a message.
			for _, cl := range tc.calls {
				for _, v := range cl.elems {
					if got, want := elemListItemSize(cl.set, v), encodedSize(t, cl.set, v); got != want {
						t.Fatalf("elemListItemSize(%x) = %d, encoded %d bytes", v.Key, got, want)
					}
				}
			}
			want := libraryBatch(t, tc.calls)
			b := newElemBatchOn(nil, nltest.PID)
			for _, cl := range tc.calls {
				if err := b.add(cl.set, cl.elems, cl.del); err != nil {
					t.Fatal(err)
				}
			}
			raw := b.appendBatchMsg(bytes.Clone(b.buf), unix.NFNL_MSG_BATCH_END, b.begin+uint32(b.msgs)+1)
			got, err := syscall.ParseNetlinkMessage(raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d messages, want %d", len(got), len(want))
			}
			for i := range want {
				w, g := want[i], got[i]
				// The library asks for an acknowledgement of every
				// message; elemBatch reads error reports only.
				if g.Header.Flags&unix.NLM_F_ACK != 0 {
					t.Errorf("message %d asks for an acknowledgement", i)
				}
				if g.Header.Len != w.Header.Length || g.Header.Type != uint16(w.Header.Type) ||
					g.Header.Flags != uint16(w.Header.Flags)&^unix.NLM_F_ACK || g.Header.Pid != w.Header.PID {
					t.Errorf("message %d header %+v, want %+v", i, g.Header, w.Header)
				}
				if g.Header.Seq-got[0].Header.Seq != w.Header.Sequence-want[0].Header.Sequence {
					t.Errorf("message %d sequence %d after the batch begin, want %d", i,
						g.Header.Seq-got[0].Header.Seq, w.Header.Sequence-want[0].Header.Sequence)
				}
				if !bytes.Equal(g.Data, w.Data) {
					t.Errorf("message %d data\n got %x\nwant %x", i, g.Data, w.Data)
				}
			}
		})
	}
}

// encodedSize is how many bytes v adds to a message of s.
func encodedSize(t *testing.T, s *nftables.Set, v nftables.SetElement) int {
	t.Helper()
	size := func(elems []nftables.SetElement) int {
		b := newElemBatchOn(nil, 1)
		if err := b.add(s, elems, false); err != nil {
			t.Fatal(err)
		}
		return len(b.buf)
	}
	return size([]nftables.SetElement{v}) - size(nil)
}

// TestElemBatchLeavesOddElementsToLibrary: what elemBatch does not encode
// (map data, interval end flags, a comment the library would cut, a list
// past the 64 KiB an attribute can hold) is refused with errNotLean and
// leaves the batch as it was.
func TestElemBatchLeavesOddElementsToLibrary(t *testing.T) {
	inet := &nftables.Table{Family: nftables.TableFamilyINet, Name: "egressd"}
	set := &nftables.Set{Table: inet, Name: "s", HasTimeout: true}
	key := []byte{192, 0, 2, 1}
	var huge []nftables.SetElement
	for range elementsPerMessage {
		huge = append(huge, nftables.SetElement{Key: key, KeyEnd: key, Timeout: time.Second, Comment: strings.Repeat("x", maxComment)})
	}
	for _, tc := range []struct {
		name  string
		set   *nftables.Set
		elems []nftables.SetElement
	}{
		{"anonymous set", &nftables.Set{Table: inet, Name: "__set%d", Anonymous: true}, []nftables.SetElement{{Key: key}}},
		{"map value", set, []nftables.SetElement{{Key: key, Val: key}}},
		{"verdict", set, []nftables.SetElement{{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictAccept}}}},
		{"interval end", set, []nftables.SetElement{{Key: key, IntervalEnd: true}}},
		{"comment over 254 bytes", set, []nftables.SetElement{{Key: key, Comment: strings.Repeat("x", 255)}}},
		{"list over 64 KiB", set, huge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newElemBatchOn(nil, 1)
			before := bytes.Clone(b.buf)
			if err := b.add(tc.set, tc.elems, false); err != errNotLean {
				t.Fatalf("add = %v, want errNotLean", err)
			}
			if b.msgs != 0 || !bytes.Equal(b.buf, before) {
				t.Errorf("batch changed: %d messages, %d bytes", b.msgs, len(b.buf))
			}
		})
	}
}
