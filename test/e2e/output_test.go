package e2e

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// TestOutputHook is the sidecar case: egressd and the application share
// one namespace, egressd filters the output hook, and its own upstream
// queries pass because its sockets carry the firewall mark.
func TestOutputHook(t *testing.T) {
	t.Parallel()
	s := newSidecar(t)
	dns4 := ap(netip.MustParseAddr("127.0.0.1"), 53)
	dns6 := ap(netip.IPv6Loopback(), 53)
	cfg := egressdConfig{
		Listen:  []netip.AddrPort{dns4, dns6},
		Clients: []string{"127.0.0.0/8", "::1/128"},
		// Queries come from loopback, but connections leave with the pod's
		// own address as source: like examples/kubernetes, the group
		// covers every source address.
		GroupClients: []string{"0.0.0.0/0", "::/0"},
		Upstream:     ap(resolverAddr4, 53),
		Hooks:        []string{"output"},
	}
	startEgressd(t, s.pod, cfg, s.pod, dns4)
	// The topology check filled the neighbour caches; empty them so the
	// connections below also need neighbour discovery (ICMPv6) to work
	// under the output hook, as they do once entries expire.
	s.pod.mustIP(t, "neigh", "flush", "all")

	t.Run("IPv4", func(t *testing.T) {
		// The upstream sits on an address no name resolves to, and port 53
		// is closed to the group: an answer proves the mark lets egressd
		// out.
		resolve(t, s.pod, dns4, "allowed.test", dns.TypeA, allowedIP)
		if s.upstream.asked("allowed.test") == 0 {
			t.Error("allowed.test was answered without asking the upstream")
		}
		expectReach(t, s.pod, ap(allowedIP, 80), "allowed.test resolved")
		expectDropped(t, s.pod, ap(unresolvedIP, 80), "no name resolved to this address")
		for _, proto := range []string{"udp", "tcp"} {
			expectDNSDropped(t, s.pod, ap(resolverAddr4, 53), proto, "the application's sockets carry no mark")
		}
	})

	t.Run("IPv6", func(t *testing.T) {
		resolve(t, s.pod, dns6, "v6.test", dns.TypeAAAA, v6IP)
		expectReach(t, s.pod, ap(v6IP, 80), "v6.test resolved (needs ICMPv6 neighbour discovery to pass the output hook)")
		expectDropped(t, s.pod, ap(unresolved6, 80), "no name resolved to this IPv6 address")
	})
}
