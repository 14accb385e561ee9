package firewall

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

// TestInheritedListsLiveElements: a backend started on a table an earlier
// one left lists the live elements it carried over, as approvals: group
// (or client) scope, destination, port range, expiry, and the query name
// the element was added for, kept in the element's comment (also when a
// reload refilled the sets).
func TestInheritedListsLiveElements(t *testing.T) {
	https := policy.PortRange{Proto: policy.ProtoTCP, From: 443, To: 443}
	high := policy.PortRange{Proto: policy.ProtoUDP, From: 8000, To: 8099}
	client := netip.MustParseAddr("10.1.0.5")
	tests := []struct {
		name   string
		scope  string
		allows []Allowance
		want   []LiveElement
	}{
		{"group scope", ScopeGroup, []Allowance{
			{Group: "servers", Client: client, IPs: addrs("192.0.2.7", "2001:db8::7"), TTL: time.Minute, Name: "any.test."},
			{Group: "servers", Client: client, IPs: addrs("192.0.2.8"), Ports: []policy.PortRange{https, high}, TTL: time.Minute, Name: "ports.test."},
			{Group: "servers", Client: client, IPs: addrs("192.0.2.9"), TTL: time.Minute, Name: strings.Repeat("a", 300) + ".test."},
		}, []LiveElement{
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.7"), Name: "any.test."},
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.8"), Ports: []policy.PortRange{https}, Name: "ports.test."},
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.8"), Ports: []policy.PortRange{high}, Name: "ports.test."},
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.9")}, // too long a name for a comment
			{Group: "servers", Dst: netip.MustParseAddr("2001:db8::7"), Name: "any.test."},
		}},
		{"client scope", ScopeClient, []Allowance{
			{Group: "servers", Client: client, IPs: addrs("192.0.2.7"), TTL: time.Minute, Name: "any.test."},
			{Group: "servers", Client: client, IPs: addrs("192.0.2.8"), Ports: []policy.PortRange{https}, TTL: time.Minute, Name: "ports.test."},
		}, []LiveElement{
			{Group: "servers", Client: client, Dst: netip.MustParseAddr("192.0.2.7"), Name: "any.test."},
			{Group: "servers", Client: client, Dst: netip.MustParseAddr("192.0.2.8"), Ports: []policy.PortRange{https}, Name: "ports.test."},
		}},
		// A pair node's restart must not publish other nodes' approvals
		// as its own: the element says it came from the fleet, or, when
		// the name and the mark do not fit, carries no name at all.
		{"fleet approvals", ScopeGroup, []Allowance{
			{Group: "servers", IPs: addrs("192.0.2.7"), TTL: time.Minute, Name: "own.test."},
			{Group: "servers", IPs: addrs("192.0.2.8"), TTL: time.Minute, Name: "other.test.", FromFleet: true},
			{Group: "servers", IPs: addrs("192.0.2.9"), TTL: time.Minute, Name: strings.Repeat("a", maxCommentName-6) + ".", FromFleet: true},
		}, []LiveElement{
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.7"), Name: "own.test."},
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.8"), Name: "other.test.", FromFleet: true},
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.9")},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newTestNS(t)
			spec := allowSpec()
			spec.Scope = tc.scope
			m := metrics.New()
			first, err := NewNFTables(spec, Options{NetNS: ns.fd, Logger: quietLogger, Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			if got := first.Inherited(); len(got) != 0 {
				t.Errorf("a fresh table inherited %v", got)
			}
			for _, a := range tc.allows {
				mustAllow(t, first, a)
			}
			added := time.Now()
			// A reload refills the sets from the index: the names stay.
			if err := first.Reload(spec); err != nil {
				t.Fatal(err)
			}
			_ = first.Close() // the table stays

			second, err := NewNFTables(spec, Options{NetNS: ns.fd, Logger: quietLogger, Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			defer second.Close()
			got := second.Inherited()
			slices.SortFunc(got, func(a, b LiveElement) int {
				if c := a.Dst.Compare(b.Dst); c != 0 {
					return c
				}
				return int(a.portFrom()) - int(b.portFrom())
			})
			if len(got) != len(tc.want) {
				t.Fatalf("inherited %d elements, want %d: %+v", len(got), len(tc.want), got)
			}
			// Element timeouts are TTL plus grace; the kernel counts down.
			latest := added.Add(time.Minute + spec.Grace + time.Second)
			for i, w := range tc.want {
				g := got[i]
				if g.Expiry.Before(added) || g.Expiry.After(latest) {
					t.Errorf("element %d expires at %v, want between %v and %v", i, g.Expiry, added, latest)
				}
				g.Expiry = time.Time{}
				if !slices.Equal(g.Ports, w.Ports) || g.Group != w.Group || g.Client != w.Client || g.Dst != w.Dst || g.Name != w.Name || g.FromFleet != w.FromFleet {
					t.Errorf("element %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func (e LiveElement) portFrom() uint16 {
	if len(e.Ports) == 0 {
		return 0
	}
	return e.Ports[0].From
}
