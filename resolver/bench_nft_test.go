package resolver

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/internal/benchcpu"
	"github.com/egressd/egressd/internal/dnstest"
	"github.com/egressd/egressd/internal/netnstest"
)

// newBenchNetNS creates a network namespace for one benchmark and returns
// a file descriptor of it; nothing in the process enters it, the
// firewall's netlink sockets are opened in it by that descriptor.
func newBenchNetNS(tb testing.TB) int {
	tb.Helper()
	netnstest.Require(tb, "this benchmark")
	return netnstest.New(tb, "egbench-"+netnstest.RandomID()).FD(tb)
}

// BenchmarkCacheMissFirewall is a cache miss whose answer carries an
// address the firewall has not seen, with the none backend and with
// nftables in a fresh network namespace. The difference between the two
// is what pushing to the kernel adds to a miss before the client gets
// its answer. user-ns/op and sys-ns/op split the process's CPU time per
// miss (the kernel works on a netlink batch inside the sendmsg that sends
// it, so that is system time).
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
				MaxElementsPerSet: 1 << 30, MaxElementsPerClient: 1 << 30,
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
			stop := benchcpu.Start(b)
			serveUncachedLoop(b, env, "push.example.com.")
			stop()
		})
	}
}
