package fleet

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/natstest"
	"github.com/egressd/egressd/policy"
)

// good is a message an agent enforcing "staff" in client scope installs.
func good(id string) Message {
	return Message{V: Version1, ID: id, Node: "gw-x", Group: "staff", Scope: ScopeClient, Approval: Approval{Client: "10.0.0.5",
		IPs: []string{"192.0.2.1"}, Ports: []Port{{Proto: "tcp", From: 443, To: 443}}, LifetimeMS: 60000, Name: "example.com"}}
}

func encode(t *testing.T, m Message) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Messages on the approval subjects that are malformed, foreign, out of
// what this node's policy approves, expired or too long-lived are counted
// by reason and never installed; a good one after them is.
func TestRejectedMessages(t *testing.T) {
	s := natstest.Run(t)
	servers := []string{s.URL()}
	fw := newFakeFW(nil)
	fw.scoped = true
	// The policy here: staff (10.0.0.0/24) may reach example.com on 443
	// only, and never 192.0.2.66.
	recheck := func(group string, client, dest netip.Addr, names []string) ([]policy.PortRange, bool) {
		staff := netip.MustParsePrefix("10.0.0.0/24")
		if group != "staff" || !staff.Contains(client) || names[0] != "example.com" || dest == netip.MustParseAddr("192.0.2.66") {
			return nil, false
		}
		return https, true
	}
	b, m := node(t, Options{Servers: servers, Node: "gw-b", Enforce: []string{"staff", "lab"}, Apply: fw,
		Settings: Settings{ScopeClient: true, MaxLifetime: 10 * time.Minute, Recheck: recheck}})
	waitFor(t, "agent ready", b.ReplayDone)
	js := natstest.JetStream(t, s.URL())
	staffSubject := ApprovalSubject(DefaultSubjectPrefix, "staff")
	mod := func(f func(*Message)) []byte {
		m := good("x")
		f(&m)
		return encode(t, m)
	}
	tests := []struct {
		name, subject string
		data          []byte
		reason        string
	}{
		{"not json", staffSubject, []byte("{not json"), ReasonMalformed},
		{"empty", staffSubject, nil, ReasonMalformed},
		{"other version", staffSubject, mod(func(m *Message) { m.V = 3 }), ReasonVersion},
		{"version 2 with the approval inline", staffSubject, mod(func(m *Message) { m.V = Version }), ReasonMalformed},
		{"version 1 with approvals", staffSubject, mod(func(m *Message) { m.Approvals = []Approval{m.Approval} }), ReasonMalformed},
		{"version 2 without approvals", staffSubject, mod(func(m *Message) { m.V, m.Approval = Version, Approval{} }), ReasonMalformed},
		{"no addresses", staffSubject, mod(func(m *Message) { m.IPs = nil }), ReasonMalformed},
		{"bad address", staffSubject, mod(func(m *Message) { m.IPs = []string{"192.0.2.300"} }), ReasonMalformed},
		{"a name with a bare space", staffSubject, mod(func(m *Message) { m.Name = "example.com x" }), ReasonMalformed},
		{"a target with a control byte", staffSubject, mod(func(m *Message) { m.Targets = []string{"cdn\n.example."} }), ReasonMalformed},
		{"an empty target", staffSubject, mod(func(m *Message) { m.Targets = []string{""} }), ReasonMalformed},
		{"a name ending in a lone backslash", staffSubject, mod(func(m *Message) { m.Name = `example.com\` }), ReasonMalformed},
		{"bad port range", staffSubject, mod(func(m *Message) { m.Ports = []Port{{Proto: "tcp", From: 443, To: 80}} }), ReasonMalformed},
		{"bad scope", staffSubject, mod(func(m *Message) { m.Scope = "world" }), ReasonMalformed},
		{"group of another subject", staffSubject, mod(func(m *Message) { m.Group = "lab" }), ReasonForeign},
		{"group not enforced here", staffSubject, mod(func(m *Message) { m.Group = "guests" }), ReasonForeign},
		{"lab in group scope", ApprovalSubject(DefaultSubjectPrefix, "lab"), mod(func(m *Message) { m.Group = "lab"; m.Scope = ScopeGroup; m.Client = "" }), ReasonScope},
		{"group scope here client scope", staffSubject, mod(func(m *Message) { m.Scope = ScopeGroup; m.Client = "" }), ReasonScope},
		{"multicast", staffSubject, mod(func(m *Message) { m.IPs = []string{"224.0.0.1"} }), ReasonAddress},
		{"this network", staffSubject, mod(func(m *Message) { m.IPs = []string{"0.1.2.3"} }), ReasonAddress},
		{"client outside the group", staffSubject, mod(func(m *Message) { m.Client = "10.9.9.9" }), ReasonPolicy},
		{"name not approved", staffSubject, mod(func(m *Message) { m.Name = "evil.example" }), ReasonPolicy},
		{"denied address", staffSubject, mod(func(m *Message) { m.IPs = []string{"192.0.2.66"} }), ReasonPolicy},
		{"ports wider", staffSubject, mod(func(m *Message) { m.Ports = nil }), ReasonPolicy},
		{"expired", staffSubject, mod(func(m *Message) { m.LifetimeMS = 0 }), ReasonExpired},
		{"negative lifetime", staffSubject, mod(func(m *Message) { m.LifetimeMS = -5000 }), ReasonExpired},
		{"longer than max_ttl", staffSubject, mod(func(m *Message) { m.LifetimeMS = (11 * time.Minute).Milliseconds() }), ReasonTooLong},
	}
	want := map[string]int{}
	ctx := context.Background()
	for _, tt := range tests {
		if _, err := js.Publish(ctx, tt.subject, tt.data); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		want[tt.reason]++
	}
	// The subject of a group not enforced here is not even delivered.
	if _, err := js.Publish(ctx, ApprovalSubject(DefaultSubjectPrefix, "guests"), mod(func(m *Message) { m.Group = "guests" })); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, staffSubject, encode(t, good("ok"))); err != nil {
		t.Fatal(err)
	}
	total := len(tests)
	waitFor(t, "all handled", func() bool {
		n := 0
		for r := range want {
			n += counter(m.Rejected.WithLabelValues(r))
		}
		return n == total && counter(m.Applied) == 1
	})
	for r, n := range want {
		if got := counter(m.Rejected.WithLabelValues(r)); got != n {
			t.Errorf("rejected{reason=%q} = %d, want %d", r, got, n)
		}
	}
	if fw.count() != 1 || !fw.has(elemKey("staff", client1, ip1, https)) {
		fw.mu.Lock()
		t.Errorf("firewall holds %v, want only the good approval", fw.elems)
		fw.mu.Unlock()
	}
}

// An agent that is also a resolver skips its own approvals (its firewall
// has them already), without counting them as rejected.
func TestOwnApprovalsSkipped(t *testing.T) {
	s := natstest.Run(t)
	fw := newFakeFW(nil)
	n, m := node(t, Options{Servers: []string{s.URL()}, Node: "gw-a", Publish: []string{"staff"}, Enforce: []string{"staff"}, Apply: fw})
	waitFor(t, "replay", n.ReplayDone)
	other := newFakeFW(nil)
	if err := n.Wrap(other).Allow(context.Background(), allowance("staff", time.Minute, ip1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "published", func() bool { return counter(m.Published) == 1 })
	// A peer's approval after it, to know the own one was handled.
	js := natstest.JetStream(t, s.URL())
	peer := good("peer")
	peer.Scope, peer.Client, peer.IPs = ScopeGroup, "", []string{ip2.String()}
	if _, err := js.Publish(context.Background(), ApprovalSubject(DefaultSubjectPrefix, "staff"), encode(t, peer)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "peer applied", func() bool { return counter(m.Applied) == 1 })
	if fw.has(groupKey(ip1)) {
		t.Error("own approval applied again")
	}
	for _, r := range []string{ReasonMalformed, ReasonForeign} {
		if got := counter(m.Rejected.WithLabelValues(r)); got != 0 {
			t.Errorf("rejected{%s} = %d", r, got)
		}
	}
}

// FuzzDecode: whatever arrives on an approval subject, decode does not
// panic, and what it accepts turns into allowances the firewall can take
// as they are: valid addresses (and a valid client with client scope),
// port ranges in order, names in presentation form.
func FuzzDecode(f *testing.F) {
	for _, m := range []Message{good("a"), func() Message {
		m := good("b")
		m.V, m.Approvals, m.Approval = Version, []Approval{m.Approval, {Client: "10.0.0.6", IPs: []string{"2001:db8::1"}, LifetimeMS: 1, Name: `a\ b.example.`, Targets: []string{"c.example."}}}, Approval{}
		return m
	}()} {
		data, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decode(data)
		if err != nil {
			return
		}
		for i := range m.Approvals {
			ap := &m.Approvals[i]
			a := ap.allowance(m.Group, m.Scope, time.Minute)
			if m.Scope == ScopeClient && !a.Client.IsValid() {
				t.Fatalf("accepted client %q", ap.Client)
			}
			for j, ip := range a.IPs {
				if !ip.IsValid() {
					t.Fatalf("accepted address %q", ap.IPs[j])
				}
			}
			for _, p := range a.Ports {
				if p.From == 0 || p.To < p.From {
					t.Fatalf("accepted port range %+v", p)
				}
			}
			for _, n := range append([]string{a.Name}, a.Targets...) {
				if n == "" || !presentationName(n) {
					t.Fatalf("accepted name %q", n)
				}
			}
		}
	})
}
