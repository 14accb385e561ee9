package e2e

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
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
	expectDropped(t, g.client1, ap(deniedIP, 80), "denied.test, approved in audit mode, after the switch to enforce")
	expectDropped(t, g.client1, ap(bulkIP(2), 80), "n2.bulk.test after its rule was removed")
	expectReach(t, g.client1, ap(bulkIP(1), 80), "n1.bulk.test's address, which twin.test still approves")
}

// leaveApprovedElements runs an egressd whose config allows denied.test,
// has it approve denied.test and allowed.test, and stops it with the table
// and both elements kept (60s TTL plus grace), for the next egressd to
// inherit. It returns the gateway and that config.
func leaveApprovedElements(t *testing.T) (*gatewayNet, egressdConfig) {
	t.Helper()
	g := newGateway(t)
	cfg := g.egressdConfig()
	cfg.Allow = append([]string{"denied.test"}, allowRules...)
	cfg.Deny = []string{"hidden.test"}
	p := g.startEgressd(t, cfg)
	resolve(t, g.client1, g.dns1(), "denied.test", dns.TypeA, deniedIP)
	resolve(t, g.client1, g.dns1(), "allowed.test", dns.TypeA, allowedIP)
	if err := p.stop(); err != nil {
		t.Fatalf("egressd exited with %v", err)
	}
	return g, cfg
}

// TestReloadRechecksInheritedElements: approvals carried over from an
// earlier egressd (the table kept across a restart) are re-checked by the
// name in their element's comment: a reload whose policy denies the name
// closes its address, while one whose name is still allowed stays open.
func TestReloadRechecksInheritedElements(t *testing.T) {
	t.Parallel()
	g, cfg := leaveApprovedElements(t)
	p := g.startEgressd(t, cfg) // inherits both elements
	expectReach(t, g.client1, ap(deniedIP, 80), "denied.test approved before the restart")

	cfg.Allow = allowRules
	p.reload(t, cfg)
	expectDropped(t, g.client1, ap(deniedIP, 80), "denied.test, approved before the restart, after a reload that denies it")
	expectReach(t, g.client1, ap(allowedIP, 80), "allowed.test, approved before the restart and still allowed")

	// A second reload keeps the name of what stays: it is still checked.
	cfg.Allow = []string{"ports.test:443"}
	p.reload(t, cfg)
	expectDropped(t, g.client1, ap(allowedIP, 80), "allowed.test, approved before the restart, after a second reload that denies it")
}

// TestReloadRechecksPrivateAnswers: a reload that turns
// allow_private_answers off for a group closes the private addresses only
// it allowed; a [hosts] answer, which rebinding protection never covers,
// stays open.
func TestReloadRechecksPrivateAnswers(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	cfg.Allow = append([]string{"twin.test"}, allowRules...)
	cfg.Hosts = map[string]netip.Addr{"twin.test": bulkIP(1)}
	p := g.startEgressd(t, cfg)
	resolve(t, g.client1, g.dns1(), "allowed.test", dns.TypeA, allowedIP)
	resolve(t, g.client1, g.dns1(), "twin.test", dns.TypeA, bulkIP(1))

	cfg.RebindingProtection = true
	p.reload(t, cfg)
	expectDropped(t, g.client1, ap(allowedIP, 80), "allowed.test's private address after allow_private_answers was turned off")
	expectReach(t, g.client1, ap(bulkIP(1), 80), "twin.test from [hosts]")
}

// TestRestartRechecksInheritedElements: a restart with a config that
// changed while egressd was down asks the new policy about the elements
// it carries over, as a reload would: a name it denies is closed before
// the first query, one it allows stays open.
func TestRestartRechecksInheritedElements(t *testing.T) {
	t.Parallel()
	g, cfg := leaveApprovedElements(t)
	cfg.Allow = allowRules
	g.startEgressd(t, cfg)
	expectDropped(t, g.client1, ap(deniedIP, 80), "denied.test, approved before a restart whose config denies it")
	expectReach(t, g.client1, ap(allowedIP, 80), "allowed.test, approved before the restart and still allowed")
}
