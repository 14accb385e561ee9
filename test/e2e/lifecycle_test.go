package e2e

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestExit checks what a stopped egressd leaves behind: by default the
// table and its allowances stay (fail closed); with remove_on_exit the
// table goes and traffic flows unfiltered.
func TestExit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		removeOnExit bool
	}{
		{"table stays by default", false},
		{"remove_on_exit deletes the table", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t)
			cfg := g.egressdConfig()
			cfg.RemoveOnExit = tc.removeOnExit
			p := startEgressd(t, g.gw, cfg, g.client1, g.dns1())

			resolve(t, g.client1, g.dns1(), "allowed.test", dns.TypeA)
			expectReach(t, g.client1, ap(allowedIP, 80), "allowed.test resolved")
			expectDropped(t, g.client1, ap(unresolvedIP, 80), "egressd running")

			if err := p.stop(); err != nil {
				t.Errorf("egressd exit after SIGTERM: %v", err)
			}
			out, err := g.gw.exec("nft", "list", "table", "inet", tableName)
			present := err == nil && strings.Contains(out, "table inet "+tableName)
			if present == tc.removeOnExit {
				t.Errorf("after exit with remove_on_exit=%t: table inet %s present=%t, want %t\n%s",
					tc.removeOnExit, tableName, present, !tc.removeOnExit, out)
			}
			expectReach(t, g.client1, ap(allowedIP, 80), "allowance made before egressd exited")
			if tc.removeOnExit {
				expectReach(t, g.client1, ap(unresolvedIP, 80), "table removed: nothing filters")
			} else {
				expectDropped(t, g.client1, ap(unresolvedIP, 80), "egressd stopped, table kept: still fail closed")
			}
		})
	}
}
