package firewall

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

// TestInheritedListsLiveElements: a backend started on a table an earlier
// one left lists the live elements it carried over, as approvals: group
// (or client) scope, destination, port range, expiry, the query name the
// element was added for and the names it led to, kept in the element's
// comment (also when a reload refilled the sets), and whether it was
// another fleet node's approval. An element whose comment could not hold
// all that is not carried over: nothing could re-check it.
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
			{Group: "servers", Client: client, IPs: addrs("192.0.2.10"), TTL: time.Minute, Name: "www.test.", Targets: []string{"www.cdn.test.", "edge.test."}},
			{Group: "servers", Client: client, IPs: addrs("192.0.2.11"), TTL: time.Minute, Name: "long.test.", Targets: []string{strings.Repeat("b", 240) + "."}},
		}, []LiveElement{
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.7"), Name: "any.test."},
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.8"), Ports: []policy.PortRange{https}, Name: "ports.test."},
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.8"), Ports: []policy.PortRange{high}, Name: "ports.test."},
			// 192.0.2.9 and .11: too long a name or chain for a comment,
			// so nothing to re-check them by: not carried over.
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.10"), Name: "www.test.", Targets: []string{"www.cdn.test.", "edge.test."}},
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
			{Group: "servers", IPs: addrs("192.0.2.9"), TTL: time.Minute, Name: strings.Repeat("a", maxComment-6) + ".", FromFleet: true},
			{Group: "servers", IPs: addrs("192.0.2.10"), TTL: time.Minute, Name: "www.test.", Targets: []string{"cdn.test."}, FromFleet: true},
		}, []LiveElement{
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.7"), Name: "own.test."},
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.8"), Name: "other.test.", FromFleet: true},
			{Group: "servers", Dst: netip.MustParseAddr("192.0.2.10"), Name: "www.test.", Targets: []string{"cdn.test."}, FromFleet: true},
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
			// What was not inherited is not in the new table either.
			kernel := 0
			for _, set := range []string{"g_servers_d4", "g_servers_d6", "g_servers_p4", "g_servers_p6"} {
				kernel += len(elements(t, ns, "egressd", set))
			}
			if kernel != len(tc.want) {
				t.Errorf("the new table holds %d elements, want the %d inherited", kernel, len(tc.want))
			}
			// Element timeouts are TTL plus grace; the kernel counts down.
			latest := added.Add(time.Minute + spec.Grace + time.Second)
			for i, w := range tc.want {
				g := got[i]
				if g.Expiry.Before(added) || g.Expiry.After(latest) {
					t.Errorf("element %d expires at %v, want between %v and %v", i, g.Expiry, added, latest)
				}
				g.Expiry = time.Time{}
				if !slices.Equal(g.Ports, w.Ports) || g.Group != w.Group || g.Client != w.Client || g.Dst != w.Dst || g.Name != w.Name || !slices.Equal(g.Targets, w.Targets) || g.FromFleet != w.FromFleet {
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

// FuzzComment: a comment elementComment writes reads back as the answer,
// mark and owner it was written for, for names in presentation form as
// miekg/dns writes them (a space in a label escaped as "\ "); one that
// does not fit is empty, and an owner that does not fit is left out. The
// fuzzer gives the labels' bytes (names split by "/", labels by ".") and
// the owner's (4 or 16 bytes; anything else is none).
func FuzzComment(f *testing.F) {
	v4, v6 := []byte{10, 1, 0, 5}, netip.MustParseAddr("2001:db8:1:2:3:4:5:6").AsSlice()
	f.Add("www.example.com/cdn.example.net/edge.example", false, v4)
	f.Add("a", true, []byte(nil))
	f.Add("a", false, v6)
	f.Add("a b.example/fleet", true, v6)
	f.Add(`back\slash.example/x y.fleet`, false, []byte(nil))
	f.Add(strings.Repeat("x", 60)+"."+strings.Repeat("y", 60), false, v4)
	f.Add(strings.Repeat("x", 60)+"."+strings.Repeat("y", 60)+"/"+strings.Repeat("z", 63)+"."+strings.Repeat("w", 40), false, v6)
	f.Fuzz(func(t *testing.T, raw string, fromFleet bool, ownerBytes []byte) {
		var names []string
		for _, n := range strings.Split(raw, "/") {
			name, ok := presentation(n)
			if !ok {
				t.Skip("not a domain name")
			}
			names = append(names, name)
		}
		owner, _ := netip.AddrFromSlice(ownerBytes)
		c := elementComment(names[0], names[1:], fromFleet, owner)
		if len(c) > maxComment {
			t.Fatalf("comment of %d bytes, more than %d", len(c), maxComment)
		}
		size := len(names) - 1
		for _, n := range names {
			size += len(n)
		}
		if fromFleet {
			size += len(" " + fleetMark)
		}
		if c == "" {
			if size <= maxComment {
				t.Fatalf("no comment for an answer of %d bytes", size)
			}
			return
		}
		got, fleet, gotOwner := parseComment(c)
		if !slices.Equal(got, names) || fleet != fromFleet {
			t.Fatalf("comment %q reads as %q fleet=%v, want %q fleet=%v", c, got, fleet, names, fromFleet)
		}
		want := ownerAddr(owner)
		if want.IsValid() && size+len(" "+ownerMark+want.String()) > maxComment {
			want = netip.Addr{} // left out
		}
		if gotOwner != want {
			t.Fatalf("comment %q reads as owner %v, want %v (from %v)", c, gotOwner, want, owner)
		}
	})
}

// presentation is the name with labels' bytes as miekg/dns writes it.
func presentation(labels string) (string, bool) {
	wire := []byte{}
	for _, l := range strings.Split(labels, ".") {
		if len(l) == 0 || len(l) > 63 {
			return "", false
		}
		wire = append(append(wire, byte(len(l))), l...)
	}
	wire = append(wire, 0)
	name, _, err := dns.UnpackDomainName(wire, 0)
	return name, err == nil
}
