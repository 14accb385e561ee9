package firewall

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
)

// requireNetAdmin skips a test that needs root and nftables, unless
// EGRESSD_REQUIRE_NETNS=1 demands that it runs.
func requireNetAdmin(t testing.TB) {
	t.Helper()
	need := os.Getenv("EGRESSD_REQUIRE_NETNS") == "1"
	miss := func(why string) {
		if need {
			t.Fatalf("EGRESSD_REQUIRE_NETNS=1 but %s", why)
		}
		t.Skipf("skipping: %s (needs root with CAP_NET_ADMIN; set EGRESSD_REQUIRE_NETNS=1 to fail instead)", why)
	}
	if os.Geteuid() != 0 {
		miss("not running as root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			miss(tool + " command not found")
		}
	}
}

// testNS is a network namespace created for one test and removed after.
type testNS struct {
	name string
	fd   int
}

// newTestNS creates a named namespace with `ip netns add`. Nothing in the
// test process enters it: netlink sockets are opened inside it by fd, and
// commands run in it through `ip netns exec`, so no OS thread ever switches
// namespace.
func newTestNS(t testing.TB) *testNS {
	t.Helper()
	requireNetAdmin(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "egtest-" + hex.EncodeToString(b[:])
	run(t, "ip", "netns", "add", name)
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		t.Fatalf("open netns: %v", err)
	}
	t.Cleanup(func() {
		f.Close()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	ns := &testNS{name: name, fd: int(f.Fd())}
	ns.exec(t, "ip", "link", "set", "lo", "up")
	return ns
}

// exec runs a command inside the namespace and returns its stdout.
func (ns *testNS) exec(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", ns.name}, args...)...)
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

func run(t testing.TB, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// normalize collapses all whitespace so listings compare by content.
func normalize(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

var quietLogger = slog.New(slog.DiscardHandler)
