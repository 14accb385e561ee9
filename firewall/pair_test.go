package firewall

import (
	"net"
	"os"
	"testing"
	"time"
)

// linkedPair joins a new client namespace (10.98.0.1) and server namespace
// (10.98.0.2 and 10.98.0.3) with a veth pair; the server accepts and closes
// TCP connections on every given port of both addresses.
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
		var ln net.Listener
		if err := inNetNS(server.fd, func() (err error) {
			ln, err = net.Listen("tcp4", "0.0.0.0:"+port)
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
	// The path works before any firewall (the link may need a moment).
	deadline := time.Now().Add(3 * time.Second)
	for dialFrom(t, client, "10.98.0.2:"+ports[0], 0) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no connectivity between namespaces without a firewall")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return client, server
}

// expectDial asserts that a TCP connect from ns to addr succeeds (passes)
// or times out, i.e. is dropped.
func expectDial(t *testing.T, ns *testNS, addr string, passes bool) {
	t.Helper()
	err := dialFrom(t, ns, addr, 0)
	switch {
	case passes && err != nil:
		t.Errorf("connect to %s: %v, want success", addr, err)
	case !passes && !isTimeout(err):
		t.Errorf("connect to %s: %v, want timeout (dropped)", addr, err)
	}
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o600)
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
