package firewall

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/egressd/egressd/internal/netnstest"
)

// requireNetAdmin skips a test that needs root and nftables, unless
// EGRESSD_REQUIRE_NETNS=1 demands that it runs.
func requireNetAdmin(t testing.TB) {
	t.Helper()
	netnstest.Require(t, t.Name())
}

// testNS is a network namespace created for one test and removed after.
type testNS struct {
	netnstest.Namespace
	name string
	fd   int
}

// newTestNS creates a namespace with loopback up. Netlink sockets are
// opened inside it by fd, commands run in it through `ip netns exec`, and
// Go code that must open sockets there runs through Do.
func newTestNS(t testing.TB) *testNS {
	t.Helper()
	requireNetAdmin(t)
	ns := netnstest.New(t, "egtest-"+netnstest.RandomID())
	return &testNS{Namespace: ns, name: ns.Name, fd: ns.FD(t)}
}

// exec runs a command inside the namespace and returns its output.
func (ns *testNS) exec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := ns.Exec(args[0], args[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// conn is a netlink connection into the namespace, for reading state back.
func (ns *testNS) conn(t testing.TB) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// normalize collapses all whitespace so listings compare by content.
func normalize(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

var quietLogger = slog.New(slog.DiscardHandler)
