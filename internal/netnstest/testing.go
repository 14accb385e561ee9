package netnstest

import (
	"os"
	"strings"
	"testing"
)

// Require skips the test unless namespaces with nftables can be built
// here; with EGRESSD_REQUIRE_NETNS=1 it fails instead. what says what
// needs them, for the message.
func Require(t testing.TB, what string) {
	t.Helper()
	missing := Missing()
	if len(missing) == 0 {
		return
	}
	msg := what + " needs network namespaces and nftables: " + strings.Join(missing, "; ")
	if os.Getenv("EGRESSD_REQUIRE_NETNS") == "1" {
		t.Fatal(msg + " (EGRESSD_REQUIRE_NETNS=1)")
	}
	t.Skip(msg)
}

// New creates the namespace with loopback up and deletes it when the
// test ends.
func New(t testing.TB, name string) Namespace {
	t.Helper()
	ns, err := Create(name)
	if ns.Name != "" {
		t.Cleanup(func() {
			if err := ns.Delete(); err != nil {
				t.Errorf("removing namespace: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// FD opens the namespace and returns a file descriptor of it, closed when
// the test ends (before a namespace made by New is deleted). Netlink
// sockets opened by it (nftables.WithNetNSFd) live in the namespace
// without any thread entering it.
func (ns Namespace) FD(t testing.TB) int {
	t.Helper()
	f, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}
