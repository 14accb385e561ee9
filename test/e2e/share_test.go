package e2e

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"
)

// TestClientShare: a client that has taken its share of its group's sets
// (firewall.max_elements_per_client) gets SERVFAIL for a new destination,
// which stays closed, while the names it already holds are still
// answered and another client of the group is answered and let through:
// one client cannot fill the sets for the others (SECURITY.md).
func TestClientShare(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	const share = 3
	cfg.MaxElementsPerClient = share
	g.startEgressd(t, cfg)

	for n := 1; n <= share; n++ {
		resolve(t, g.client1, g.dns1(), bulkName(n), dns.TypeA, bulkIP(n))
		expectReach(t, g.client1, ap(bulkIP(n), 80), fmt.Sprintf("%s resolved within client1's share", bulkName(n)))
	}
	past := share + 1
	expectNoAnswer(t, g.client1, g.dns1(), "udp", bulkName(past), dns.RcodeServerFailure, bulkName(past)+" past client1's share")
	expectDropped(t, g.client1, ap(bulkIP(past), 80), bulkName(past)+" was refused to client1")
	resolve(t, g.client1, g.dns1(), bulkName(1), dns.TypeA, bulkIP(1))

	resolve(t, g.client2, g.dns2(), bulkName(past), dns.TypeA, bulkIP(past))
	expectReach(t, g.client2, ap(bulkIP(past), 80), bulkName(past)+" resolved by client2, within its own share")
}
