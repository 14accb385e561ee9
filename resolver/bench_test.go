package resolver

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/querylog"
)

type nopEnforcer struct{}

func (nopEnforcer) Allow(context.Context, enforce.Allowance) error { return nil }
func (nopEnforcer) Close() error                                   { return nil }

type nopLog struct{}

// Keep is true so benchmarks with observers build every entry, the cost of
// a query log without sampling.
func (nopLog) Keep(string) bool      { return true }
func (nopLog) Write(*querylog.Entry) {}

// benchEnv is a server with a warm cache entry for www.example.com A,
// pushing to a firewall that does nothing; with observers it also counts
// metrics and builds query log entries.
func benchEnv(b *testing.B, withObservers bool) (*testEnv, *dns.Msg) {
	up := startUpstream(b, staticAnswer(b, dns.RcodeSuccess, []string{
		"www.example.com. 300 IN CNAME edge.example.net.",
		"edge.example.net. 300 IN A 192.0.2.1",
		"edge.example.net. 300 IN A 192.0.2.2",
	}, nil))
	o := Options{Upstreams: []string{up.addr}, CacheSize: 1000, Enforcer: nopEnforcer{}, QueryLog: nopLog{}, Settings: Settings{MaxTTL: 5 * time.Minute}}
	if withObservers {
		o.Metrics = metrics.New()
	}
	env := newEnv(b, o)
	if !withObservers {
		env.srv.opts.QueryLog = nil
	}
	req := question("www.example.com.", dns.TypeA)
	req.SetEdns0(1232, false)
	if resp := env.serve(b, "127.0.0.1", req); len(resp.Answer) != 3 {
		b.Fatalf("warm-up answer %v", resp)
	}
	return env, req
}

func BenchmarkCacheHit(b *testing.B) {
	for _, bc := range []struct {
		name      string
		metrics   bool
		rateLimit bool
	}{{"bare", false, false}, {"metrics+querylog", true, false}, {"bare+ratelimit", false, true}} {
		b.Run(bc.name, func(b *testing.B) {
			env, req := benchEnv(b, bc.metrics)
			if bc.rateLimit { // a limit no query reaches: the cost of the check
				env.srv.settings().limiter = newRateLimiter(1e12, 1e12, newClientKeys(0, 0))
			}
			w := fakeWriter(udpClient("127.0.0.1"))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				env.srv.ServeDNS(w, req)
			}
			b.StopTimer()
			var resp dns.Msg
			if err := resp.Unpack(w.Out); err != nil || len(resp.Answer) != 3 {
				b.Fatalf("last answer %v (%v)", resp, err)
			}
		})
	}
}

// BenchmarkCacheHitUDP measures a cached query round trip through a real
// loopback socket, including the read path: answered by the reader itself
// with the none backend, by a worker when answers go to a firewall.
func BenchmarkCacheHitUDP(b *testing.B) {
	for _, bc := range []struct {
		name     string
		enforcer enforce.Enforcer
	}{{"none", &enforce.None{}}, {"firewall", nopEnforcer{}}} {
		b.Run(bc.name, func(b *testing.B) {
			env, req := benchEnv(b, true)
			env.srv.SetEnforcer(bc.enforcer)
			addr := env.start(b)
			conn, err := net.Dial("udp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			benchUDPExchanges(b, conn, req)
		})
	}
}

// benchUDPExchanges sends req on conn and reads its answer, b.N times.
func benchUDPExchanges(b *testing.B, conn net.Conn, req *dns.Msg) {
	b.Helper()
	query, err := req.Pack()
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, dns.MaxMsgSize)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write(query); err != nil {
			b.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		if n < headerLen || buf[0] != query[0] || buf[1] != query[1] {
			b.Fatal("unexpected reply")
		}
	}
}

// BenchmarkCacheMissUDP is a miss as a client sends it: a datagram the
// UDP reader hands to a worker, which asks an in-process upstream on
// loopback (TTL 0: never cached) and answers. Its allocations include the
// hand-off, which BenchmarkCacheMiss (through the handler) does not.
func BenchmarkCacheMissUDP(b *testing.B) {
	env := newEnv(b, missOptions(b))
	addr := env.start(b)
	conn, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := question("miss.example.com.", dns.TypeA)
	req.SetEdns0(1232, false)
	benchUDPExchanges(b, conn, req)
	b.StopTimer()
	requireNothingCached(b, env)
}

// BenchmarkCacheHitReader measures what the UDP reader does for a cache
// hit in a batch, without the system calls: parse the datagram, decide,
// look up, render into the batch's buffer and queue the answer.
func BenchmarkCacheHitReader(b *testing.B) {
	for _, bc := range []struct {
		name    string
		metrics bool
	}{{"bare", false}, {"metrics+querylog", true}} {
		b.Run(bc.name, func(b *testing.B) {
			env, req := benchEnv(b, bc.metrics)
			env.srv.SetEnforcer(&enforce.None{})
			wire, err := req.Pack()
			if err != nil {
				b.Fatal(err)
			}
			benchReaderHits(b, env, wire)
		})
	}
}

// benchReaderHits has the UDP reader answer the cache hit wire, as it does
// for a datagram of a batch, b.N times.
func benchReaderHits(b *testing.B, env *testEnv, wire []byte) {
	u := env.srv.udpWorkersFilter(nil).(*udpWorkers)
	r := &udpReader{u: u}
	batch := newBatchBuffers()
	inline := &udpResponse{batch: batch, peer: netip.MustParseAddrPort("127.0.0.1:40000")}
	b.ReportAllocs()
	for b.Loop() {
		r.handle(inline, wire, time.Now())
		if batch.queued != 1 {
			b.Fatal("the hit was not answered by the reader")
		}
		batch.queued = 0 // what flush does after sending
	}
}
