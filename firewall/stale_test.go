package firewall

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/egressd/egressd/policy"
)

// TestStaleAllowanceRechecked: after ReloadRecheck with generation 2, an
// Allow decided under generation 1 is asked of the new policy before
// anything is added, and refused with ErrStale (nothing added, also when
// its element is already live for another name) where that policy denies
// a name, an address, the client or the ports. Allowances of the current
// generation, or without one, are not asked.
func TestStaleAllowanceRechecked(t *testing.T) {
	https := []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}}
	web := []policy.PortRange{{Proto: policy.ProtoTCP, From: 80, To: 443}}
	client := netip.MustParseAddr("10.1.0.5")
	// The policy after the reload: a.example. on any port, w.example. on
	// 443, b.example. denied, 192.0.2.66 denied, 10.1.0.9 no longer in
	// the group.
	after := func(group string, c, dest netip.Addr, names []string) ([]policy.PortRange, bool) {
		if group != "servers" || c == netip.MustParseAddr("10.1.0.9") || dest == netip.MustParseAddr("192.0.2.66") {
			return nil, false
		}
		switch names[0] {
		case "a.example.":
			return nil, !slices.Contains(names[1:], "denied-cdn.example.")
		case "w.example.":
			return https, true
		}
		return nil, false
	}
	tests := []struct {
		name   string
		before []Allowance // allowed before the reload
		allow  Allowance   // then, without Group and TTL
		stale  bool        // refused with ErrStale
		live   int         // elements live afterwards (d4 and p4)
		asked  bool        // the new policy was asked about allow
	}{
		{name: "stale, name still allowed", allow: Allowance{IPs: addrs("192.0.2.1"), Name: "a.example.", Generation: 1},
			live: 1, asked: true},
		{name: "stale, name now denied", allow: Allowance{IPs: addrs("192.0.2.1"), Name: "b.example.", Generation: 1},
			stale: true, asked: true},
		{name: "stale, CNAME target now denied", allow: Allowance{IPs: addrs("192.0.2.1"), Name: "a.example.", Targets: []string{"denied-cdn.example."}, Generation: 1},
			stale: true, asked: true},
		{name: "stale, one address now denied", allow: Allowance{IPs: addrs("192.0.2.1", "192.0.2.66"), Name: "a.example.", Generation: 1},
			stale: true, asked: true},
		{name: "stale, client left the group", allow: Allowance{Client: netip.MustParseAddr("10.1.0.9"), IPs: addrs("192.0.2.1"), Name: "a.example.", Generation: 1},
			stale: true, asked: true},
		{name: "stale, any port now only 443", allow: Allowance{IPs: addrs("192.0.2.1"), Name: "w.example.", Generation: 1},
			stale: true, asked: true},
		{name: "stale, 80-443 now only 443", allow: Allowance{IPs: addrs("192.0.2.1"), Ports: web, Name: "w.example.", Generation: 1},
			stale: true, asked: true},
		{name: "stale, 443 still allowed", allow: Allowance{IPs: addrs("192.0.2.1"), Ports: https, Name: "w.example.", Generation: 1},
			live: 1, asked: true},
		{name: "stale, no name to ask about", allow: Allowance{IPs: addrs("192.0.2.1"), Generation: 1},
			stale: true},
		{name: "stale, element already live for an allowed name",
			before: []Allowance{{IPs: addrs("192.0.2.1"), Name: "a.example.", Generation: 2}},
			allow:  Allowance{IPs: addrs("192.0.2.1"), Name: "b.example.", Generation: 1},
			stale:  true, live: 1, asked: true},
		{name: "stale, element live for that name but client left the group",
			before: []Allowance{{IPs: addrs("192.0.2.1"), Name: "a.example.", Generation: 2}},
			allow:  Allowance{Client: netip.MustParseAddr("10.1.0.9"), IPs: addrs("192.0.2.1"), Name: "a.example.", Generation: 1},
			stale:  true, live: 1, asked: true},
		{name: "current generation is not asked", allow: Allowance{IPs: addrs("192.0.2.1"), Name: "b.example.", Generation: 2},
			live: 1},
		{name: "no generation is not asked", allow: Allowance{IPs: addrs("192.0.2.1"), Name: "b.example."},
			live: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			n := fakeNFT(t, k, allowSpec(), clock, nil)
			var asked bool
			check := func(group string, c, dest netip.Addr, names []string) ([]policy.PortRange, bool) {
				if slices.Equal(names, append([]string{tt.allow.Name}, tt.allow.Targets...)) {
					asked = true
				}
				return after(group, c, dest, names)
			}
			if err := n.ReloadRecheck(allowSpec(), check, 2); err != nil {
				t.Fatal(err)
			}
			for _, a := range tt.before {
				a.Group, a.Client, a.TTL = "servers", client, time.Minute
				mustAllow(t, n, a)
			}
			asked = false
			a := tt.allow
			a.Group, a.TTL = "servers", time.Minute
			if !a.Client.IsValid() {
				a.Client = client
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := n.Allow(ctx, a)
			if got := errors.Is(err, ErrStale); got != tt.stale || (err != nil && !tt.stale) {
				t.Fatalf("Allow: %v, want ErrStale %t", err, tt.stale)
			}
			if asked != tt.asked {
				t.Errorf("new policy asked: %t, want %t", asked, tt.asked)
			}
			live := append(k.live("egressd", d4), k.live("egressd", "g_servers_p4")...)
			if len(live) != tt.live {
				t.Errorf("live %q, want %d elements", live, tt.live)
			}
		})
	}
}

// TestStaleAfterFailedReload: a reload that fails leaves the generation
// as it was, so answers of the policy still in force are not asked about.
func TestStaleAfterFailedReload(t *testing.T) {
	clock := newFakeClock()
	k := newFakeKernel(clock.Now)
	n := fakeNFT(t, k, allowSpec(), clock, nil)
	deny := func(string, netip.Addr, netip.Addr, []string) ([]policy.PortRange, bool) { return nil, false }
	k.setHooks(nil, func([]fakeOp) error { return errors.New("refused") })
	if err := n.ReloadRecheck(allowSpec(), deny, 2); err == nil {
		t.Fatal("reload succeeded against a refusing kernel")
	}
	k.setHooks(nil, nil)
	mustAllow(t, n, Allowance{Group: "servers", Client: netip.MustParseAddr("10.1.0.5"), IPs: addrs("192.0.2.1"), TTL: time.Minute, Name: "a.example.", Generation: 1})
}

// TestStaleAllowanceNotInKernel: in a namespace, an answer decided under
// the policy a reload replaced, pushed after it, adds nothing to the
// kernel's set when the new policy denies its name; the same name decided
// under the new policy (which allows it) is added.
func TestStaleAllowanceNotInKernel(t *testing.T) {
	tests := []struct {
		name  string
		gen   uint64
		allow string // the name the new policy allows
		added bool
	}{
		{"decided before the reload, denied now", 1, "other.example.", false},
		{"decided before the reload, still allowed", 1, "a.example.", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newTestNS(t)
			n := startNFT(t, ns, allowSpec(), nil)
			check := func(_ string, _, _ netip.Addr, names []string) ([]policy.PortRange, bool) {
				return nil, names[0] == tt.allow
			}
			if err := n.ReloadRecheck(allowSpec(), check, 2); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := n.Allow(ctx, Allowance{Group: "servers", Client: netip.MustParseAddr("10.1.0.5"), IPs: addrs("192.0.2.1"),
				TTL: time.Minute, Name: "a.example.", Generation: tt.gen})
			if tt.added == (err != nil) || (err != nil && !errors.Is(err, ErrStale)) {
				t.Fatalf("Allow: %v, want added %t (else ErrStale)", err, tt.added)
			}
			_, inKernel := findElement(elements(t, ns, "egressd", d4), netip.MustParseAddr("192.0.2.1").AsSlice(), nil)
			if inKernel != tt.added {
				t.Errorf("192.0.2.1 in the kernel's set: %t, want %t", inKernel, tt.added)
			}
		})
	}
}
