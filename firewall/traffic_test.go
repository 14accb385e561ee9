package firewall

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/policy"
)

// markedDialer dials with SO_MARK set on the socket when mark is not zero.
func markedDialer(timeout time.Duration, mark uint32) net.Dialer {
	d := net.Dialer{Timeout: timeout}
	if mark == 0 {
		return d
	}
	d.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		return serr
	}
	return d
}

// dialFrom tries a TCP connect from inside a namespace, with SO_MARK set
// when mark is not zero.
func dialFrom(t *testing.T, ns *testNS, addr string, mark uint32) error {
	t.Helper()
	return ns.Do(func() error {
		d := markedDialer(300*time.Millisecond, mark)
		c, err := d.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// TestTrafficReachesOnlyAllowedDestinations joins a client and a server
// namespace with a veth pair, enforces the output hook on the client side
// and shows that only allowed destinations (and ports) can be connected to,
// that DNS goes to egressd only, and that marked upstream traffic passes.
func TestTrafficReachesOnlyAllowedDestinations(t *testing.T) {
	client, _ := linkedPair(t, "8080", "9050", "53")

	const mark = 0x2a
	spec := Spec{Table: "egressd", Hooks: []string{HookOutput}, Grace: 5 * time.Second, Mark: mark,
		// B plays egressd's listen address: DNS to it must pass.
		DNS:    addrPorts("10.98.0.3:53"),
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.98.0.0/24")}}}
	n := startNFT(t, client, spec, nil)

	if err := dialFrom(t, client, "10.98.0.2:8080", 0); !isTimeout(err) {
		t.Fatalf("before Allow, connect to A: %v, want timeout", err)
	}
	ctx := context.Background()
	if err := n.Allow(ctx, Allowance{Group: "clients", IPs: addrs("10.98.0.2"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := n.Allow(ctx, Allowance{Group: "clients", IPs: addrs("10.98.0.3"), TTL: time.Minute,
		Ports: []policy.PortRange{{Proto: policy.ProtoTCP, From: 9000, To: 9100}}}); err != nil {
		t.Fatal(err)
	}
	type dialCase struct {
		name   string
		addr   string
		mark   uint32
		passes bool
	}
	check := func(cases ...dialCase) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { expectMarkedDial(t, client, tc.addr, tc.mark, tc.passes) })
		}
	}
	check(
		dialCase{"allowed destination, any port", "10.98.0.2:8080", 0, true},
		dialCase{"allowed destination, port outside its allowance", "10.98.0.3:8080", 0, false},
		dialCase{"allowed destination, port inside its allowance", "10.98.0.3:9050", 0, true},
		dialCase{"DNS to an allowed destination is a bypass", "10.98.0.2:53", 0, false},
		dialCase{"DNS to egressd itself", "10.98.0.3:53", 0, true},
		dialCase{"egressd's own marked upstream traffic", "10.98.0.3:8080", mark, true},
		dialCase{"a different mark", "10.98.0.3:8080", mark + 1, false},
	)

	// Audit mode logs instead of dropping: everything connects.
	spec.Audit = true
	if err := n.Reload(spec); err != nil {
		t.Fatal(err)
	}
	check(
		dialCase{"audit mode, unallowed port", "10.98.0.3:8080", 0, true},
		dialCase{"audit mode, DNS bypass", "10.98.0.2:53", 0, true},
	)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
