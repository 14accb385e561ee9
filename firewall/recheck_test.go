package firewall

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/egressd/egressd/policy"
)

// namePolicy is a Recheck over a fixed table: name -> ports it is allowed
// on (nil: any port); names missing are denied. Targets (names[1:]) in
// denied are denied. clients, when set, lists the clients still in group.
type namePolicy struct {
	allowed map[string][]policy.PortRange
	denied  map[string]bool
	clients map[netip.Addr]bool
	asked   [][]string
}

func (p *namePolicy) check(group string, client, _ netip.Addr, names []string) ([]policy.PortRange, bool) {
	p.asked = append(p.asked, slices.Clone(names))
	if group != "servers" || len(names) == 0 {
		return nil, false
	}
	if client.IsValid() && !p.clients[client] {
		return nil, false
	}
	ports, ok := p.allowed[names[0]]
	for _, t := range names[1:] {
		if p.denied[t] {
			return nil, false
		}
	}
	return ports, ok
}

// TestReloadRechecksLiveElements: a reload keeps only the live elements
// some remembered name still approves, under the new policy, on the
// element's ports; the rest leave the kernel with the old table.
func TestReloadRechecksLiveElements(t *testing.T) {
	https := []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}}
	web := []policy.PortRange{{Proto: policy.ProtoTCP, From: 80, To: 443}}
	ip := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	type want struct {
		set  string
		key  []byte
		kept bool
	}
	tests := []struct {
		name   string
		allows []Allowance
		pol    namePolicy
		want   []want
	}{
		{
			name:   "name still allowed",
			allows: []Allowance{{IPs: addrs("192.0.2.1"), Name: "a.example."}},
			pol:    namePolicy{allowed: map[string][]policy.PortRange{"a.example.": nil}},
			want:   []want{{"g_servers_d4", ip("192.0.2.1"), true}},
		},
		{
			name:   "name now denied",
			allows: []Allowance{{IPs: addrs("192.0.2.1"), Name: "a.example."}},
			want:   []want{{"g_servers_d4", ip("192.0.2.1"), false}},
		},
		{
			name: "shared address stays for the name still allowed",
			allows: []Allowance{
				{IPs: addrs("192.0.2.1", "192.0.2.2"), Name: "a.example."},
				{IPs: addrs("192.0.2.2"), Name: "b.example."},
			},
			pol:  namePolicy{allowed: map[string][]policy.PortRange{"b.example.": nil}},
			want: []want{{"g_servers_d4", ip("192.0.2.1"), false}, {"g_servers_d4", ip("192.0.2.2"), true}},
		},
		{
			name:   "CNAME target now denied",
			allows: []Allowance{{IPs: addrs("192.0.2.1"), Name: "a.example.", Targets: []string{"cdn.example."}}},
			pol:    namePolicy{allowed: map[string][]policy.PortRange{"a.example.": nil}, denied: map[string]bool{"cdn.example.": true}},
			want:   []want{{"g_servers_d4", ip("192.0.2.1"), false}},
		},
		{
			name:   "any port narrowed to 443",
			allows: []Allowance{{IPs: addrs("192.0.2.1"), Name: "a.example."}},
			pol:    namePolicy{allowed: map[string][]policy.PortRange{"a.example.": https}},
			want:   []want{{"g_servers_d4", ip("192.0.2.1"), false}},
		},
		{
			name:   "port range still inside the allowed one",
			allows: []Allowance{{IPs: addrs("192.0.2.1"), Ports: https, Name: "a.example."}},
			pol:    namePolicy{allowed: map[string][]policy.PortRange{"a.example.": web}},
			want:   []want{{"g_servers_p4", portKey(ip("192.0.2.1"), policy.ProtoTCP, 443), true}},
		},
		{
			name:   "port range wider than the allowed one",
			allows: []Allowance{{IPs: addrs("192.0.2.1"), Ports: web, Name: "a.example."}},
			pol:    namePolicy{allowed: map[string][]policy.PortRange{"a.example.": https}},
			want:   []want{{"g_servers_p4", portKey(ip("192.0.2.1"), policy.ProtoTCP, 80), false}},
		},
		{
			name:   "unknown names are not re-checked",
			allows: []Allowance{{IPs: addrs("192.0.2.1")}},
			want:   []want{{"g_servers_d4", ip("192.0.2.1"), true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newTestNS(t)
			n := startNFT(t, ns, allowSpec(), nil)
			for _, a := range tt.allows {
				a.Group, a.TTL = "servers", time.Minute
				mustAllow(t, n, a)
			}
			if err := n.ReloadRecheck(allowSpec(), tt.pol.check, 0); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				_, inKernel := findElement(elements(t, ns, "egressd", w.set), w.key, nil)
				n.index.mu.RLock()
				inIndex := n.index.lookup(w.set, w.key, keyEndOf(w.set, w.key)) != nil
				n.index.mu.RUnlock()
				if inKernel != w.kept || inIndex != w.kept {
					t.Errorf("%s %x: in kernel %v, in index %v; want %v", w.set, w.key, inKernel, inIndex, w.kept)
				}
			}
		})
	}
}

// keyEndOf is the range end of the test's single-port elements.
func keyEndOf(set string, key []byte) []byte {
	if set == "g_servers_p4" {
		return key
	}
	return nil
}

// TestReloadRechecksClientScope: with scope "client" the check is asked
// for the client that resolved the name; a client moved out of the group
// loses its elements, the other keeps its own.
func TestReloadRechecksClientScope(t *testing.T) {
	ns := newTestNS(t)
	spec := allowSpec()
	spec.Scope = ScopeClient
	n := startNFT(t, ns, spec, nil)
	stays, moves := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	for _, c := range []netip.Addr{stays, moves} {
		mustAllow(t, n, Allowance{Group: "servers", Client: c, IPs: addrs("192.0.2.1"), Name: "a.example.", TTL: time.Minute})
	}
	pol := namePolicy{allowed: map[string][]policy.PortRange{"a.example.": nil}, clients: map[netip.Addr]bool{stays: true}}
	if err := n.ReloadRecheck(spec, pol.check, 0); err != nil {
		t.Fatal(err)
	}
	got := elements(t, ns, "egressd", "g_servers_d4")
	want := append(stays.AsSlice(), netip.MustParseAddr("192.0.2.1").AsSlice()...)
	if len(got) != 1 || string(got[0].Key) != string(want) {
		t.Errorf("d4 after reload = %v, want only %x", got, want)
	}
}

// TestNewNameForLiveElementIsRemembered: an Allow whose elements are all
// fresh still records a name not seen before (it goes to the owner once,
// sending nothing), so a reload that denies the first name keeps the
// element for the second; the second Allow with that name costs nothing.
func TestNewNameForLiveElementIsRemembered(t *testing.T) {
	ns := newTestNS(t)
	n := startNFT(t, ns, allowSpec(), nil)
	a := Allowance{Group: "servers", IPs: addrs("192.0.2.1"), Name: "a.example.", TTL: time.Minute}
	mustAllow(t, n, a)
	b := a
	b.Name = "b.example."
	if n.InEffect(b) {
		t.Error("InEffect true for a name the element does not remember")
	}
	flushes := n.flushCount()
	mustAllow(t, n, b)
	if !n.InEffect(b) || !n.InEffect(a) {
		t.Error("InEffect false after both names were allowed")
	}
	if got := n.flushCount(); got != flushes {
		t.Errorf("remembering a name sent %d batches, want none", got-flushes)
	}
	pol := namePolicy{allowed: map[string][]policy.PortRange{"b.example.": nil}}
	if err := n.ReloadRecheck(allowSpec(), pol.check, 0); err != nil {
		t.Fatal(err)
	}
	if got := elements(t, ns, "egressd", "g_servers_d4"); len(got) != 1 {
		t.Errorf("d4 after reload = %v, want the element b.example. still approves", got)
	}
}

// TestOriginsAreBounded: an element remembers at most maxOrigins answers;
// past that the one ending first is forgotten, and a known answer asking
// again only extends its own record.
func TestOriginsAreBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	x := newExpiryIndex()
	e := element{set: "d4", key: []byte{192, 0, 2, 1}}
	x.put(e, now.Add(time.Minute))
	name := func(i int) []string { return []string{string(rune('a'+i)) + ".example."} }
	for i := range maxOrigins + 3 {
		x.put(e, now.Add(time.Minute+time.Duration(i)*time.Second)) // later answers end later
		x.note(e, origin{names: name(i)})
		x.note(e, origin{names: name(i)}) // the same answer again adds nothing
	}
	got := x.originsOf(e)
	if len(got) != maxOrigins {
		t.Fatalf("%d origins remembered, want %d", len(got), maxOrigins)
	}
	for i := range 3 {
		if x.remembers(x.get(&e), name(i)[0], nil, netip.Addr{}, 0, now) {
			t.Errorf("the %d. answer, ending first, is still remembered", i+1)
		}
	}
	for i := 3; i < maxOrigins+3; i++ {
		if !x.remembers(x.get(&e), name(i)[0], nil, netip.Addr{}, 0, now) {
			t.Errorf("the %d. answer is forgotten", i+1)
		}
	}
}

// TestReloadRecheckOverTCP: with a real policy engine and real TCP, a
// switch from audit to enforce drops what audit approved for a denied
// name, a removed rule drops its address, an address the group's
// deny_addresses now hold is dropped whatever the name, and an address
// another name still approves stays reachable.
func TestReloadRecheckOverTCP(t *testing.T) {
	client, server := linkedPair(t, "8080")
	server.exec(t, "ip", "addr", "add", "10.98.0.4/24", "dev", "s0")
	server.exec(t, "ip", "addr", "add", "10.98.0.5/24", "dev", "s0")
	waitDial(t, client, "10.98.0.4:8080")
	waitDial(t, client, "10.98.0.5:8080")
	var denyAddresses []netip.Prefix
	group := func(mode policy.Mode, allow ...string) *policy.Engine {
		e, err := policy.Compile([]policy.GroupSpec{{Name: "clients", Clients: prefixes("10.98.0.0/24"), Allow: allow, Mode: mode, DenyAddresses: denyAddresses}}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	before := group(policy.ModeAudit, "rule.example", "kept.example")
	denyAddresses = prefixes("10.98.0.5/32")
	after := group(policy.ModeEnforce, "kept.example")
	spec := Spec{Table: "egressd", Hooks: []string{HookOutput}, Grace: 5 * time.Second,
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.98.0.0/24"), Audit: true}}}
	n := startNFT(t, client, spec, nil)
	for _, a := range []Allowance{
		{IPs: addrs("10.98.0.2"), Name: "denied.example."}, // would_deny in audit, approved anyway
		{IPs: addrs("10.98.0.3"), Name: "rule.example."},
		{IPs: addrs("10.98.0.4"), Name: "rule.example."},
		{IPs: addrs("10.98.0.4"), Name: "kept.example."},
		{IPs: addrs("10.98.0.5"), Name: "kept.example."}, // its address denied after the reload
	} {
		if _, ok := before.Recheck("clients", netip.Addr{}, a.IPs[0], []string{a.Name}); !ok {
			t.Fatalf("audit policy does not approve %s", a.Name)
		}
		a.Group, a.TTL = "clients", time.Minute
		mustAllow(t, n, a)
	}
	spec.Groups[0].Audit = false
	if err := n.ReloadRecheck(spec, after.Recheck, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, addr string
		passes     bool
	}{
		{"approved in audit for a denied name", "10.98.0.2:8080", false},
		{"approved by a removed rule", "10.98.0.3:8080", false},
		{"approved by a removed rule and a kept one", "10.98.0.4:8080", true},
		{"approved for a kept name, address now in deny_addresses", "10.98.0.5:8080", false},
	} {
		t.Run(tc.name, func(t *testing.T) { expectDial(t, client, tc.addr, tc.passes) })
	}
}
