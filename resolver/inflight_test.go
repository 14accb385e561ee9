package resolver

import (
	"net/netip"
	"testing"
	"time"
)

func TestInFlightBound(t *testing.T) {
	var f inFlight
	f.init(6, 4, newClientKeys(0, 0))
	a1, a2 := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2::2") // one /64
	b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var held []inFlightSlot
	steps := []struct {
		name   string
		client netip.Addr
		want   string // "" when a slot is taken
	}{
		{"a 1", a1, ""},
		{"a 2", a2, ""},
		{"a 3", a1, ""},
		{"a 4", a2, ""},
		{"a's share is full, whichever address of its /64", a1, overClientShare},
		{"a's share is full", a2, overClientShare},
		{"b 1", b, ""},
		{"c 1", c, ""},
		{"the total is full", b, overTotal},
	}
	for _, st := range steps {
		key, refused := f.acquire(st.client)
		if refused != st.want {
			t.Fatalf("%s: refused %q, want %q", st.name, refused, st.want)
		}
		if refused == "" {
			held = append(held, key)
		}
	}
	if n := f.n.Load(); n != 6 {
		t.Fatalf("%d in flight, want 6", n)
	}
	take := func(client netip.Addr, want string) {
		t.Helper()
		key, refused := f.acquire(client)
		if refused != want {
			t.Fatalf("acquire(%s): refused %q, want %q", client, refused, want)
		}
		if refused == "" {
			held = append(held, key)
		}
	}
	give := func(i int) {
		f.release(held[i])
		held[i] = inFlightSlot{}
	}
	give(0)                   // a holds 3, 5 in all
	take(b, "")               // b holds 2, 6 in all
	take(a1, overTotal)       // a is under its share, the total is full
	give(4)                   // b holds 1, 5 in all
	take(a1, "")              // a holds 4, 6 in all
	give(5)                   // c holds none, 5 in all
	take(a2, overClientShare) // a's share is full before the total
	for i, k := range held {
		if k.held != nil {
			give(i)
		}
	}
	if n := f.n.Load(); n != 0 {
		t.Errorf("%d in flight after every release, want 0", n)
	}
	if h := f.held(a1); h != 0 {
		t.Errorf("a holds %d slots after releasing all, want 0", h)
	}
	for i := range f.shards {
		for k, c := range f.shards[i].n {
			if n := c.Load(); n != 0 {
				t.Errorf("%s holds %d slots after releasing all", k, n)
			}
		}
	}

	now := time.Unix(1000, 0)
	if client, total, ok := f.warnDue(now); !ok || client != 3 || total != 2 {
		t.Errorf("first warning: %d over a share, %d over the total, due %v; want 3, 2, true", client, total, ok)
	}
	if _, _, ok := f.warnDue(now.Add(time.Second)); ok {
		t.Error("warned again within the interval")
	}
	f.acquire(a1)
	f.acquire(a1)
	f.acquire(a1)
	f.acquire(a1)
	f.acquire(a1)
	if client, total, ok := f.warnDue(now.Add(dropWarnInterval)); !ok || client != 1 || total != 0 {
		t.Errorf("next warning: %d over a share, %d over the total, due %v; want 1, 0, true", client, total, ok)
	}
}

// However many clients come and go, the counters of those with nothing in
// flight are swept: a shard keeps at most inFlightIdleCounters of them
// besides the ones in use, and a client in flight keeps its count.
func TestInFlightCountersBounded(t *testing.T) {
	var f inFlight
	f.init(4, 2, newClientKeys(0, 0))
	busy := netip.MustParseAddr("192.0.2.1")
	f.acquire(busy)
	f.acquire(busy)
	const clients = 200_000
	for i := range clients {
		slot, refused := f.acquire(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		if refused != "" {
			t.Fatalf("client %d refused: %s", i, refused)
		}
		f.release(slot)
	}
	total := 0
	for i := range f.shards {
		n := len(f.shards[i].n)
		total += n
		if n > 2*inFlightIdleCounters {
			t.Errorf("shard %d keeps %d counters", i, n)
		}
	}
	if total > rateShards*2*inFlightIdleCounters {
		t.Errorf("%d counters after %d clients", total, clients)
	}
	if h := f.held(busy); h != 2 {
		t.Errorf("busy client's count %d after the sweeps, want 2", h)
	}
	if _, refused := f.acquire(busy); refused != overClientShare {
		t.Errorf("busy client got a third slot: refused %q", refused)
	}
}

// A client goes over its share only while fewer than half of the slots
// are taken: alone it can use half of them, and no more.
func TestInFlightBorrowsWhileHalfFree(t *testing.T) {
	var f inFlight
	f.init(8, 2, newClientKeys(0, 0))
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	for _, st := range []struct {
		name   string
		client netip.Addr
		want   string
	}{
		{"a within its share", a, ""},
		{"a within its share", a, ""},
		{"a borrows: 2 of 8 taken", a, ""},
		{"a borrows: 3 of 8 taken", a, ""},
		{"half taken: a is over its share", a, overClientShare},
		{"b within its share", b, ""},
		{"b within its share", b, ""},
		{"b cannot borrow past half", b, overClientShare},
		{"c within its share", c, ""},
		{"c within its share", c, ""},
		{"every slot taken", netip.MustParseAddr("192.0.2.4"), overTotal},
	} {
		if _, refused := f.acquire(st.client); refused != st.want {
			t.Fatalf("%s: refused %q, want %q", st.name, refused, st.want)
		}
	}
}

// The limits default when unset, and a client's share is never above the
// total.
func TestInFlightDefaults(t *testing.T) {
	for _, tt := range []struct {
		limit, perClient int
		wantLimit        int64
		wantPerClient    int32
	}{
		{0, 0, MaxInFlight, DefaultMaxInFlightPerClient},
		{8, 0, 8, 8},
		{100, 10, 100, 10},
	} {
		var f inFlight
		f.init(tt.limit, tt.perClient, newClientKeys(0, 0))
		if f.limit != tt.wantLimit || f.perClient != tt.wantPerClient {
			t.Errorf("init(%d, %d): limit %d, per client %d; want %d, %d", tt.limit, tt.perClient, f.limit, f.perClient, tt.wantLimit, tt.wantPerClient)
		}
	}
}
