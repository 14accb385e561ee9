package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/internal/fakeclock"
	"github.com/egressd/egressd/policy"
)

// TestElemBatchKernelEquivalence runs the same allowances through a
// backend whose element batches go through elemBatch and one whose go
// through google/nftables, each in its own namespace, and compares what
// the kernel lists in every dynamic set: the same keys and key ends, the
// same comments and timeouts, expirations within a second. Group and
// client scope, IPv4 and IPv6, any port and port ranges, an allowance
// spanning two messages, and refreshes (add, delete, add) after the
// clock moved on.
func TestElemBatchKernelEquivalence(t *testing.T) {
	long := strings.Repeat("l", 60) + "." + strings.Repeat("m", 60) + ".example."
	ports := []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}, {Proto: policy.ProtoUDP, From: 3478, To: 3480}}
	var many []netip.Addr
	for i := range elementsPerMessage + 44 {
		many = append(many, seqAddr(i))
	}
	for _, scope := range []string{ScopeGroup, ScopeClient} {
		t.Run(scope, func(t *testing.T) {
			spec := allowSpec()
			spec.Scope = scope
			spec.MaxAddressesPerAnswer = len(many)
			c4, c6 := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("fd00:1::5")
			allows := []Allowance{
				{Group: "servers", Client: c4, IPs: addrs("192.0.2.1", "192.0.2.2"), TTL: time.Minute, Name: "api.example.com."},
				{Group: "servers", Client: c6, IPs: addrs("2001:db8::1"), TTL: 90 * time.Second, Name: "v6.example."},
				{Group: "servers", Client: c4, IPs: addrs("198.51.100.7"), Ports: ports, TTL: time.Minute, Name: long},
				{Group: "servers", Client: c6, IPs: addrs("2001:db8::7"), Ports: ports, TTL: time.Minute},
				{Group: "servers", Client: c4, IPs: many, TTL: 2 * time.Minute, Name: "many.example."},
			}
			type backend struct {
				ns    *testNS
				n     *NFT
				clock *fakeclock.Clock
			}
			start := time.Now()
			var bs []backend
			for _, library := range []bool{false, true} {
				ns := newTestNS(t)
				clock := fakeclock.New(start)
				n := startNFTWith(t, ns, spec, clock, Options{libraryElements: library})
				bs = append(bs, backend{ns, n, clock})
			}
			if bs[0].n.conn.(*leanConn).eb == nil || bs[1].n.conn.(*leanConn).eb != nil {
				t.Fatal("want elemBatch in the first backend only")
			}
			compare := func(step string) {
				t.Helper()
				for _, s := range bs[0].n.lay.sets {
					if s.kind == setClients {
						continue
					}
					lean, lib := sortedElements(t, bs[0].ns, s.name), sortedElements(t, bs[1].ns, s.name)
					if err := sameElements(lean, lib); err != nil {
						t.Errorf("%s: set %s: %v", step, s.name, err)
					}
				}
			}
			for _, b := range bs {
				for _, a := range allows {
					if err := b.n.Allow(context.Background(), a); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n := len(sortedElements(t, bs[0].ns, bs[0].n.lay.groups["servers"].d4)); n != len(many)+2 {
				t.Fatalf("lean backend's d4 set holds %d elements, want %d", n, len(many)+2)
			}
			compare("added")
			// Every element now lives less than the longer TTL asked for
			// next, and the index has not seen it expire: each is
			// refreshed (add, delete, add).
			for _, b := range bs {
				b.clock.Advance(30 * time.Second)
				for _, a := range allows {
					a.TTL += 5 * time.Minute
					if err := b.n.Allow(context.Background(), a); err != nil {
						t.Fatal(err)
					}
				}
			}
			compare("refreshed")
			if lean, lib := bs[0].n.flushCount(), bs[1].n.flushCount(); lean != lib {
				t.Errorf("%d batches through elemBatch, %d through the library", lean, lib)
			}
		})
	}
}

func sortedElements(t *testing.T, ns *testNS, set string) []nftables.SetElement {
	t.Helper()
	elems := elements(t, ns, "egressd", set)
	slices.SortFunc(elems, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return bytes.Compare(a.KeyEnd, b.KeyEnd)
	})
	return elems
}

// sameElements compares two listings: keys, key ends, comments and
// timeouts exactly, expirations within a second.
func sameElements(a, b []nftables.SetElement) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d elements, want %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		switch {
		case !bytes.Equal(x.Key, y.Key) || !bytes.Equal(x.KeyEnd, y.KeyEnd):
			return fmt.Errorf("element %d key %x-%x, want %x-%x", i, x.Key, x.KeyEnd, y.Key, y.KeyEnd)
		case x.Comment != y.Comment:
			return fmt.Errorf("element %x comment %q, want %q", x.Key, x.Comment, y.Comment)
		case x.Timeout != y.Timeout || x.Timeout == 0:
			return fmt.Errorf("element %x timeout %v, want %v", x.Key, x.Timeout, y.Timeout)
		case (x.Expires - y.Expires).Abs() > time.Second:
			return fmt.Errorf("element %x expires in %v, want %v", x.Key, x.Expires, y.Expires)
		}
	}
	return nil
}

// TestElemBatchErrors: a batch the kernel refuses fails whole, with the
// kernel's errno (ENOENT for a missing element or set, as the refresh and
// restore paths expect), with the same text as the library's error, and
// the socket stays usable for the next batch.
func TestElemBatchErrors(t *testing.T) {
	ns := newTestNS(t)
	startUnwatchedNFT(t, ns, allowSpec(), nil)
	inet := &nftables.Table{Family: nftables.TableFamilyINet, Name: "egressd"}
	d4 := &nftables.Set{Table: inet, Name: "g_servers_d4", HasTimeout: true}
	absent := &nftables.Set{Table: inet, Name: "g_absent_d4", HasTimeout: true}
	elem := func(ip string) []nftables.SetElement {
		a := netip.MustParseAddr(ip).As4()
		return []nftables.SetElement{{Key: a[:], Timeout: time.Minute, Comment: "x.example."}}
	}
	cases := []struct {
		name  string
		calls []elemCall
		want  error
	}{
		{"delete of an absent element", []elemCall{{set: d4, elems: elem("192.0.2.50"), del: true}}, unix.ENOENT},
		{"good add, then an absent set", []elemCall{{set: d4, elems: elem("192.0.2.51")}, {set: absent, elems: elem("192.0.2.52")}}, unix.ENOENT},
		{"two refused messages", []elemCall{{set: d4, elems: elem("192.0.2.53"), del: true}, {set: absent, elems: elem("192.0.2.54")}}, unix.ENOENT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var errs [2]error
			for i, library := range []bool{false, true} {
				c := leanConnIn(t, ns, library)
				for _, cl := range tc.calls {
					var err error
					if cl.del {
						err = c.SetDeleteElements(cl.set, cl.elems)
					} else {
						err = c.SetAddElements(cl.set, cl.elems)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				errs[i] = c.Flush()
				if !errors.Is(errs[i], tc.want) {
					t.Errorf("library %v: Flush = %v, want %v", library, errs[i], tc.want)
				}
				if got := elements(t, ns, "egressd", "g_servers_d4"); len(got) != 0 {
					t.Errorf("library %v: a refused batch left %d elements", library, len(got))
				}
				// The same socket takes the next batch.
				if err := c.SetAddElements(d4, elem("192.0.2.60")); err != nil {
					t.Fatal(err)
				}
				if err := c.Flush(); err != nil {
					t.Fatalf("library %v: next batch: %v", library, err)
				}
				c.SetDeleteElements(d4, elem("192.0.2.60"))
				if err := c.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			if errs[0] == nil || errs[1] == nil || errs[0].Error() != errs[1].Error() {
				t.Errorf("elemBatch error %q, library error %q", errs[0], errs[1])
			}
		})
	}
}

// leanConnIn dials a leanConn into ns; library: without elemBatch.
func leanConnIn(t *testing.T, ns *testNS, library bool) *leanConn {
	t.Helper()
	var sock *netlink.Conn
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(ns.fd),
		nftables.WithSockOptions(func(c *netlink.Conn) error { sock = c; return nil }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseLasting() })
	lc := &leanConn{Conn: c}
	if !library {
		if lc.eb, err = newElemBatch(sock); err != nil {
			t.Fatal(err)
		}
	}
	return lc
}

// TestLeanConnHandsMixedBatchesToLibrary: elements queued before a
// message elemBatch does not write go to the library with it, in order,
// as one batch: all applied, or (with a refused message) none.
func TestLeanConnHandsMixedBatchesToLibrary(t *testing.T) {
	ns := newTestNS(t)
	startUnwatchedNFT(t, ns, allowSpec(), nil)
	inet := &nftables.Table{Family: nftables.TableFamilyINet, Name: "egressd"}
	d4 := &nftables.Set{Table: inet, Name: "g_servers_d4", HasTimeout: true}
	elem := func(last byte) []nftables.SetElement {
		return []nftables.SetElement{{Key: []byte{192, 0, 2, last}, Timeout: time.Minute, Comment: "m.example."}}
	}
	c := leanConnIn(t, ns, false)
	// Refused: the deletion of a table that does not exist fails the
	// batch, so the element queued before it must not arrive.
	if err := c.SetAddElements(d4, elem(1)); err != nil {
		t.Fatal(err)
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "egressd_absent"})
	if err := c.SetAddElements(d4, elem(2)); err != nil {
		t.Fatal(err)
	}
	if c.eb.msgs != 0 {
		t.Fatalf("elemBatch still holds %d messages of a mixed batch", c.eb.msgs)
	}
	if err := c.Flush(); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Flush = %v, want ENOENT", err)
	}
	if got := elements(t, ns, "egressd", "g_servers_d4"); len(got) != 0 {
		t.Fatalf("a refused mixed batch left %d elements", len(got))
	}
	// Accepted: an element, the table (re-added, which changes nothing),
	// another element; then an element-only batch goes through elemBatch
	// again.
	c = leanConnIn(t, ns, false)
	c.SetAddElements(d4, elem(3))
	c.AddTable(inet)
	c.SetAddElements(d4, elem(4))
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	c.SetAddElements(d4, elem(5))
	if c.eb.msgs != 1 {
		t.Fatalf("elemBatch holds %d messages after a mixed batch, want 1", c.eb.msgs)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, e := range sortedElements(t, ns, "g_servers_d4") {
		got = append(got, e.Key[3])
	}
	if !bytes.Equal(got, []byte{3, 4, 5}) {
		t.Errorf("elements ending in %v, want 3, 4, 5", got)
	}
}
