package e2e

import (
	"net/netip"
	"testing"

	"github.com/egressd/egressd/internal/netnstest"
	"github.com/miekg/dns"
)

// Addresses of the gateway topology:
//
//	client1 10.200.1.10 ─┐
//	                      gateway (egressd, forward hook) 10.200.2.1 ── 10.200.2.2 internet
//	client2 10.200.3.10 ─┘                                          hosts 10.200.10.0/24
//
// with the same shape in fd00:200:N::/64 for IPv6.
// egressd listens on the gateway's client-side addresses.
var (
	gwClient1   = netip.MustParseAddr("10.200.1.1")
	gwClient1v6 = netip.MustParseAddr("fd00:200:1::1")
	gwClient2   = netip.MustParseAddr("10.200.3.1")
)

// gatewayNet is two client namespaces routed through a gateway namespace
// to an internet namespace.
type gatewayNet struct {
	client1, client2, gw, inet *netns
	upstream                   *upstream
}

// dns1 and dns2 are egressd's addresses as each client sees them.
func (g *gatewayNet) dns1() netip.AddrPort   { return ap(gwClient1, 53) }
func (g *gatewayNet) dns1v6() netip.AddrPort { return ap(gwClient1v6, 53) }
func (g *gatewayNet) dns2() netip.AddrPort   { return ap(gwClient2, 53) }

// egressdConfig is the part of the config every gateway test shares.
func (g *gatewayNet) egressdConfig() egressdConfig {
	return egressdConfig{
		Listen:   []netip.AddrPort{g.dns1(), g.dns1v6(), g.dns2()},
		Clients:  []string{"10.200.1.0/24", "10.200.3.0/24", "fd00:200:1::/64", "fd00:200:3::/64"},
		Upstream: ap(resolverAddr4, 53),
		Hooks:    []string{"forward"},
	}
}

// startEgressd runs egressd on the gateway with cfg, ready once client1
// gets answers from it.
func (g *gatewayNet) startEgressd(t *testing.T, cfg egressdConfig) *egressdProc {
	t.Helper()
	return startEgressd(t, g.gw, cfg, g.client1, g.dns1())
}

// newGateway builds the topology and checks that, before egressd runs,
// every path the tests later expect to be dropped is open: a drop seen
// later is then egressd's doing.
func newGateway(t *testing.T) *gatewayNet {
	t.Helper()
	requireNetns(t)
	id := netnstest.RandomID()
	g := &gatewayNet{
		client1: newNetns(t, id, "client1"),
		client2: newNetns(t, id, "client2"),
		gw:      newNetns(t, id, "gw"),
		inet:    newNetns(t, id, "inet"),
	}
	veth(t, g.gw, "to-c1", g.client1, "eth0")
	veth(t, g.gw, "to-c2", g.client2, "eth0")
	veth(t, g.gw, "to-inet", g.inet, "eth0")

	addrs(t, g.client1, "eth0", "10.200.1.10/24", "fd00:200:1::10/64")
	addrs(t, g.client2, "eth0", "10.200.3.10/24", "fd00:200:3::10/64")
	addrs(t, g.gw, "to-c1", "10.200.1.1/24", "fd00:200:1::1/64")
	addrs(t, g.gw, "to-c2", "10.200.3.1/24", "fd00:200:3::1/64")
	addrs(t, g.gw, "to-inet", "10.200.2.1/24", "fd00:200:2::1/64")
	addrs(t, g.inet, "eth0", "10.200.2.2/24", "fd00:200:2::2/64")

	g.client1.mustIP(t, "route", "add", "default", "via", "10.200.1.1")
	g.client1.mustIP(t, "-6", "route", "add", "default", "via", "fd00:200:1::1")
	g.client2.mustIP(t, "route", "add", "default", "via", "10.200.3.1")
	g.client2.mustIP(t, "-6", "route", "add", "default", "via", "fd00:200:3::1")
	g.gw.mustIP(t, "route", "add", hostsRange4.String(), "via", "10.200.2.2")
	g.gw.mustIP(t, "-6", "route", "add", hostsRange6.String(), "via", "fd00:200:2::2")
	g.gw.mustSysctl(t, "net.ipv4.ip_forward=1")
	g.gw.mustSysctl(t, "net.ipv6.conf.all.forwarding=1")

	g.inet.mustIP(t, "route", "add", "10.200.0.0/16", "via", "10.200.2.1")
	g.inet.mustIP(t, "-6", "route", "add", "fd00:200::/32", "via", "fd00:200:2::1")
	addHosts(t, g.inet)
	g.upstream = startInternet(t, g.inet)

	for _, c := range []*netns{g.client1, g.client2} {
		requireOpenPath(t, c, ap(unresolvedIP, 80))
		requireOpenPath(t, c, ap(unresolved6, 80))
	}
	requireOpenResolver(t, g.client1, ap(resolverAddr4, 53))
	return g
}

// sidecarNet is one namespace holding both egressd and its client
// process, with an uplink to the internet namespace.
type sidecarNet struct {
	pod, inet *netns
	upstream  *upstream
}

func newSidecar(t *testing.T) *sidecarNet {
	t.Helper()
	requireNetns(t)
	id := netnstest.RandomID()
	s := &sidecarNet{pod: newNetns(t, id, "pod"), inet: newNetns(t, id, "inet")}
	veth(t, s.pod, "eth0", s.inet, "eth0")
	addrs(t, s.pod, "eth0", "10.200.2.1/24", "fd00:200:2::1/64")
	addrs(t, s.inet, "eth0", "10.200.2.2/24", "fd00:200:2::2/64")
	s.pod.mustIP(t, "route", "add", "default", "via", "10.200.2.2")
	s.pod.mustIP(t, "-6", "route", "add", "default", "via", "fd00:200:2::2")
	addHosts(t, s.inet)
	s.upstream = startInternet(t, s.inet)

	requireOpenPath(t, s.pod, ap(unresolvedIP, 80))
	requireOpenPath(t, s.pod, ap(unresolved6, 80))
	requireOpenResolver(t, s.pod, ap(resolverAddr4, 53))
	return s
}

// veth connects two namespaces and brings both ends up.
func veth(t *testing.T, a *netns, aName string, b *netns, bName string) {
	t.Helper()
	if err := netnstest.Veth(a.Namespace, aName, b.Namespace, bName); err != nil {
		t.Fatal(err)
	}
}

// addrs assigns addresses; IPv6 ones skip duplicate address detection so
// they work at once.
func addrs(t *testing.T, ns *netns, dev string, prefixes ...string) {
	t.Helper()
	if err := ns.AddAddrs(dev, prefixes...); err != nil {
		t.Fatal(err)
	}
}

// addHosts makes every address of the hosts ranges local to the internet
// namespace, so any of them can stand for a server.
func addHosts(t *testing.T, inet *netns) {
	t.Helper()
	inet.mustIP(t, "route", "add", "local", hostsRange4.String(), "dev", "lo")
	inet.mustIP(t, "-6", "route", "add", "local", hostsRange6.String(), "dev", "lo")
}

// requireOpenPath allows a few tries: the very first packets on fresh
// links may wait for neighbour discovery.
func requireOpenPath(t *testing.T, from *netns, dst netip.AddrPort) {
	t.Helper()
	var err error
	for try := 0; try < 4; try++ {
		if err = connect(from, dst); err == nil {
			return
		}
	}
	t.Fatalf("topology broken before egressd started: connect %s from %s: %v", dst, from.Name, err)
}

func requireOpenResolver(t *testing.T, from *netns, server netip.AddrPort) {
	t.Helper()
	// A name outside the zone, so the upstream's record of what it was
	// asked covers only what egressd forwarded.
	resp, err := query(from, server, "udp", "topology-check.test", dns.TypeA)
	if err != nil || resp.Rcode != dns.RcodeNameError {
		t.Fatalf("topology broken before egressd started: query %s from %s: %v %s", server, from.Name, err, describe(resp))
	}
}
