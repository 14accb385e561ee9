package resolver

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/internal/dnstest"
)

// requireNetAdmin skips a benchmark that needs root and a network
// namespace, unless EGRESSD_REQUIRE_NETNS=1 demands that it runs.
func requireNetAdmin(tb testing.TB) {
	tb.Helper()
	miss := func(why string) {
		if os.Getenv("EGRESSD_REQUIRE_NETNS") == "1" {
			tb.Fatalf("EGRESSD_REQUIRE_NETNS=1 but %s", why)
		}
		tb.Skipf("skipping: %s (needs root with CAP_NET_ADMIN; set EGRESSD_REQUIRE_NETNS=1 to fail instead)", why)
	}
	if os.Geteuid() != 0 {
		miss("not running as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		miss("ip command not found")
	}
}

// newBenchNetNS creates a network namespace for one benchmark and returns
// a file descriptor of it; nothing in the process enters it, the
// firewall's netlink sockets are opened in it by that descriptor.
func newBenchNetNS(tb testing.TB) int {
	tb.Helper()
	requireNetAdmin(tb)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "egbench-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add: %v: %s", err, out)
	}
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		tb.Fatalf("open netns: %v", err)
	}
	tb.Cleanup(func() {
		f.Close()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	return int(f.Fd())
}

// BenchmarkCacheMissFirewall is a cache miss whose answer carries an
// address the firewall has not seen, with the none backend and with
// nftables in a fresh network namespace. The difference between the two
// is what pushing to the kernel adds to a miss before the client gets
// its answer.
func BenchmarkCacheMissFirewall(b *testing.B) {
	discard := slog.New(slog.DiscardHandler)
	for _, bc := range []struct {
		name     string
		enforcer func(b *testing.B) enforce.Enforcer
	}{
		{"none", func(*testing.B) enforce.Enforcer { return enforce.NewNone(discard) }},
		{"nftables", func(b *testing.B) enforce.Enforcer {
			fd := newBenchNetNS(b)
			spec := firewall.Spec{
				Table: "egressd_bench", Hooks: []string{firewall.HookForward}, Grace: time.Second,
				Groups: []firewall.GroupSpec{{Name: testGroup, Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}},
				// Each iteration adds a destination, for as long as it runs.
				MaxElementsPerSet: 1 << 30,
			}
			nft, err := firewall.NewNFTables(spec, firewall.Options{NetNS: fd, Logger: discard, NoWatch: true, VerifyEvery: -1})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { nft.Close() })
			return nft
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			env := newEnv(b, Options{
				Upstreams: []string{dnstest.StartEcho(b, true)},
				CacheSize: 1000,
				Timeout:   2 * time.Second,
				Enforcer:  bc.enforcer(b),
				QueryLog:  nopLog{},
			})
			env.srv.opts.QueryLog = nil
			serveUncachedLoop(b, env, "push.example.com.")
		})
	}
}
