package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/natsproc"
	"github.com/egressd/egressd/internal/netnstest"
	"github.com/egressd/egressd/internal/wait"
	"github.com/miekg/dns"
)

// fleetReadyLimit bounds how long an egressd with [fleet] may take to
// report ready on /readyz: connected to NATS and, where it applies other
// nodes' approvals, done replaying them.
const fleetReadyLimit = 20 * time.Second

// confirmTimeout is fleet.confirm_timeout in these tests: with confirm,
// an answer waits at most this long for the named nodes to apply it.
const confirmTimeout = 2 * time.Second

// metricsAddr is where every egressd of these tests serves /readyz and
// /metrics, inside its own namespace.
const metricsAddr = "127.0.0.1:9153"

// httpGet fetches path from addr over a socket opened inside ns (net/http
// would dial from another thread) and returns the status code and body.
func httpGet(ns *netns, addr, path string) (int, string, error) {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, time.Second)
		return err
	}); err != nil {
		return 0, "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return 0, "", err
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		return 0, "", err
	}
	r := bufio.NewReader(c)
	var proto string
	var code int
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, "", err
	}
	if _, err := fmt.Sscanf(line, "%s %d", &proto, &code); err != nil {
		return 0, "", fmt.Errorf("status line %q: %w", line, err)
	}
	body, err := io.ReadAll(r)
	return code, string(body), err
}

// waitReady polls the process's /readyz until it answers 200. It fails
// the test when egressd exits or fleetReadyLimit passes.
func (p *egressdProc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(fleetReadyLimit)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("egressd in %s exited before it was ready: %v", p.ns.Name, p.waitErr)
		default:
		}
		code, body, err := httpGet(p.ns, metricsAddr, "/readyz")
		if err == nil && code == 200 {
			return
		}
		last = fmt.Sprintf("%d %q %v", code, strings.TrimSpace(body), err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("egressd in %s not ready within %s; last /readyz: %s", p.ns.Name, fleetReadyLimit, last)
}

// hasElement reports whether the namespace's table holds addr in the
// set named set.
func hasElement(t *testing.T, ns *netns, set, addr string) bool {
	t.Helper()
	out, err := ns.Exec("nft", "list", "set", "inet", tableName, set)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(out, addr)
}

// TestFleetGatewayPair runs two gateways, A and B, on one LAN, each
// resolving for the client and applying the other's approvals (a node
// with both roles), with one NATS server on the LAN:
//
//	              ┌─ gw-a 10.200.1.1 ── 10.200.2.0/24 ─┐
//	client 10.200.1.10 ─ lan (bridge, NATS 10.200.1.4)   inet (hosts 10.200.10.0/24)
//	              └─ gw-b 10.200.1.2 ── 10.200.5.0/24 ─┘
//
// The client resolves through A; then its route (and the way back) moves
// to B, as it would when a VIP moves. Its next connection to the address
// A approved passes through B without a new query; an address nobody
// approved is dropped at B. With confirm, each gateway confirms with the
// other (fleet.confirm), so when A answers, B holds the element. Without
// it (the default), A answers once JetStream has stored the approval, and
// the test waits for B's element before moving the route: nothing bounds
// that but delivery, so the wait is the readiness limit, and a failure
// means it never arrived.
func TestFleetGatewayPair(t *testing.T) {
	t.Parallel()
	requireNetns(t)
	for _, tc := range []struct {
		name    string
		confirm bool
	}{
		{"each confirms with the other", true},
		{"default: stored in JetStream before the answer", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testGatewayPair(t, tc.confirm)
		})
	}
}

func testGatewayPair(t *testing.T, confirm bool) {
	id := netnstest.RandomID()
	lan := newNetns(t, id, "lan")
	client := newNetns(t, id, "client")
	gwA := newNetns(t, id, "gwa")
	gwB := newNetns(t, id, "gwb")
	inet := newNetns(t, id, "inet")

	lan.mustIP(t, "link", "add", "br0", "type", "bridge")
	lan.mustIP(t, "link", "set", "br0", "up")
	for _, port := range []struct {
		ns        *netns
		name, dev string
	}{{client, "p-client", "eth0"}, {gwA, "p-gwa", "lan0"}, {gwB, "p-gwb", "lan0"}} {
		veth(t, lan, port.name, port.ns, port.dev)
		lan.mustIP(t, "link", "set", port.name, "master", "br0")
	}
	addrs(t, lan, "br0", "10.200.1.4/24")
	addrs(t, client, "eth0", "10.200.1.10/24")
	addrs(t, gwA, "lan0", "10.200.1.1/24")
	addrs(t, gwB, "lan0", "10.200.1.2/24")
	veth(t, gwA, "to-inet", inet, "eth0")
	veth(t, gwB, "to-inet", inet, "eth1")
	addrs(t, gwA, "to-inet", "10.200.2.1/24")
	addrs(t, inet, "eth0", "10.200.2.2/24")
	addrs(t, gwB, "to-inet", "10.200.5.1/24")
	addrs(t, inet, "eth1", "10.200.5.2/24")
	gwA.mustIP(t, "route", "add", hostsRange4.String(), "via", "10.200.2.2")
	gwB.mustIP(t, "route", "add", hostsRange4.String(), "via", "10.200.5.2")
	gwB.mustIP(t, "route", "add", resolverAddr4.String()+"/32", "via", "10.200.5.2")
	for _, gw := range []*netns{gwA, gwB} {
		gw.mustSysctl(t, "net.ipv4.ip_forward=1")
	}
	addHosts(t, inet)
	upstream := startInternet(t, inet)

	// routeVia points the client's default route at a gateway, and the
	// internet's way back through the same one.
	routeVia := func(lanAddr, wanAddr string) {
		t.Helper()
		client.mustIP(t, "route", "replace", "default", "via", lanAddr)
		inet.mustIP(t, "route", "replace", "10.200.1.0/24", "via", wanAddr)
	}
	// Both ways are open before egressd runs, so drops are egressd's.
	routeVia("10.200.1.2", "10.200.5.1")
	requireOpenPath(t, client, ap(unresolvedIP, 80))
	routeVia("10.200.1.1", "10.200.2.1")
	requireOpenPath(t, client, ap(unresolvedIP, 80))

	nats := natsproc.Run(t, lan.Namespace, "10.200.1.4")
	gateway := func(node, peer, listen string) egressdConfig {
		var confirmNodes []string
		if confirm {
			confirmNodes = []string{peer}
		}
		return egressdConfig{
			Listen:        []netip.AddrPort{netip.MustParseAddrPort(listen)},
			Clients:       []string{"10.200.1.0/24"},
			Upstream:      ap(resolverAddr4, 53),
			Hooks:         []string{"forward"},
			MetricsListen: metricsAddr,
			Fleet: &fleetConfig{
				Servers: []string{nats.Node.URL()}, Node: node,
				Publish: []string{"clients"}, Enforce: []string{"clients"},
				Confirm: confirmNodes, ConfirmTimeout: confirmTimeout.String(),
			},
		}
	}
	dnsA, dnsB := netip.MustParseAddrPort("10.200.1.1:53"), netip.MustParseAddrPort("10.200.1.2:53")
	a := startEgressd(t, gwA, gateway("gw-a", "gw-b", dnsA.String()), client, dnsA)
	b := startEgressd(t, gwB, gateway("gw-b", "gw-a", dnsB.String()), client, dnsB)
	a.waitReady(t)
	b.waitReady(t)

	resolve(t, client, dnsA, "allowed.test", dns.TypeA, allowedIP)
	expectReach(t, client, ap(allowedIP, 80), "allowed.test resolved through gw-a")
	expectDropped(t, client, ap(unresolvedIP, 80), "through gw-a, never approved")
	switch {
	case confirm && !hasElement(t, gwB, "g_clients_d4", allowedIP.String()):
		t.Errorf("gw-a answered allowed.test, which gw-b was to confirm, but gw-b's set lacks %s", allowedIP)
	case !confirm && !wait.Until(fleetReadyLimit, 10*time.Millisecond, func() bool {
		return hasElement(t, gwB, "g_clients_d4", allowedIP.String())
	}):
		t.Errorf("gw-a's approval of %s never reached gw-b's set", allowedIP)
	}

	// The route moves; gw-a stops forwarding, so whatever still reaches
	// the internet went through gw-b.
	gwA.mustSysctl(t, "net.ipv4.ip_forward=0")
	routeVia("10.200.1.2", "10.200.5.1")
	expectReach(t, client, ap(allowedIP, 443), "allowed.test approved by gw-a, next connection through gw-b")
	expectDropped(t, client, ap(unresolvedIP, 80), "through gw-b, never approved")
	if n := upstream.asked("allowed.test"); n != 1 {
		t.Errorf("the upstream was asked for allowed.test %d times, want 1 (gw-a only)", n)
	}
	if strings.Contains(b.stdout.String(), "allowed.test") {
		t.Errorf("gw-b logged a query for allowed.test; the client was not to ask again:\n%s", b.stdout.String())
	}
}

// TestFleetResolverAndAgents runs one central resolver and two enforcer
// agents (`egressd agent`) at the edges, with NATS beside the resolver:
//
//	c1 10.200.1.10 ── edge1 (agent) ─┐
//	                                 inet (router, hosts) ── core 10.200.6.53 (resolver, NATS)
//	c2 10.200.3.10 ── edge2 (agent) ─┘
//
// The resolver confirms with both agents, so each answer is enforced at
// both edges before it leaves. Each client reaches what the resolver
// approved for the group and nothing else. Then edge2's agent stops
// (removing its table), an approval is made without it (fail_open: the
// answer comes after confirm_timeout), and the restarted agent holds
// every live approval by the time /readyz says ready.
func TestFleetResolverAndAgents(t *testing.T) {
	t.Parallel()
	requireNetns(t)
	id := netnstest.RandomID()
	c1, c2 := newNetns(t, id, "c1"), newNetns(t, id, "c2")
	edge1, edge2 := newNetns(t, id, "edge1"), newNetns(t, id, "edge2")
	inet, core := newNetns(t, id, "inet"), newNetns(t, id, "core")

	veth(t, edge1, "to-c", c1, "eth0")
	veth(t, edge1, "to-inet", inet, "e1")
	veth(t, edge2, "to-c", c2, "eth0")
	veth(t, edge2, "to-inet", inet, "e2")
	veth(t, core, "eth0", inet, "core")
	addrs(t, c1, "eth0", "10.200.1.10/24")
	addrs(t, edge1, "to-c", "10.200.1.1/24")
	addrs(t, edge1, "to-inet", "10.200.2.1/24")
	addrs(t, inet, "e1", "10.200.2.2/24")
	addrs(t, c2, "eth0", "10.200.3.10/24")
	addrs(t, edge2, "to-c", "10.200.3.1/24")
	addrs(t, edge2, "to-inet", "10.200.4.1/24")
	addrs(t, inet, "e2", "10.200.4.2/24")
	addrs(t, core, "eth0", "10.200.6.53/24")
	addrs(t, inet, "core", "10.200.6.2/24")
	c1.mustIP(t, "route", "add", "default", "via", "10.200.1.1")
	c2.mustIP(t, "route", "add", "default", "via", "10.200.3.1")
	edge1.mustIP(t, "route", "add", "default", "via", "10.200.2.2")
	edge2.mustIP(t, "route", "add", "default", "via", "10.200.4.2")
	core.mustIP(t, "route", "add", "default", "via", "10.200.6.2")
	inet.mustIP(t, "route", "add", "10.200.1.0/24", "via", "10.200.2.1")
	inet.mustIP(t, "route", "add", "10.200.3.0/24", "via", "10.200.4.1")
	for _, ns := range []*netns{edge1, edge2, inet} {
		ns.mustSysctl(t, "net.ipv4.ip_forward=1")
	}
	addHosts(t, inet)
	startInternet(t, inet)
	for _, c := range []*netns{c1, c2} {
		requireOpenPath(t, c, ap(unresolvedIP, 80))
		requireOpenResolver(t, c, ap(resolverAddr4, 53))
	}

	nats := natsproc.Run(t, core.Namespace, "10.200.6.53")
	central := netip.MustParseAddrPort("10.200.6.53:53")
	clients := []string{"10.200.1.0/24", "10.200.3.0/24"}
	resolverCfg := egressdConfig{
		Listen: []netip.AddrPort{central}, Clients: clients,
		Upstream: ap(resolverAddr4, 53), Hooks: []string{"forward"}, MetricsListen: metricsAddr,
		FailOpen: true,
		Fleet: &fleetConfig{
			Servers: []string{nats.Node.URL()}, Node: "resolver", Publish: []string{"clients"},
			Confirm: []string{"edge1", "edge2"}, ConfirmTimeout: confirmTimeout.String(),
		},
	}
	// An agent has the same groups and policy (it checks each approval
	// against them) and names the central resolver as the clients' DNS
	// server, which its table lets through.
	// Each agent explains its drops (drop_events "nflog") in its query log
	// and to egressd why, from the approvals it applied.
	logDir := t.TempDir()
	agentCfg := func(node string) egressdConfig {
		return egressdConfig{
			Listen: []netip.AddrPort{central}, Clients: clients,
			Upstream: ap(resolverAddr4, 53), Hooks: []string{"forward"}, MetricsListen: metricsAddr,
			RemoveOnExit: true, DropEvents: "nflog", QueryLog: filepath.Join(logDir, node+".log"),
			Fleet: &fleetConfig{Servers: []string{nats.Node.URL()}, Node: node, Enforce: []string{"clients"}},
		}
	}
	res := startEgressd(t, core, resolverCfg, core, central)
	res.waitReady(t)
	agent1 := launch(t, edge1, agentCfg("edge1"), "agent")
	agent2 := launch(t, edge2, agentCfg("edge2"), "agent")
	agent1.waitReady(t)
	agent2.waitReady(t)

	t.Run("each client reaches what the resolver approved", func(t *testing.T) {
		resolve(t, c1, central, "allowed.test", dns.TypeA, allowedIP)
		expectReach(t, c1, ap(allowedIP, 80), "c1 resolved allowed.test")
		expectReach(t, c2, ap(allowedIP, 80), "c1 resolved allowed.test for the group; edge2 confirmed before the answer")
		resolve(t, c2, central, "ports.test", dns.TypeA, portsIP)
		expectReach(t, c1, ap(portsIP, 443), "ports.test:443 resolved by c2")
		expectReach(t, c2, ap(portsIP, 443), "ports.test:443 resolved by c2")
	})
	t.Run("and nothing else", func(t *testing.T) {
		for _, c := range []*netns{c1, c2} {
			expectDropped(t, c, ap(portsIP, 8443), "rule ports.test:443 does not cover 8443")
			expectDropped(t, c, ap(unresolvedIP, 80), "no name resolved to this address")
			expectDNSDropped(t, c, ap(resolverAddr4, 53), "udp", "the clients' resolver is the central one")
		}
		expectNoAnswer(t, c1, central, "udp", "denied.test", dns.RcodeNameError, "denied.test")
		expectDropped(t, c1, ap(deniedIP, 80), "denied.test was refused")
	})
	t.Run("an agent explains its drops", func(t *testing.T) {
		expectDropLine(t, filepath.Join(logDir, "edge1.log"), "10.200.1.10", portsIP, 8443, "other_ports", "ports.test")
		expectDropLine(t, filepath.Join(logDir, "edge2.log"), "10.200.3.10", unresolvedIP, 80, "never_resolved", "")
		out, err := edge1.Exec(egressdBinary(t), "why", "-config", agent1.config, "-client", "10.200.1.10", ap(portsIP, 8443).String())
		if err != nil {
			t.Fatalf("egressd why on edge1: %v\n%s", err, out)
		}
		for _, want := range []string{"other_ports", "ports.test. is approved only on 443/tcp"} {
			if !strings.Contains(out, want) {
				t.Errorf("egressd why on edge1 lacks %q:\n%s", want, out)
			}
		}
	})
	if t.Failed() {
		return
	}

	top := t // the restarted agent lives as long as the whole test
	t.Run("a restarted agent replays before it is ready", func(t *testing.T) {
		if err := agent2.stop(); err != nil {
			t.Fatalf("agent edge2 exit after SIGTERM: %v", err)
		}
		if out, err := edge2.Exec("nft", "list", "tables"); err != nil || strings.Contains(out, tableName) {
			t.Fatalf("edge2's table after its agent stopped with remove_on_exit: %q %v", out, err)
		}
		// edge2 cannot confirm: the answer waits for confirm_timeout, then
		// comes anyway (fail_open).
		asked := time.Now()
		resp, err := queryWithin(c1, central, "udp", bulkName(1), dns.TypeA, confirmTimeout+dnsTimeout)
		if err != nil || resp.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s while edge2 is down (fail_open): %v %s", bulkName(1), err, describe(resp))
		}
		requireAddrs(t, bulkName(1), answerAddrs(resp), bulkIP(1))
		if waited := time.Since(asked); waited < confirmTimeout {
			t.Errorf("answer without edge2's confirmation came after %s, before confirm_timeout %s", waited, confirmTimeout)
		}
		expectReach(t, c1, ap(bulkIP(1), 443), "edge1 confirmed "+bulkName(1))

		agent2 = launch(top, edge2, agentCfg("edge2"), "agent")
		agent2.waitReady(t)
		expectReach(t, c2, ap(bulkIP(1), 443), bulkName(1)+" approved while edge2's agent was down, replayed before ready")
		expectReach(t, c2, ap(allowedIP, 80), "allowed.test approved before the restart, replayed")
		expectReach(t, c2, ap(portsIP, 443), "ports.test:443 approved before the restart, replayed")
		expectDropped(t, c2, ap(portsIP, 8443), "replay keeps the port scope")
		expectDropped(t, c2, ap(unresolvedIP, 80), "after the restart, no name resolved to this address")
	})
	if t.Failed() {
		return
	}

	t.Run("NATS down: edges keep what they hold, and catch up when it is back", func(t *testing.T) {
		nats.Kill()
		expectReach(t, c2, ap(allowedIP, 80), "approved before NATS went down; edge2 keeps it")
		// The resolver still answers: its publish is queued, no edge can
		// confirm, and fail_open lets the answer out after confirm_timeout.
		resp, err := queryWithin(c1, central, "udp", bulkName(2), dns.TypeA, confirmTimeout+fleetPublishTimeout+dnsTimeout)
		if err != nil || resp.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s while NATS is down (fail_open): %v %s", bulkName(2), err, describe(resp))
		}
		expectDropped(t, c1, ap(bulkIP(2), 443), "edge1 cannot hear of "+bulkName(2)+" while NATS is down: closed")

		if err := nats.Restart(); err != nil {
			t.Fatal(err)
		}
		if err := nats.Ready(natsproc.ReadyLimit); err != nil {
			t.Fatal(err)
		}
		// The resolver publishes its queue on reconnect; the edges apply
		// it. Nothing bounds that but reconnecting, so the wait is the
		// readiness limit: a failure means it never arrived.
		for _, c := range []*netns{c1, c2} {
			var err error
			if !wait.Until(fleetReadyLimit, 100*time.Millisecond, func() bool {
				err = connect(c, ap(bulkIP(2), 443))
				return err == nil
			}) {
				t.Errorf("%s, queued while NATS was down, never reached %s's edge: %v", bulkName(2), c.Name, err)
			}
		}
		expectDropped(t, c2, ap(unresolvedIP, 80), "after NATS is back, no name resolved to this address")
	})
	if t.Failed() {
		return
	}

	t.Run("a resolver restarted with approvals queued publishes what its table kept", func(t *testing.T) {
		nats.Kill()
		for _, n := range []int{3, 4} {
			resp, err := queryWithin(c1, central, "udp", bulkName(n), dns.TypeA, confirmTimeout+fleetPublishTimeout+dnsTimeout)
			if err != nil || resp.Rcode != dns.RcodeSuccess {
				t.Fatalf("%s while NATS is down (fail_open): %v %s", bulkName(n), err, describe(resp))
			}
		}
		// The queue goes with the process; the table (no remove_on_exit)
		// stays with both elements.
		if err := res.stop(); err != nil {
			t.Fatalf("resolver exit after SIGTERM: %v", err)
		}
		for _, n := range []int{3, 4} {
			if !hasElement(t, core, "g_clients_p4", bulkIP(n).String()) && !hasElement(t, core, "g_clients_d4", bulkIP(n).String()) {
				t.Fatalf("%s: not in the resolver's table after it stopped", bulkIP(n))
			}
		}
		if err := nats.Restart(); err != nil {
			t.Fatal(err)
		}
		if err := nats.Ready(natsproc.ReadyLimit); err != nil {
			t.Fatal(err)
		}
		// Restarted with a policy that now denies one of the two: only
		// the other is published again.
		cfg := resolverCfg
		cfg.Deny = append(slices.Clone(denyRules), bulkName(4))
		res = startEgressd(top, core, cfg, core, central)
		res.waitReady(t)
		// Nothing bounds delivery but reconnecting: the wait is the
		// readiness limit, and a failure means it never arrived.
		for _, c := range []*netns{c1, c2} {
			var err error
			if !wait.Until(fleetReadyLimit, 100*time.Millisecond, func() bool {
				err = connect(c, ap(bulkIP(3), 443))
				return err == nil
			}) {
				t.Errorf("%s, queued when the resolver stopped, never reached %s's edge without a new query: %v", bulkName(3), c.Name, err)
			}
		}
		expectDropped(t, c2, ap(bulkIP(4), 443), bulkName(4)+" kept in the resolver's table but denied by the policy it restarted with")
	})
}

// fleetPublishTimeout is the default fleet.publish_timeout: how long an
// answer waits for JetStream to store its approval before it is queued.
const fleetPublishTimeout = 500 * time.Millisecond
