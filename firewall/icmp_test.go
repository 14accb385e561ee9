package firewall

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestICMPv6NeverDropped: a grouped host answers neighbour solicitations
// from a global address nobody approved (the advertisement goes to that
// address, untracked by conntrack); without the answer the peer cannot
// reach the host at all.
func TestICMPv6NeverDropped(t *testing.T) {
	client, server := linkedPair(t, "8080")
	client.exec(t, "ip", "addr", "add", "fd00:98::1/64", "dev", "c0", "nodad")
	server.exec(t, "ip", "addr", "add", "fd00:98::2/64", "dev", "s0", "nodad")
	server.exec(t, "ip", "addr", "add", "fd00:98::3/64", "dev", "s0", "nodad")
	acceptAndClose(t, client, "tcp6", "[fd00:98::1]:7000")
	spec := Spec{Table: "egressd", Hooks: []string{HookOutput}, Grace: 5 * time.Second,
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.98.0.0/24", "fd00:98::/64")}}}
	startNFT(t, client, spec, nil)

	// Each source address makes the server solicit the client afresh.
	for _, from := range []string{"fd00:98::2", "fd00:98::3"} {
		err := server.Do(func() error {
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
			c, err := d.Dial("tcp6", "[fd00:98::1]:7000")
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			t.Errorf("server from %s cannot reach the grouped host: %v", from, err)
		}
	}
}

// TestICMPErrorsOfTrackedFlowsPass: an ICMP error a grouped client sends
// about a flow conntrack knows (here port unreachable for an inbound
// datagram; packet too big is handled alike) is `related` and passes the
// forward hook, though its destination was never approved. The flow is
// one the server opened, so this needs inbound flows accepted (and the
// server, in no group, let through); by default the client's error is
// judged like its other packets in that flow
// (TestInboundConnectionsToGroupedClients).
func TestICMPErrorsOfTrackedFlowsPass(t *testing.T) {
	client, gw, server := gatewayTopology(t, "8080")
	spec := Spec{Table: "egressd", Hooks: []string{HookForward}, Grace: 5 * time.Second,
		AcceptInbound: true, AcceptUnlisted: true,
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.97.0.0/24")}}}
	startNFT(t, gw, spec, nil)
	expectDial(t, client, "10.98.0.2:8080", false) // enforcement is on

	// The server sends to a client port nobody listens on; the client's
	// port unreachable comes back as a refused read on a connected socket.
	err := server.Do(func() error {
		c, err := net.Dial("udp4", "10.97.0.1:9")
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		for range 3 {
			if _, err := c.Write([]byte("x")); err != nil {
				return err
			}
			if _, err = c.Read(make([]byte, 1)); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("read after sending to a closed client port: %v, want connection refused (the ICMP error passed)", err)
	}
}
