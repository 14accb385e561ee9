package resolver

import (
	"net/netip"
	"testing"

	"github.com/egressd/egressd/policy"
)

// TestRebindingRecheck: a reload's re-check of a live element applies the
// rebinding protection of the new settings: a local address stays only
// where an answer with it would be pushed now (the group allows private
// answers, a private suffix, a forwarded zone, a hosts entry, audit
// mode); public addresses and the policy's own verdict are unchanged.
func TestRebindingRecheck(t *testing.T) {
	engine, err := policy.Compile([]policy.GroupSpec{
		{Name: "servers", Clients: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, Allow: []string{"*.example.", "*.lan.", "*.corp.example."}},
		{Name: "lab", Clients: []netip.Prefix{netip.MustParsePrefix("10.3.0.0/16")}, DefaultAllow: true, Mode: policy.ModeAudit},
		{Name: "open", Clients: []netip.Prefix{netip.MustParsePrefix("10.4.0.0/16")}, DefaultAllow: true},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, Options{Upstreams: []string{"127.0.0.1:1"}, Zones: []Zone{{Name: "corp.example", Upstreams: []string{"127.0.0.1:1"}}}})
	tests := []struct {
		name    string
		private map[string]bool // settings after the reload
		group   string
		qname   string
		dest    string
		ok      bool
	}{
		{"public address", nil, "servers", "www.example.", "192.0.2.1", true},
		{"private address, protection on", nil, "servers", "www.example.", "10.0.0.5", false},
		{"loopback address, protection on", nil, "servers", "www.example.", "127.0.0.1", false},
		{"ULA address, protection on", nil, "servers", "www.example.", "fd00::5", false},
		{"NAT64 of a private address", nil, "servers", "www.example.", "64:ff9b::a00:5", false},
		{"private address, group allows private answers", map[string]bool{"servers": true}, "servers", "www.example.", "10.0.0.5", true},
		{"another group allows private answers", map[string]bool{"open": true}, "servers", "www.example.", "10.0.0.5", false},
		{"private suffix", nil, "servers", "printer.lan.", "10.0.0.5", true},
		{"forwarded zone", nil, "servers", "db.corp.example.", "10.0.0.5", true},
		{"hosts entry", nil, "servers", "router.example.", "10.0.0.1", true},
		{"audit mode pushes would-be denials", nil, "lab", "www.example.", "10.0.0.5", true},
		{"policy still denies the name", map[string]bool{"servers": true}, "servers", "www.other.", "10.0.0.5", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := Settings{PrivateAnswers: tt.private, Hosts: map[string][]netip.Addr{"Router.example": {netip.MustParseAddr("10.0.0.1")}}}
			check := env.srv.RebindingRecheck(st, engine)
			if _, ok := check(tt.group, netip.Addr{}, netip.MustParseAddr(tt.dest), []string{tt.qname}); ok != tt.ok {
				t.Errorf("approved %t, want %t", ok, tt.ok)
			}
		})
	}
}
