package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/wait"
)

// TestReloadToEnforceClosesWhatAuditApproved: after SIGHUP switches the
// group from audit to enforce and drops a rule, connections to what audit
// approved for a denied name, and to what the dropped rule approved, are
// dropped at once; an address another name still approves stays open.
func TestReloadToEnforceClosesWhatAuditApproved(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	cfg.Mode = "audit"
	cfg.Allow = []string{"allowed.test", "*.bulk.test", "twin.test"}
	// twin.test answers what n1.bulk.test answers.
	cfg.Hosts = map[string]netip.Addr{"twin.test": bulkIP(1)}
	p := g.startEgressd(t, cfg)

	resolve(t, g.client1, g.dns1(), "denied.test", dns.TypeA, deniedIP)
	resolve(t, g.client1, g.dns1(), bulkName(1), dns.TypeA, bulkIP(1))
	resolve(t, g.client1, g.dns1(), "twin.test", dns.TypeA, bulkIP(1))
	resolve(t, g.client1, g.dns1(), bulkName(2), dns.TypeA, bulkIP(2))

	cfg.Mode = "enforce"
	cfg.Allow = []string{"allowed.test", "twin.test"}
	p.reload(t, cfg)
	reloaded := func() bool { return strings.Contains(p.stderr.String(), "config reloaded") }
	if !wait.Until(10*time.Second, 50*time.Millisecond, reloaded) {
		t.Fatal("egressd did not log \"config reloaded\" within 10s of SIGHUP")
	}
	expectDropped(t, g.client1, ap(deniedIP, 80), "denied.test, approved in audit mode, after the switch to enforce")
	expectDropped(t, g.client1, ap(bulkIP(2), 80), "n2.bulk.test after its rule was removed")
	expectReach(t, g.client1, ap(bulkIP(1), 80), "n1.bulk.test's address, which twin.test still approves")
}
