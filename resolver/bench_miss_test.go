package resolver

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
	"github.com/egressd/egressd/metrics"
)

// BenchmarkCacheMiss is a query that always goes upstream over a real
// loopback UDP socket, with the firewall push to a backend that does
// nothing: the cost of the miss path without the client side of the
// network.
func BenchmarkCacheMiss(b *testing.B) {
	for _, bc := range []struct {
		name    string
		metrics bool
	}{{"bare", false}, {"metrics+querylog", true}} {
		b.Run(bc.name, func(b *testing.B) {
			o := missOptions(b)
			o.QueryLog = nopLog{}
			if bc.metrics {
				o.Metrics = metrics.New()
			}
			env := newEnv(b, o)
			if !bc.metrics {
				env.srv.opts.QueryLog = nil
			}
			serveUncachedLoop(b, env, "miss.example.com.")
			requireNothingCached(b, env)
		})
	}
}

// missOptions is the server the miss benchmarks measure: an in-process
// upstream on loopback whose answers have TTL 0, so every query misses.
func missOptions(b *testing.B) Options {
	return Options{
		Upstreams: []string{dnstest.StartEcho(b, false)},
		CacheSize: 1000,
		Timeout:   2 * time.Second,
		Enforcer:  nopEnforcer{},
	}
}

// requireNothingCached fails a miss benchmark whose answers were cached:
// it would have measured hits.
func requireNothingCached(b *testing.B, env *testEnv) {
	b.Helper()
	if n := env.srv.cache.len(); n != 0 {
		b.Fatalf("%d answers cached; a TTL 0 answer must not be", n)
	}
}

// serveUncachedLoop answers an A query for qname through the handler b.N
// times, then checks the last answer was a single-record NOERROR.
func serveUncachedLoop(b *testing.B, env *testEnv, qname string) {
	b.Helper()
	req := question(qname, dns.TypeA)
	req.SetEdns0(1232, false)
	w := fakeWriter(udpClient("127.0.0.1"))
	b.ReportAllocs()
	for b.Loop() {
		env.srv.ServeDNS(w, req)
	}
	b.StopTimer()
	var resp dns.Msg
	if err := resp.Unpack(w.Out); err != nil || len(resp.Answer) != 1 || resp.Rcode != dns.RcodeSuccess {
		b.Fatalf("last answer %v (%v)", resp, err)
	}
}

// BenchmarkCacheMissFill is the common miss: a name not in the cache whose
// answer (one A record, TTL 300, a new address each time) is vetted,
// pushed to a firewall that does nothing, cached and answered, through the
// handler with an in-process upstream on loopback UDP. The names cycle
// through four times the cache's size, so the LRU evicts on every fill
// and no query is a hit.
func BenchmarkCacheMissFill(b *testing.B) {
	const cacheSize = 1000
	env := newEnv(b, Options{
		Upstreams: []string{dnstest.StartEchoTTL(b, true, 300)},
		CacheSize: cacheSize,
		Timeout:   2 * time.Second,
		Enforcer:  nopEnforcer{},
		QueryLog:  nopLog{},
	})
	env.srv.opts.QueryLog = nil
	reqs := make([]*dns.Msg, 4*cacheSize)
	for i := range reqs {
		reqs[i] = question(fmt.Sprintf("n%d.miss.example.com.", i), dns.TypeA)
		reqs[i].SetEdns0(1232, false)
	}
	w := fakeWriter(udpClient("127.0.0.1"))
	before := env.srv.cache.len()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		env.srv.ServeDNS(w, reqs[i%len(reqs)])
		i++
	}
	b.StopTimer()
	var resp dns.Msg
	if err := resp.Unpack(w.Out); err != nil || len(resp.Answer) != 1 || resp.Rcode != dns.RcodeSuccess {
		b.Fatalf("last answer %v (%v)", resp, err)
	}
	if n := env.srv.cache.len(); n <= before || n > cacheSize {
		b.Fatalf("%d answers cached, want 1 to %d", n, cacheSize)
	}
}
