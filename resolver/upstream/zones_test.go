package upstream

import (
	"testing"
)

// A server listed both by default and in a zone is one client, so both
// share its connections.
func TestZoneSharesUpstreams(t *testing.T) {
	set := newTestSet(t, Options{
		Servers: []string{"127.0.0.1:53", "tls://127.0.0.1:853"},
		Zones:   []Zone{{Name: "corp.internal", Upstreams: []string{"tls://127.0.0.1:853"}}},
	})
	z := set.zones.match("corp.internal.")
	if z == nil || len(z.upstreams) != 1 {
		t.Fatalf("zone servers %v", z)
	}
	if z.upstreams[0] != set.def.upstreams[1] {
		t.Error("the zone has its own instance of a default upstream")
	}
	if z.health == set.def.health {
		t.Error("the zone shares the default servers' health order")
	}
}
