package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/metrics"
)

// answered sends one query from remote straight to the handler and
// returns the reply's RCODE, or dropped when nothing was written.
func answered(t *testing.T, env *testEnv, remote net.Addr) int {
	t.Helper()
	w := &fakeWriter{remote: remote}
	env.srv.ServeDNS(w, question("a.example.", dns.TypeA))
	if w.out == nil {
		return dropped
	}
	var m dns.Msg
	if err := m.Unpack(w.out); err != nil {
		t.Fatal(err)
	}
	return m.Rcode
}

func TestRateLimitPerClient(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	m := metrics.New()
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, RateLimit: 2, RateBurst: 3, Metrics: m})
	noisy, quiet := udpClient("127.0.0.2"), udpClient("127.0.0.3")
	noisyTCP := &net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 40001}

	steps := []struct {
		name    string
		remote  net.Addr
		advance time.Duration
		want    int
	}{
		{"burst 1", noisy, 0, dns.RcodeSuccess},
		{"burst 2", noisy, 0, dns.RcodeSuccess},
		{"burst 3", noisy, 0, dns.RcodeSuccess},
		{"over the burst, udp dropped", noisy, 0, dropped},
		{"over the burst, tcp refused", noisyTCP, 0, dns.RcodeRefused},
		{"another client is not limited", quiet, 0, dns.RcodeSuccess},
		{"half a second refills one token", noisy, 500 * time.Millisecond, dns.RcodeSuccess},
		{"and only one", noisy, 0, dropped},
		{"a long pause refills the burst, not more", noisy, time.Hour, dns.RcodeSuccess},
		{"burst after pause 2", noisy, 0, dns.RcodeSuccess},
		{"burst after pause 3", noisy, 0, dns.RcodeSuccess},
		{"burst after pause exhausted", noisy, 0, dropped},
	}
	limited := 0
	for _, st := range steps {
		env.clock.advance(st.advance)
		if got := answered(t, env, st.remote); got != st.want {
			t.Fatalf("%s: got %s, want %s", st.name, rcodeName(got), rcodeName(st.want))
		}
		if st.want == dropped || st.want == dns.RcodeRefused {
			limited++
		}
	}
	if got := testutil.ToFloat64(m.RateLimited); got != float64(limited) {
		t.Errorf("egressd_ratelimited_total = %v, want %d", got, limited)
	}
	if n := len(env.log.entries); n != len(steps)-limited {
		t.Errorf("%d query log entries, want %d (limited queries are not logged)", n, len(steps)-limited)
	}
}

func TestRateLimiterDisabled(t *testing.T) {
	for _, qps := range []float64{0, -1} {
		if l := newRateLimiter(qps, 10); l != nil {
			t.Errorf("rate %v: limiter built, want none", qps)
		}
	}
	env := newEnv(t, Options{Upstreams: []string{"127.0.0.1:1"}, Hosts: map[string][]netip.Addr{"a.example.": {netip.MustParseAddr("192.0.2.1")}}})
	if env.srv.limiter != nil {
		t.Fatal("limiter built without RateLimit")
	}
	for i := range 100 {
		if got := answered(t, env, udpClient("127.0.0.1")); got != dns.RcodeSuccess {
			t.Fatalf("query %d: %s", i, rcodeName(got))
		}
	}
}

func TestRateLimiterDefaultsBurstToRate(t *testing.T) {
	l := newRateLimiter(2.5, 0)
	now := time.Unix(0, 0)
	client := netip.MustParseAddr("192.0.2.1")
	allowed := 0
	for range 10 {
		if l.allow(client, now) {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("%d queries allowed at once, want the rate rounded up (3)", allowed)
	}
}

// Every IPv6 address has its own bucket, even within one /64.
func TestRateLimiterIPv6PerAddress(t *testing.T) {
	l := newRateLimiter(1, 1)
	now := time.Unix(0, 0)
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2::2")
	if !l.allow(a, now) || l.allow(a, now) {
		t.Fatal("burst of 1 not enforced")
	}
	if !l.allow(b, now) {
		t.Error("a neighbour in the same /64 was limited")
	}
}

// However many addresses send, the limiter keeps a bounded number of
// buckets, and idle ones go first.
func TestRateLimiterMemoryBound(t *testing.T) {
	l := newRateLimiter(10, 10)
	now := time.Unix(0, 0)
	const bound = rateShards * bucketsPerShard
	for i := range 2 * bound {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.allow(addr, now)
	}
	if n := l.len(); n > bound || n < bound/2 {
		t.Fatalf("%d buckets after %d clients, want at most %d", n, 2*bound, bound)
	}

	// A busy client survives a later wave of new ones once the rest are idle.
	busy := netip.MustParseAddr("192.0.2.1")
	later := now.Add(10 * time.Second)
	for range 10 {
		l.allow(busy, later)
	}
	if l.allow(busy, later) {
		t.Fatal("busy client not limited")
	}
	for i := range bound / 2 { // fits once the idle buckets are swept
		l.allow(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), later)
	}
	if l.allow(busy, later) {
		t.Error("busy client's bucket was forgotten while idle ones remained")
	}
	if n := l.len(); n > bound {
		t.Errorf("%d buckets, want at most %d", n, bound)
	}
}

func BenchmarkRateLimiter(b *testing.B) {
	l := newRateLimiter(1e9, 1e9)
	now := time.Now()
	addrs := make([]netip.Addr, 256)
	for i := range addrs {
		addrs[i] = netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.allow(addrs[i&255], now)
		i++
	}
}
