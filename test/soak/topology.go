package main

import (
	"fmt"
	"net/netip"

	"github.com/egressd/egressd/internal/freeport"
	"github.com/egressd/egressd/internal/netnstest"
)

// topology says where everything runs and which addresses it uses.
//
// Namespace mode (root):
//
//	client 10.201.1.10 ── 10.201.1.1 gateway (egressd, forward hook) 10.201.2.1 ── internet 10.201.2.2, 10.201.2.3 (upstreams)
//
// Loopback mode: everything in the soak's own namespace on 127.0.0.1
// with free ports, and egressd's firewall backend "none".
type topology struct {
	namespaces bool
	client     netnstest.Namespace
	gateway    netnstest.Namespace
	internet   netnstest.Namespace
	dns        netip.AddrPort        // egressd as the client reaches it
	upstreams  []netip.AddrPort      // primary (flaps) first, then the stable one
	metrics    netip.AddrPort        // inside the gateway namespace
	clientNets []string              // server.clients and the group's clients
	created    []netnstest.Namespace // deleted at teardown, last first
}

// buildNamespaces creates the three namespaces and their links. On error
// the namespaces already made are in t.created for teardown.
func buildNamespaces(id string) (*topology, error) {
	t := &topology{
		namespaces: true,
		dns:        netip.MustParseAddrPort("10.201.1.1:53"),
		upstreams:  []netip.AddrPort{netip.MustParseAddrPort("10.201.2.2:53"), netip.MustParseAddrPort("10.201.2.3:53")},
		metrics:    netip.MustParseAddrPort("127.0.0.1:9153"),
		clientNets: []string{"10.201.1.0/24"},
	}
	for _, role := range []struct {
		dst  *netnstest.Namespace
		name string
	}{{&t.client, "client"}, {&t.gateway, "gw"}, {&t.internet, "inet"}} {
		ns, err := netnstest.Create(fmt.Sprintf("soak-%s-%s", id, role.name))
		if ns.Name != "" {
			t.created = append(t.created, ns)
		}
		if err != nil {
			return t, err
		}
		*role.dst = ns
	}
	steps := []func() error{
		func() error { return netnstest.Veth(t.gateway, "to-client", t.client, "eth0") },
		func() error { return netnstest.Veth(t.gateway, "to-inet", t.internet, "eth0") },
		func() error { return t.client.AddAddrs("eth0", "10.201.1.10/24") },
		func() error { return t.gateway.AddAddrs("to-client", "10.201.1.1/24") },
		func() error { return t.gateway.AddAddrs("to-inet", "10.201.2.1/24") },
		func() error { return t.internet.AddAddrs("eth0", "10.201.2.2/24", "10.201.2.3/24") },
		func() error { _, err := t.client.IP("route", "add", "default", "via", "10.201.1.1"); return err },
		func() error {
			_, err := t.internet.IP("route", "add", "10.201.1.0/24", "via", "10.201.2.1")
			return err
		},
		func() error { _, err := t.gateway.Exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return t, err
		}
	}
	return t, nil
}

// buildLoopback picks free loopback ports for egressd, its metrics and
// the two upstreams.
func buildLoopback() (*topology, error) {
	ports, err := freeport.Loopback(4)
	if err != nil {
		return nil, err
	}
	lo := netip.MustParseAddr("127.0.0.1")
	return &topology{
		dns:        netip.AddrPortFrom(lo, ports[0]),
		upstreams:  []netip.AddrPort{netip.AddrPortFrom(lo, ports[1]), netip.AddrPortFrom(lo, ports[2])},
		metrics:    netip.AddrPortFrom(lo, ports[3]),
		clientNets: []string{"127.0.0.0/8"},
	}, nil
}

// teardown deletes every namespace created, last first, and returns the
// errors met.
func (t *topology) teardown() []error {
	var errs []error
	for i := len(t.created) - 1; i >= 0; i-- {
		if err := t.created[i].Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	t.created = nil
	return errs
}
