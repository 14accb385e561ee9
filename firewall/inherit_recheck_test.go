package firewall

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/egressd/egressd/policy"
)

// TestInheritedElementsRechecked: elements carried over from an earlier
// process are re-checked on reload by the answer in their comment (the
// query name and the CNAME and HTTPS/SVCB targets it led to) and, with
// client scope, the client in their key: the new policy's denial of the
// name or of a target removes them, an approval keeps them with their
// comment, through the first install and every reload. Elements without
// a comment cannot be re-checked and are not carried over (fail closed).
func TestInheritedElementsRechecked(t *testing.T) {
	client := netip.MustParseAddr("10.1.0.5")
	all := map[string]bool{"a.example.": true, "b.example.": true, "c.example.": true}
	tests := []struct {
		name    string
		scope   string
		allowed map[string]bool     // names the new policy approves
		inGroup bool                // the client is still in the group
		then    []Allowance         // allowed by the second process before the reload
		denied  string              // a target name the new policy denies
		want    map[string][]string // set -> live elements after the reload (client scope: client and address in hex)
	}{
		{name: "names still approved", scope: ScopeGroup, allowed: all,
			want: map[string][]string{"g_servers_d4": {"192.0.2.1", "192.0.2.2", "192.0.2.4"}}},
		{name: "name now denied", scope: ScopeGroup, allowed: map[string]bool{"a.example.": true, "c.example.": true},
			want: map[string][]string{"g_servers_d4": {"192.0.2.1", "192.0.2.4"}}},
		{name: "target in the comment now denied", scope: ScopeGroup, allowed: all, denied: "cdn.example.",
			want: map[string][]string{"g_servers_d4": {"192.0.2.1", "192.0.2.2"}}},
		{name: "this process's answer replaces the comment's", scope: ScopeGroup, allowed: all,
			then:   []Allowance{{Group: "servers", Client: client, IPs: addrs("192.0.2.1"), TTL: time.Minute, Name: "a.example.", Targets: []string{"edge.example."}}},
			denied: "edge.example.",
			want:   map[string][]string{"g_servers_d4": {"192.0.2.2", "192.0.2.4"}}},
		{name: "client scope, client still in the group", scope: ScopeClient, allowed: all, inGroup: true,
			want: map[string][]string{"g_servers_d4": {"0a010005c0000201", "0a010005c0000202", "0a010005c0000204"}}},
		{name: "client scope, client left the group", scope: ScopeClient, allowed: all,
			want: map[string][]string{"g_servers_d4": {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			spec := allowSpec()
			spec.Scope = tt.scope
			first := fakeNFT(t, k, spec, clock, nil)
			mustAllow(t, first, Allowance{Group: "servers", Client: client, IPs: addrs("192.0.2.1"), TTL: time.Minute, Name: "a.example."})
			mustAllow(t, first, Allowance{Group: "servers", Client: client, IPs: addrs("192.0.2.2"), TTL: time.Minute, Name: "b.example."})
			mustAllow(t, first, Allowance{Group: "servers", Client: client, IPs: addrs("192.0.2.3"), TTL: time.Minute}) // no name: no comment
			mustAllow(t, first, Allowance{Group: "servers", Client: client, IPs: addrs("192.0.2.4"), TTL: time.Minute, Name: "c.example.", Targets: []string{"cdn.example."}})
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			clock.Advance(5 * time.Second)

			second := fakeNFT(t, k, spec, clock, nil)
			for _, a := range tt.then {
				mustAllow(t, second, a)
			}
			var asked [][]string
			check := func(group string, c, _ netip.Addr, names []string) ([]policy.PortRange, bool) {
				asked = append(asked, slices.Clone(names))
				if tt.scope == ScopeClient && c != client {
					t.Errorf("asked about client %v, want %v", c, client)
				}
				if (c.IsValid() && !tt.inGroup) || slices.Contains(names[1:], tt.denied) {
					return nil, false
				}
				return nil, group == "servers" && tt.allowed[names[0]]
			}
			if err := second.ReloadRecheck(spec, check, 0); err != nil {
				t.Fatal(err)
			}
			if len(asked) == 0 {
				t.Error("the reload asked nothing about the inherited elements")
			}
			for set, want := range tt.want {
				var live []string
				for _, e := range k.liveElements("egressd", set) {
					live = append(live, elemText(e))
					n := elemText(e)
					// The comments name the client the elements count
					// against, across the restart and the reload.
					if (n == "192.0.2.1" || n == "0a010005c0000201") && len(tt.then) == 0 && e.Comment != "a.example. owner=10.1.0.5" {
						t.Errorf("element %s has comment %q after the reload, want a.example. and its owner", n, e.Comment)
					}
					if (n == "192.0.2.4" || n == "0a010005c0000204") && e.Comment != "c.example. cdn.example. owner=10.1.0.5" {
						t.Errorf("element %s has comment %q after the reload, want the name, its target and its owner", n, e.Comment)
					}
				}
				slices.Sort(live)
				if !slices.Equal(live, want) {
					t.Errorf("set %s holds %q, want %q", set, live, want)
				}
				// Inherited lists what the re-check kept, no more.
				if got := second.Inherited(); len(got) != len(want) {
					t.Errorf("Inherited lists %d elements after the re-check, want the %d it kept: %+v", len(got), len(want), got)
				}
			}
		})
	}
}

// liveElements lists a set's unexpired elements as the kernel holds them.
func (k *fakeKernel) liveElements(table, set string) []nftables.SetElement {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.tables[table]
	if t == nil || t.sets[set] == nil {
		return nil
	}
	now := k.now()
	var out []nftables.SetElement
	for _, fe := range t.sets[set].elems {
		if fe.deadline.IsZero() || fe.deadline.After(now) {
			out = append(out, fe.e)
		}
	}
	return out
}

// TestInheritedElementsCountAgainstTheirClient: what a client's answers
// added before a restart still counts against its share after it (the
// element's comment names the client; with client scope its key does too),
// so a restart does not hand a client a second share while its old
// elements live.
func TestInheritedElementsCountAgainstTheirClient(t *testing.T) {
	for _, tc := range []struct {
		scope         string
		client, again netip.Addr // again: the same client, as its share counts it
		other         netip.Addr
	}{
		{ScopeGroup, netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.1.0.6")},
		{ScopeClient, netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.1.0.6")},
		// An IPv6 client counts by its /64.
		{ScopeGroup, netip.MustParseAddr("fd00:1::5"), netip.MustParseAddr("fd00:1::77"), netip.MustParseAddr("fd00:2::5")},
	} {
		t.Run(tc.scope+" "+tc.client.String(), func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			spec := allowSpec()
			spec.Scope = tc.scope
			spec.MaxElementsPerClient = 2
			first := fakeNFT(t, k, spec, clock, nil)
			mustAllow(t, first, Allowance{Group: "servers", Client: tc.client, IPs: addrs("192.0.2.1"), TTL: time.Minute, Name: "a.example."})
			mustAllow(t, first, Allowance{Group: "servers", Client: tc.client, IPs: addrs("192.0.2.2"), TTL: time.Minute, Name: "b.example."})
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			clock.Advance(5 * time.Second)

			second := fakeNFT(t, k, spec, clock, nil)
			third := Allowance{Group: "servers", Client: tc.again, IPs: addrs("192.0.2.3"), TTL: time.Minute, Name: "c.example."}
			if err := second.Allow(context.Background(), third); !errors.Is(err, ErrLimit) {
				t.Errorf("a third destination after the restart: Allow = %v, want ErrLimit (the two carried over are its share)", err)
			}
			mustAllow(t, second, Allowance{Group: "servers", Client: tc.other, IPs: addrs("192.0.2.3"), TTL: time.Minute, Name: "c.example."})
			// Once the carried-over elements expire the client has its share again.
			clock.Advance(time.Minute + spec.Grace + expiryMargin + sweepEvery)
			third.IPs = addrs("192.0.2.4")
			mustAllow(t, second, third)
		})
	}
}
