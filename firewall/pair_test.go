package firewall

import (
	"net"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/wait"
)

// linkedPair joins a new client namespace (10.98.0.1) and server namespace
// (10.98.0.2 and 10.98.0.3) with a veth pair; the server accepts and closes
// TCP connections on every given port of both addresses, and both are
// reachable on the first port before the pair is returned.
func linkedPair(t *testing.T, ports ...string) (client, server *testNS) {
	t.Helper()
	client, server = newTestNS(t), newTestNS(t)
	client.exec(t, "ip", "link", "add", "c0", "type", "veth", "peer", "name", "s0", "netns", server.name)
	client.exec(t, "ip", "addr", "add", "10.98.0.1/24", "dev", "c0")
	client.exec(t, "ip", "link", "set", "c0", "up")
	for _, a := range []string{"10.98.0.2/24", "10.98.0.3/24"} {
		server.exec(t, "ip", "addr", "add", a, "dev", "s0")
	}
	server.exec(t, "ip", "link", "set", "s0", "up")
	for _, port := range ports {
		acceptAndClose(t, server, "tcp4", "0.0.0.0:"+port)
	}
	// The path works before any firewall (the link may need a moment).
	for _, dst := range []string{"10.98.0.2", "10.98.0.3"} {
		waitDial(t, client, dst+":"+ports[0])
	}
	return client, server
}

// acceptAndClose listens on addr inside ns and closes every connection it
// accepts, until the test ends.
func acceptAndClose(t *testing.T, ns *testNS, network, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// waitDial waits until addr is reachable from ns (before any filtering).
func waitDial(t *testing.T, ns *testNS, addr string) {
	t.Helper()
	var err error
	// Setup, not egressd: the first neighbour discovery of a fresh link can
	// fail (3 probes, 1 s apart) and must be tried again, which on a busy
	// machine takes more than 3 s.
	if !wait.Until(10*time.Second, 50*time.Millisecond, func() bool {
		err = dialFrom(t, ns, addr, 0)
		return err == nil
	}) {
		t.Fatalf("%s unreachable without egressd: %v", addr, err)
	}
}

// expectDial asserts that a TCP connect from ns to addr succeeds (passes)
// or times out, i.e. is dropped.
func expectDial(t *testing.T, ns *testNS, addr string, passes bool) {
	t.Helper()
	expectMarkedDial(t, ns, addr, 0, passes)
}

// expectMarkedDial is expectDial from a socket with SO_MARK set to mark
// (none when 0).
func expectMarkedDial(t *testing.T, ns *testNS, addr string, mark uint32, passes bool) {
	t.Helper()
	err := dialFrom(t, ns, addr, mark)
	switch {
	case passes && err != nil:
		t.Errorf("connect to %s: %v, want success", addr, err)
	case !passes && !isTimeout(err):
		t.Errorf("connect to %s: %v, want timeout (dropped)", addr, err)
	}
}

// gatewayTopology puts a gateway namespace between a client (10.97.0.1,
// default route via the gateway) and the server of linkedPair (10.98.0.2
// and .3, default route via the gateway); the gateway forwards IPv4.
func gatewayTopology(t *testing.T, ports ...string) (client, gw, server *testNS) {
	t.Helper()
	gw, server = linkedPair(t, ports...)
	client = newTestNS(t)
	gw.exec(t, "ip", "addr", "add", "10.98.0.254/24", "dev", "c0")
	server.exec(t, "ip", "route", "add", "default", "via", "10.98.0.254")
	gw.exec(t, "ip", "link", "add", "g1", "type", "veth", "peer", "name", "k0", "netns", client.name)
	gw.exec(t, "ip", "addr", "add", "10.97.0.254/24", "dev", "g1")
	gw.exec(t, "ip", "link", "set", "g1", "up")
	gw.exec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	client.exec(t, "ip", "addr", "add", "10.97.0.1/24", "dev", "k0")
	client.exec(t, "ip", "link", "set", "k0", "up")
	client.exec(t, "ip", "route", "add", "default", "via", "10.97.0.254")
	return client, gw, server
}
