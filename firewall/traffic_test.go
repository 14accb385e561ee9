package firewall

import (
	"context"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/policy"
)

// inNetNS runs fn on a fresh OS thread switched into the namespace. The
// thread stays locked and is discarded when the goroutine ends, so no
// goroutine ever runs on it in the wrong namespace. Sockets fn creates keep
// belonging to the namespace and may be used from anywhere afterwards.
func inNetNS(fd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the runtime terminates the thread on exit.
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// dialFrom tries a TCP connect from inside a namespace.
func dialFrom(t *testing.T, ns *testNS, addr string) error {
	t.Helper()
	return inNetNS(ns.fd, func() error {
		d := net.Dialer{Timeout: 300 * time.Millisecond}
		c, err := d.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// TestTrafficReachesOnlyAllowedDestinations joins a client and a server
// namespace with a veth pair, enforces the output hook on the client side
// and shows that only allowed destinations (and ports) can be connected to.
func TestTrafficReachesOnlyAllowedDestinations(t *testing.T) {
	client, server := newTestNS(t), newTestNS(t)
	client.exec(t, "ip", "link", "add", "c0", "type", "veth", "peer", "name", "s0", "netns", server.name)
	client.exec(t, "ip", "addr", "add", "10.99.0.1/24", "dev", "c0")
	client.exec(t, "ip", "link", "set", "c0", "up")
	server.exec(t, "ip", "addr", "add", "10.99.0.2/24", "dev", "s0")
	server.exec(t, "ip", "addr", "add", "10.99.0.3/24", "dev", "s0")
	server.exec(t, "ip", "link", "set", "s0", "up")

	for _, port := range []string{"8080", "9050"} {
		var ln net.Listener
		err := inNetNS(server.fd, func() (err error) {
			ln, err = net.Listen("tcp4", "0.0.0.0:"+port)
			return err
		})
		if err != nil {
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
	// The path works before any firewall (the server may need a moment).
	deadline := time.Now().Add(3 * time.Second)
	for dialFrom(t, client, "10.99.0.3:8080") != nil {
		if time.Now().After(deadline) {
			t.Fatal("no connectivity between namespaces without a firewall")
		}
		time.Sleep(50 * time.Millisecond)
	}

	spec := Spec{Table: "egressd", Hooks: []string{HookOutput}, Grace: 5 * time.Second,
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.99.0.0/24")}}}
	n := startNFT(t, client, spec, nil)

	isTimeout := func(err error) bool {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}
	if err := dialFrom(t, client, "10.99.0.2:8080"); !isTimeout(err) {
		t.Fatalf("before Allow, connect to A: %v, want timeout", err)
	}
	ctx := context.Background()
	if err := n.Allow(ctx, Allowance{Group: "clients", IPs: addrs("10.99.0.2"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := n.Allow(ctx, Allowance{Group: "clients", IPs: addrs("10.99.0.3"), TTL: time.Minute,
		Ports: []policy.PortRange{{Proto: policy.ProtoTCP, From: 9000, To: 9100}}}); err != nil {
		t.Fatal(err)
	}
	if err := dialFrom(t, client, "10.99.0.2:8080"); err != nil {
		t.Errorf("after Allow, connect to A: %v, want success", err)
	}
	if err := dialFrom(t, client, "10.99.0.3:8080"); !isTimeout(err) {
		t.Errorf("connect to B on a port outside its allowance: %v, want timeout", err)
	}
	if err := dialFrom(t, client, "10.99.0.3:9050"); err != nil {
		t.Errorf("connect to B inside its port allowance: %v, want success", err)
	}
}
