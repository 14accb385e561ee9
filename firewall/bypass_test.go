package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Ways around the table a client might try, each tried for real between
// namespaces: a forged socket mark, link-local destinations, answering a
// connection opened from outside, sources in no group.

// markHelperEnv makes the test binary, run as another user, dial the
// address it names with SO_MARK set (see TestMarkHelperProcess).
const markHelperEnv = "EGRESSD_TEST_MARKED_DIAL"

// TestMarkHelperProcess is not a test: run by dialAsOtherUser with
// markHelperEnv=MARK,ADDR, it sets the mark on a socket, dials ADDR and
// exits 0 when connected, 3 on a timeout (dropped), 4 otherwise.
func TestMarkHelperProcess(t *testing.T) {
	arg := os.Getenv(markHelperEnv)
	if arg == "" {
		t.Skip("helper process for TestForgedMarkFromAnotherUserIsDropped")
	}
	var mark uint32
	var addr string
	if _, err := fmt.Sscanf(strings.Replace(arg, ",", " ", 1), "%d %s", &mark, &addr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	d := markedDialer(500*time.Millisecond, mark)
	c, err := d.Dial("tcp", addr)
	switch {
	case err == nil:
		c.Close()
		os.Exit(0)
	case isTimeout(err):
		os.Exit(3)
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(4)
}

// nobody is the uid and gid the forging process runs as.
const nobody = 65534

// dialAsOtherUser runs the test binary as uid nobody with only CAP_NET_RAW
// (what a container gets by default, and enough to set SO_MARK since Linux
// 5.17) inside ns, marking a socket and dialing addr. It returns nil when
// the connect succeeded and a timeout error when it was dropped.
func dialAsOtherUser(t *testing.T, ns *testNS, mark uint32, addr string) error {
	t.Helper()
	// The test binary lives in a directory only root may enter; give the
	// other user a copy it can run.
	dir, err := os.MkdirTemp("", "egressd-mark-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "firewall.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestMarkHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%s", markHelperEnv, mark, addr))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: nobody, Gid: nobody},
		AmbientCaps: []uintptr{unix.CAP_NET_RAW},
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	// Forked from a thread inside ns, the child starts in ns.
	runErr := ns.Do(cmd.Run)
	var exit *exec.ExitError
	switch {
	case runErr == nil:
		return nil
	case errors.As(runErr, &exit) && exit.ExitCode() == 3:
		return os.ErrDeadlineExceeded
	}
	t.Fatalf("marked dial as uid %d: %v\n%s", nobody, runErr, out.String())
	return nil
}

// TestForgedMarkFromAnotherUserIsDropped: on the output hook egressd's own
// upstream sockets pass by their mark and their owner, egressd's uid. A
// process of another user that sets the same mark (CAP_NET_RAW suffices)
// is judged like any other, so it cannot reach an unapproved address.
func TestForgedMarkFromAnotherUserIsDropped(t *testing.T) {
	client, _ := linkedPair(t, "8080")
	const mark = 0x2a
	spec := Spec{Table: "egressd", Hooks: []string{HookOutput}, Grace: 5 * time.Second,
		Mark: mark, UID: uint32(os.Geteuid()),
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.98.0.0/24")}}}
	startNFT(t, client, spec, nil)

	// The forging process can set the mark: the kernel accepts SO_MARK.
	if err := dialAsOtherUser(t, client, mark, "10.98.0.3:8080"); err == nil {
		t.Errorf("uid %d with the upstream mark reached an unapproved address", nobody)
	} else if !isTimeout(err) {
		t.Errorf("uid %d with the upstream mark: %v, want dropped", nobody, err)
	}
	// egressd's own upstream traffic (this process, the uid in the spec).
	expectMarkedDial(t, client, "10.98.0.3:8080", mark, true)
	expectMarkedDial(t, client, "10.98.0.3:8080", 0, false)
}

// TestLinkLocalPassesOnlyNeighbourDiscovery: a grouped host may not reach a
// link-local neighbour (TCP, DNS) it was never approved for, while
// neighbour discovery still works: an approved global address on the same
// link, whose neighbour entry has to be resolved first, is reachable.
func TestLinkLocalPassesOnlyNeighbourDiscovery(t *testing.T) {
	client, server := linkedPair(t, "8080")
	client.exec(t, "ip", "addr", "add", "fd00:98::1/64", "dev", "c0", "nodad")
	client.exec(t, "ip", "addr", "add", "fe80::1/64", "dev", "c0", "nodad")
	server.exec(t, "ip", "addr", "add", "fd00:98::2/64", "dev", "s0", "nodad")
	server.exec(t, "ip", "addr", "add", "fe80::2/64", "dev", "s0", "nodad")
	acceptAndClose(t, server, "tcp6", "[::]:7000")
	acceptAndClose(t, server, "tcp6", "[::]:53")
	waitDial(t, client, "[fe80::2%c0]:7000")
	spec := Spec{Table: "egressd", Hooks: []string{HookOutput}, Grace: 5 * time.Second,
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.98.0.0/24", "fd00:98::/64", "fe80::/10")}}}
	n := startNFT(t, client, spec, nil)
	if err := n.Allow(context.Background(), Allowance{Group: "clients", IPs: addrs("fd00:98::2"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	client.exec(t, "ip", "-6", "neigh", "flush", "dev", "c0")
	for _, tc := range []struct {
		name, addr string
		passes     bool
	}{
		{"TCP to a link-local neighbour", "[fe80::2%c0]:7000", false},
		{"DNS over TCP to a link-local neighbour", "[fe80::2%c0]:53", false},
		{"approved global address on the link (needs neighbour discovery)", "[fd00:98::2]:7000", true},
	} {
		t.Run(tc.name, func(t *testing.T) { expectDial(t, client, tc.addr, tc.passes) })
	}
}

// dualStackGateway is gatewayTopology with IPv6 too: client fd00:97::1,
// server fd00:98::2, the gateway forwarding both families.
func dualStackGateway(t *testing.T, ports ...string) (client, gw, server *testNS) {
	t.Helper()
	client, gw, server = gatewayTopology(t, ports...)
	gw.exec(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	gw.exec(t, "ip", "addr", "add", "fd00:97::fe/64", "dev", "g1", "nodad")
	gw.exec(t, "ip", "addr", "add", "fd00:98::fe/64", "dev", "c0", "nodad")
	client.exec(t, "ip", "addr", "add", "fd00:97::1/64", "dev", "k0", "nodad")
	client.exec(t, "ip", "-6", "route", "add", "default", "via", "fd00:97::fe")
	server.exec(t, "ip", "addr", "add", "fd00:98::2/64", "dev", "s0", "nodad")
	server.exec(t, "ip", "-6", "route", "add", "default", "via", "fd00:98::fe")
	for _, port := range ports {
		acceptAndClose(t, server, "tcp6", "[::]:"+port)
	}
	waitDial(t, client, "[fd00:98::2]:"+ports[0])
	return client, gw, server
}

// TestInboundConnectionsToGroupedClients: a host outside opens a TCP
// connection to a grouped client through the gateway (IPv4 and IPv6, no
// NAT). By default the client's answers are judged by its group chain, so
// an address nobody approved gets no two-way channel; AcceptInbound lets
// them pass as established, and an approved address is answered either way.
func TestInboundConnectionsToGroupedClients(t *testing.T) {
	client, gw, server := dualStackGateway(t, "8080")
	acceptAndClose(t, client, "tcp4", "0.0.0.0:7000")
	acceptAndClose(t, client, "tcp6", "[::]:7000")
	base := Spec{Table: "egressd", Hooks: []string{HookForward}, Grace: 5 * time.Second,
		AcceptUnlisted: true, // the server is in no group; this test is about the client's answers
		Groups:         []GroupSpec{{Name: "clients", Clients: prefixes("10.97.0.0/24", "fd00:97::/64")}}}
	n := startNFT(t, gw, base, nil)
	for _, tc := range []struct {
		name    string
		inbound bool
		approve bool
		passes  bool
	}{
		{"default: answers to an unapproved address are dropped", false, false, false},
		{"AcceptInbound: answers pass", true, false, true},
		// Last: Reload carries the approval over.
		{"default: answers to an approved address pass", false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := base
			spec.AcceptInbound = tc.inbound
			if err := n.Reload(spec); err != nil {
				t.Fatal(err)
			}
			if tc.approve {
				if err := n.Allow(context.Background(), Allowance{Group: "clients", IPs: addrs("10.98.0.2", "fd00:98::2"), TTL: time.Minute}); err != nil {
					t.Fatal(err)
				}
			}
			expectDial(t, server, "10.97.0.1:7000", tc.passes)
			expectDial(t, server, "[fd00:97::1]:7000", tc.passes)
			// The client's own connections keep working as before.
			expectDial(t, client, "10.98.0.2:8080", tc.approve)
		})
	}
}

// TestUnlistedSources: traffic from addresses in no group is dropped by
// default (a config listing only IPv4 clients does not let their IPv6
// through; an output-hook group listing only loopback does not leave the
// host open) and passes with AcceptUnlisted.
func TestUnlistedSources(t *testing.T) {
	client, gw, _ := dualStackGateway(t, "8080")
	host, _ := linkedPair(t, "8080")
	forward := Spec{Table: "egressd", Hooks: []string{HookForward}, Grace: 5 * time.Second,
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.97.0.0/24")}}}
	output := Spec{Table: "egressd", Hooks: []string{HookOutput}, Grace: 5 * time.Second,
		Groups: []GroupSpec{{Name: "local", Clients: prefixes("127.0.0.0/8", "::1/128")}}}
	fw := startNFT(t, gw, forward, nil)
	out := startNFT(t, host, output, nil)
	for _, accept := range []bool{false, true} {
		forward.AcceptUnlisted, output.AcceptUnlisted = accept, accept
		if err := fw.Reload(forward); err != nil {
			t.Fatal(err)
		}
		if err := out.Reload(output); err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("AcceptUnlisted=%v", accept), func(t *testing.T) {
			expectDial(t, client, "[fd00:98::2]:8080", accept) // IPv6 of an IPv4-only group's host
			expectDial(t, client, "10.98.0.2:8080", false)     // its IPv4 is grouped: never approved
			expectDial(t, host, "10.98.0.2:8080", accept)      // host whose only group is loopback
		})
	}
}

// TestNDShapedDatagramFromProcessIsJudged: a process with a raw socket
// sends an ICMPv6 neighbour solicitation, hop limit 255, to a global
// address nobody approved, carrying data. Only the kernel's own
// solicitations pass to global addresses, so this one is dropped; in audit
// mode it arrives, which shows the path is open.
func TestNDShapedDatagramFromProcessIsJudged(t *testing.T) {
	client, server := linkedPair(t, "8080")
	client.exec(t, "ip", "addr", "add", "fd00:98::1/64", "dev", "c0", "nodad")
	server.exec(t, "ip", "addr", "add", "fd00:98::2/64", "dev", "s0", "nodad")
	acceptAndClose(t, server, "tcp6", "[::]:7000")
	waitDial(t, client, "[fd00:98::2]:7000")
	spec := Spec{Table: "egressd", Hooks: []string{HookOutput}, Grace: 5 * time.Second,
		Groups: []GroupSpec{{Name: "clients", Clients: prefixes("10.98.0.0/24", "fd00:98::/64")}}}
	n := startNFT(t, client, spec, nil)

	var rx net.PacketConn
	if err := server.Do(func() (err error) {
		rx, err = net.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	marker := []byte("egressd-nd-probe")
	// Neighbour solicitation: type, code, checksum (the kernel fills it
	// in), reserved, target, then the data.
	msg := append([]byte{icmpv6NeighborSolicit, 0, 0, 0, 0, 0, 0, 0}, netip.MustParseAddr("fd00:98::2").AsSlice()...)
	msg = append(msg, marker...)
	// send returns EPERM when the output hook dropped the datagram.
	send := func() error {
		return client.Do(func() error {
			c, err := net.Dial("ip6:ipv6-icmp", "fd00:98::2")
			if err != nil {
				return err
			}
			defer c.Close()
			raw, err := c.(*net.IPConn).SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := raw.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 255)
			}); err != nil {
				return err
			}
			if serr != nil {
				return serr
			}
			_, err = c.Write(msg)
			return err
		})
	}
	// received reports whether the marked solicitation arrives within
	// 500ms of being sent (ignoring the kernels' own ND traffic).
	received := func() bool {
		t.Helper()
		if err := send(); errors.Is(err, syscall.EPERM) {
			return false // dropped on the local output path
		} else if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		_ = rx.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			nr, _, err := rx.ReadFrom(buf)
			if err != nil {
				return false
			}
			if bytes.Contains(buf[:nr], marker) {
				return true
			}
		}
	}
	if received() {
		t.Error("an ND-shaped datagram from a process reached an unapproved global address")
	}
	spec.Audit = true
	if err := n.Reload(spec); err != nil {
		t.Fatal(err)
	}
	if !received() {
		t.Error("in audit mode the datagram did not arrive either: the test proves nothing")
	}
}
