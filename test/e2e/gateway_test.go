package e2e

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
	"github.com/miekg/dns"
)

// TestGateway runs egressd on a router (forward hook) and checks each
// rule of the policy with real connections from the client namespaces.
// The subtests use disjoint names and addresses, so they run in parallel
// against one egressd.
func TestGateway(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	cfg.Grace = "1s"
	cfg.MaxTTL = "60s"
	p := g.startEgressd(t, cfg)

	t.Run("nft-rules prints the table egressd installs", func(t *testing.T) {
		t.Parallel()
		rules, err := netnstest.Run(egressdBinary(t), "nft-rules", "-config", p.config)
		if err != nil {
			t.Fatal(err)
		}
		scratch := newNetns(t, netnstest.RandomID(), "scratch")
		if _, err := scratch.ExecInput([]byte(rules), "nft", "-f", "-"); err != nil {
			t.Fatalf("loading nft-rules output: %v", err)
		}
		// Terse and stateless: set elements and counters differ by design.
		printed, err := scratch.Exec("nft", "-t", "-s", "list", "table", "inet", tableName)
		if err != nil {
			t.Fatal(err)
		}
		installed, err := g.gw.Exec("nft", "-t", "-s", "list", "table", "inet", tableName)
		if err != nil {
			t.Fatal(err)
		}
		if printed != installed {
			t.Errorf("nft-rules output differs from the installed table\nnft-rules:\n%s\ninstalled:\n%s", printed, installed)
		}
	})

	t.Run("allowed name opens its address on every port", func(t *testing.T) {
		t.Parallel()
		resp := resolve(t, g.client1, g.dns1(), "allowed.test", dns.TypeA, allowedIP)
		for _, rr := range resp.Answer {
			if rr.Header().Ttl > 60 {
				t.Errorf("answer TTL %d above firewall.max_ttl 60s: %s", rr.Header().Ttl, rr)
			}
		}
		for _, port := range servicePorts {
			expectReach(t, g.client1, ap(allowedIP, port), "allowed.test resolved")
		}
		// Scope "group": the other client of the group is admitted too.
		expectReach(t, g.client2, ap(allowedIP, 80), "allowed.test resolved by a client of the same group")
	})

	t.Run("address never resolved stays closed", func(t *testing.T) {
		t.Parallel()
		for _, port := range servicePorts {
			expectDropped(t, g.client1, ap(unresolvedIP, port), "no name resolved to this address")
		}
		// The forward hook filters clients only; the gateway itself still
		// reaches the host, so the drop is egressd's.
		expectReach(t, g.gw, ap(unresolvedIP, 80), "gateway's own traffic")
	})

	t.Run("denied name gets NXDOMAIN and its address stays closed", func(t *testing.T) {
		t.Parallel()
		for _, proto := range []string{"udp", "tcp"} {
			expectNoAnswer(t, g.client1, g.dns1(), proto, "denied.test", dns.RcodeNameError, "denied.test over "+proto)
		}
		expectDropped(t, g.client1, ap(deniedIP, 80), "denied.test was refused")
		if n := g.upstream.asked("denied.test"); n != 0 {
			t.Errorf("denied.test reached the upstream %d times; a denied query must be answered by egressd alone", n)
		}
	})

	t.Run("port-scoped rule opens only its port", func(t *testing.T) {
		t.Parallel()
		resolve(t, g.client1, g.dns1(), "ports.test", dns.TypeA, portsIP)
		expectReach(t, g.client1, ap(portsIP, 443), "rule ports.test:443")
		expectDropped(t, g.client1, ap(portsIP, 8443), "rule ports.test:443 does not cover 8443")
		expectDropped(t, g.client1, ap(portsIP, 80), "rule ports.test:443 does not cover 80")
	})

	t.Run("allowance expires after TTL plus grace", func(t *testing.T) {
		t.Parallel()
		resp := resolve(t, g.client1, g.dns1(), "short.test", dns.TypeA, shortIP)
		resolved := time.Now()
		if ttl := resp.Answer[0].Header().Ttl; ttl > shortTTL {
			t.Errorf("short.test answered with TTL %d, above the upstream's %d", ttl, shortTTL)
		}
		long, err := openFlow(g.client1, ap(shortIP, 443))
		if err != nil {
			t.Fatalf("short.test just resolved: %v", err)
		}
		defer long.Close()
		// The element was added before the answer left egressd, so it is
		// gone by resolved + TTL + grace; the extra 700ms absorbs
		// scheduling noise.
		time.Sleep(time.Until(resolved.Add(shortTTL*time.Second + time.Second + 700*time.Millisecond)))
		expectDropped(t, g.client1, ap(shortIP, 80), "short.test's TTL (1s) plus grace (1s) has passed")
		// Expiry stops new connections only: a flow opened in time lives on.
		if err := long.echo("still here"); err != nil {
			t.Errorf("connection opened before expiry broke after it: %v", err)
		}

		// Resolving again opens it again.
		resolve(t, g.client1, g.dns1(), "short.test", dns.TypeA, shortIP)
		expectReach(t, g.client1, ap(shortIP, 80), "short.test resolved again")
	})

	t.Run("resolving again before expiry extends the allowance", func(t *testing.T) {
		t.Parallel()
		resolve(t, g.client1, g.dns1(), "refresh.test", dns.TypeA, refreshIP)
		first := time.Now()
		// After the cached answer expired, so egressd fetches it anew,
		// and before the first allowance (TTL 1s + grace 1s) runs out.
		time.Sleep(time.Until(first.Add(1300 * time.Millisecond)))
		resp := resolve(t, g.client1, g.dns1(), "refresh.test", dns.TypeA, refreshIP)
		if ttl := resp.Answer[0].Header().Ttl; ttl != shortTTL {
			t.Fatalf("refresh.test re-resolved after its TTL: answer TTL %d, want a fresh %d", ttl, shortTTL)
		}
		// Past the first allowance's end, well inside the second's.
		time.Sleep(time.Until(first.Add(shortTTL*time.Second + time.Second + 600*time.Millisecond)))
		expectReach(t, g.client1, ap(refreshIP, 80), "refresh.test resolved again 1.3s after the first answer")
	})

	t.Run("concurrent answers are enforced before they arrive", func(t *testing.T) {
		t.Parallel()
		// Each client connects once, right after its answer, with no retry:
		// an answer sent before its element is in the kernel shows up as a
		// dropped SYN. Concurrent queries exercise batched updates.
		const clients = 24
		errs := make(chan error, clients)
		for n := 1; n <= clients; n++ {
			go func() {
				resp, err := query(g.client1, g.dns1(), "udp", bulkName(n), dns.TypeA)
				switch {
				case err != nil:
					errs <- fmt.Errorf("%s: %w", bulkName(n), err)
				case len(answerAddrs(resp)) != 1 || answerAddrs(resp)[0] != bulkIP(n):
					errs <- fmt.Errorf("%s: got %s, want %s", bulkName(n), describe(resp), bulkIP(n))
				default:
					if err := connect(g.client1, ap(bulkIP(n), 443)); err != nil {
						errs <- fmt.Errorf("%s: connect right after the answer: %w", bulkName(n), err)
						return
					}
					errs <- nil
				}
			}()
		}
		for range clients {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("direct DNS to another resolver is dropped", func(t *testing.T) {
		t.Parallel()
		for _, server := range []netip.AddrPort{ap(resolverAddr4, 53), ap(resolverAddr6, 53)} {
			for _, proto := range []string{"udp", "tcp"} {
				expectDNSDropped(t, g.client1, server, proto, "the client's only resolver is egressd")
			}
		}
		// The resolver is alive: the gateway itself gets answers.
		if resp, err := query(g.gw, ap(resolverAddr4, 53), "udp", "allowed.test", dns.TypeA); err != nil {
			t.Errorf("control query from the gateway: %v %s", err, describe(resp))
		}
	})

	t.Run("IPv6 answer opens only its address", func(t *testing.T) {
		t.Parallel()
		resolve(t, g.client1, g.dns1v6(), "v6.test", dns.TypeAAAA, v6IP)
		expectReach(t, g.client1, ap(v6IP, 80), "v6.test resolved")
		expectDropped(t, g.client1, ap(unresolved6, 80), "no name resolved to this IPv6 address")
	})

	t.Run("CNAME to a denied name is denied", func(t *testing.T) {
		t.Parallel()
		expectNoAnswer(t, g.client1, g.dns1(), "udp", "cname.test", dns.RcodeNameError, "cname.test (CNAME to denied hidden.test)")
		expectDropped(t, g.client1, ap(hiddenIP, 80), "hidden.test is denied even behind an allowed CNAME")
	})
}

// TestClientScope checks scope "client": an answer admits only the client
// that asked for it.
func TestClientScope(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	cfg.Scope = "client"
	g.startEgressd(t, cfg)

	resolve(t, g.client1, g.dns1(), "allowed.test", dns.TypeA, allowedIP)
	expectReach(t, g.client1, ap(allowedIP, 80), "client1 resolved allowed.test")
	expectDropped(t, g.client2, ap(allowedIP, 80), "client2 did not resolve allowed.test (scope client)")

	resolve(t, g.client2, g.dns2(), "allowed.test", dns.TypeA, allowedIP)
	expectReach(t, g.client2, ap(allowedIP, 80), "client2 resolved allowed.test itself")
}

// TestUnlistedClientRefused checks [server].clients: a host outside it
// gets REFUSED, even for a name its group allows, and no allowance.
func TestUnlistedClientRefused(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	cfg.GroupClients = cfg.Clients
	cfg.Clients = []string{"10.200.1.0/24", "fd00:200:1::/64"} // client1 only
	g.startEgressd(t, cfg)

	expectNoAnswer(t, g.client2, g.dns2(), "udp", "allowed.test", dns.RcodeRefused, "allowed.test from a client outside server.clients")
	expectDropped(t, g.client2, ap(allowedIP, 80), "client2 was refused an answer")
}
