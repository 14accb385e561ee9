package resolver

import (
	"net/netip"
	"testing"
	"time"

	"github.com/egressd/egressd/config"
)

func TestInFlightBound(t *testing.T) {
	var f inFlight
	f.init(6, 4, newClientKeys(0, 0))
	a1, a2 := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2::2") // one /64
	b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var held []netip.Addr
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
		held[i] = netip.Addr{}
	}
	give(0)                   // a holds 3, 5 in all
	take(b, "")               // b holds 2, 6 in all
	take(a1, overTotal)       // a is under its share, the total is full
	give(4)                   // b holds 1, 5 in all
	take(a1, "")              // a holds 4, 6 in all
	give(5)                   // c holds none, 5 in all
	take(a2, overClientShare) // a's share is full before the total
	for i, k := range held {
		if k.IsValid() {
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
		if n := len(f.shards[i].n); n != 0 {
			t.Errorf("shard %d keeps %d clients with nothing in flight", i, n)
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

// The limits default when unset, and a client's share is never above the
// total.
func TestInFlightDefaults(t *testing.T) {
	for _, tt := range []struct {
		limit, perClient int
		wantLimit        int64
		wantPerClient    int32
	}{
		{0, 0, maxInFlight, defaultInFlightPerClient},
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

// config validates and documents the same limits the resolver applies.
func TestLimitsMatchConfig(t *testing.T) {
	for _, tt := range []struct {
		name           string
		config, server int64
	}{
		{"max in flight", config.MaxInFlight, maxInFlight},
		{"default in-flight share", config.DefaultMaxInFlightPerClient, defaultInFlightPerClient},
		{"default cache bytes", config.DefaultCacheMaxBytes, defaultCacheMaxBytes},
	} {
		if tt.config != tt.server {
			t.Errorf("%s: config says %d, the resolver %d", tt.name, tt.config, tt.server)
		}
	}
}
