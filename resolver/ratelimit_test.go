package resolver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
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
	w := fakeWriter(remote)
	env.srv.ServeDNS(w, question("a.example.", dns.TypeA))
	if w.Out == nil {
		return dropped
	}
	var m dns.Msg
	if err := m.Unpack(w.Out); err != nil {
		t.Fatal(err)
	}
	return m.Rcode
}

func TestRateLimitPerClient(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	m := metrics.New()
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, Metrics: m, Settings: Settings{RateLimit: 2, RateBurst: 3}})
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
		env.clock.Advance(st.advance)
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
		if l := newRateLimiter(qps, 10, newClientKeys(0, 0)); l != nil {
			t.Errorf("rate %v: limiter built, want none", qps)
		}
	}
	env := newEnv(t, Options{Upstreams: []string{"127.0.0.1:1"}, Settings: Settings{Hosts: map[string][]netip.Addr{"a.example.": {netip.MustParseAddr("192.0.2.1")}}}})
	if env.srv.settings().limiter != nil {
		t.Fatal("limiter built without RateLimit")
	}
	for i := range 100 {
		if got := answered(t, env, udpClient("127.0.0.1")); got != dns.RcodeSuccess {
			t.Fatalf("query %d: %s", i, rcodeName(got))
		}
	}
}

func TestRateLimiterDefaultsBurstToRate(t *testing.T) {
	l := newRateLimiter(2.5, 0, newClientKeys(0, 0))
	now := time.Unix(0, 0)
	client := netip.MustParseAddr("192.0.2.1")
	allowed := 0
	for range 10 {
		if ok, _ := l.allow(client, now); ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("%d queries allowed at once, want the rate rounded up (3)", allowed)
	}
}

// A client is an IPv4 address or an IPv6 prefix (/64 by default): the
// addresses one host can pick from share one budget, so 40 addresses from
// one /64 get the burst once, not 40 times.
func TestRateLimiterClientPrefix(t *testing.T) {
	for _, tt := range []struct {
		name      string
		v4, v6    int
		addrs     []string // each sends one query, in order
		wantAllow int
	}{
		{"40 addresses in one /64 share its budget", 0, 0, sixtyFour("2001:db8:1:2", 40), 10},
		{"addresses in different /64s are different clients", 0, 0, []string{"2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:4::1"}, 3},
		{"a /56 key joins neighbouring /64s", 0, 56, []string{"2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:4::1"}, 3},
		{"a /128 key is per address", 0, 128, sixtyFour("2001:db8:1:2", 40), 40},
		{"IPv4 addresses are clients by default", 0, 0, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, 3},
		{"an IPv4 /24 key joins a subnet", 24, 0, ipv4Hosts("192.0.2", 40), 10},
		{"an IPv4 /24 key leaves other subnets alone", 24, 0, []string{"192.0.2.1", "192.0.3.1", "198.51.100.1"}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newRateLimiter(1, 10, newClientKeys(tt.v4, tt.v6))
			now := time.Unix(0, 0)
			allowed := 0
			for _, a := range tt.addrs {
				if ok, _ := l.allow(netip.MustParseAddr(a), now); ok {
					allowed++
				}
			}
			if allowed != tt.wantAllow {
				t.Errorf("%d of %d queries allowed, want %d", allowed, len(tt.addrs), tt.wantAllow)
			}
		})
	}
}

// sixtyFour returns n addresses in the /64 that starts with prefix.
func sixtyFour(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s:%x:%x::%x", prefix, (i*7919)&0xffff, i, i+1)
	}
	return out
}

func ipv4Hosts(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s.%d", prefix, i+1)
	}
	return out
}

// However many addresses send, the limiter keeps a bounded number of
// buckets, and idle ones go first.
func TestRateLimiterMemoryBound(t *testing.T) {
	l := newRateLimiter(10, 10, newClientKeys(0, 0))
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
	if ok, _ := l.allow(busy, later); ok {
		t.Fatal("busy client not limited")
	}
	for i := range bound / 2 { // fits once the idle buckets are swept
		l.allow(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), later)
	}
	if ok, _ := l.allow(busy, later); ok {
		t.Error("busy client's bucket was forgotten while idle ones remained")
	}
	if n := l.len(); n > bound {
		t.Errorf("%d buckets, want at most %d", n, bound)
	}
}

// A client over its limit is reported at most once per rateLogInterval,
// each report with the queries dropped since the previous one; the first
// drop is reported at once. Clients are reported independently.
func TestRateLimiterLogSummary(t *testing.T) {
	const (
		step     = 10 * time.Millisecond // 100 queries a second, far over 2
		duration = time.Minute
	)
	l := newRateLimiter(2, 3, newClientKeys(0, 0))
	start := time.Unix(1000, 0)
	// Two addresses of one /64 are one client; the other /64 is another.
	clients := []netip.Addr{netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2::2"), netip.MustParseAddr("2001:db8:9:9::1")}
	type state struct {
		dropped, reported, lines int
		lastLine                 time.Time
	}
	seen := map[netip.Addr]*state{}
	for now := start; now.Before(start.Add(duration)); now = now.Add(step) {
		for _, c := range clients {
			k := l.keys.key(c)
			st := seen[k]
			if st == nil {
				st = &state{}
				seen[k] = st
			}
			ok, report := l.allow(c, now)
			if ok {
				if report != 0 {
					t.Fatalf("%v: an allowed query reported %d drops", now, report)
				}
				continue
			}
			st.dropped++
			if report == 0 {
				continue
			}
			if st.lines > 0 && now.Sub(st.lastLine) < rateLogInterval {
				t.Fatalf("%s reported %v after its previous report, want at least %v", c, now.Sub(st.lastLine), rateLogInterval)
			}
			if st.lines == 0 && st.dropped != 1 {
				t.Fatalf("%s: first report after %d drops, want at the first", c, st.dropped)
			}
			if want := st.dropped - st.reported; int(report) != want {
				t.Fatalf("%s reported %d drops, want the %d since its previous report", c, report, want)
			}
			st.reported += int(report)
			st.lines++
			st.lastLine = now
		}
	}
	if len(seen) != 2 {
		t.Fatalf("%d client keys, want 2", len(seen))
	}
	maxLines := int(duration/rateLogInterval) + 1
	for k, st := range seen {
		if st.lines < 2 || st.lines > maxLines {
			t.Errorf("%s: %d reports in %v, want between 2 and %d", k, st.lines, duration, maxLines)
		}
		if st.dropped-st.reported > int(rateLogInterval/step)*2 {
			t.Errorf("%s: %d drops never reported", k, st.dropped-st.reported)
		}
	}
}

func BenchmarkRateLimiter(b *testing.B) {
	l := newRateLimiter(1e9, 1e9, newClientKeys(0, 0))
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

// logRecorder is a slog.Handler that keeps every record's message and
// attributes as text.
type logRecorder struct {
	mu      sync.Mutex
	records []map[string]string // "msg" and each attribute
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := map[string]string{"msg": r.Message, "level": r.Level.String()}
	r.Attrs(func(a slog.Attr) bool {
		rec[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, rec)
	return nil
}

// with returns the records whose message is msg.
func (h *logRecorder) with(msg string) []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.records {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// rateLimitedEnv serves a.example. to 2001:db8::/32 with one query of
// burst and a token every 1000 s, which the tests' clock never refills,
// and records the log.
func rateLimitedEnv(t *testing.T) (*testEnv, *logRecorder) {
	rec := &logRecorder{}
	env := newEnv(t, Options{
		Upstreams: []string{"127.0.0.1:1"},
		Logger:    slog.New(rec),
		Settings: Settings{
			Clients:   []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")},
			Hosts:     map[string][]netip.Addr{"a.example.": {netip.MustParseAddr("192.0.2.1")}},
			RateLimit: 0.001, RateBurst: 1,
		},
	})
	return env, rec
}

// A rate-limited client is logged, by its /64, at once and then at most
// once per rateLogInterval with the count dropped since the last line.
func TestRateLimitLogged(t *testing.T) {
	env, rec := rateLimitedEnv(t)
	a, b := udpClient("2001:db8:1:2::1"), udpClient("2001:db8:1:2::2")
	steps := []struct {
		name    string
		remote  net.Addr
		advance time.Duration
		want    int
		lines   int    // rate-limited lines so far
		dropped string // dropped= on the last line
	}{
		{"burst", a, 0, dns.RcodeSuccess, 0, ""},
		{"first drop is logged at once", b, 0, dropped, 1, "1"},
		{"second drop waits", a, 0, dropped, 1, "1"},
		{"third drop waits", b, 0, dropped, 1, "1"},
		{"within the interval", a, rateLogInterval / 2, dropped, 1, "1"},
		{"interval passed: the count since the last line", b, rateLogInterval / 2, dropped, 2, "4"},
		{"just short of the next interval", a, rateLogInterval - time.Nanosecond, dropped, 2, "4"},
		{"next interval", a, time.Nanosecond, dropped, 3, "2"},
	}
	for _, st := range steps {
		env.clock.Advance(st.advance)
		if got := answered(t, env, st.remote); got != st.want {
			t.Fatalf("%s: got %s, want %s", st.name, rcodeName(got), rcodeName(st.want))
		}
		lines := rec.with(msgRateLimited)
		if len(lines) != st.lines {
			t.Fatalf("%s: %d rate-limited lines, want %d", st.name, len(lines), st.lines)
		}
		if st.lines > 0 {
			last := lines[len(lines)-1]
			if last["client"] != "2001:db8:1:2::/64" || last["dropped"] != st.dropped {
				t.Errorf("%s: line %v, want client=2001:db8:1:2::/64 dropped=%s", st.name, last, st.dropped)
			}
		}
	}
}

// Rate-limited lines of all clients together stay within the log's budget
// for the message (logLinesPerSecond): clients past it are counted, and
// the next line written says how many lines were left out.
func TestRateLimitLinesBounded(t *testing.T) {
	env, rec := rateLimitedEnv(t)
	const clients = 200
	client := func(i int) net.Addr { return udpClient(fmt.Sprintf("2001:db8:%x::1", i+1)) } // a /64 each
	for i := range clients {
		answered(t, env, client(i)) // its burst
		if got := answered(t, env, client(i)); got != dropped {
			t.Fatalf("client %d: got %s, want dropped", i, rcodeName(got))
		}
	}
	lines := rec.with(msgRateLimited)
	if len(lines) != logLinesPerSecond {
		t.Fatalf("%d clients over their limit at one instant: %d lines, want the budget %d", clients, len(lines), logLinesPerSecond)
	}
	for _, l := range lines {
		if _, ok := l["lines_left_out"]; ok {
			t.Errorf("line %v says lines were left out before any was", l)
		}
	}
	// A tenth of a second later the budget holds one line: the next
	// client's, saying how many were left out.
	env.clock.Advance(time.Second / logLinesPerSecond)
	answered(t, env, client(clients))
	if got := answered(t, env, client(clients)); got != dropped {
		t.Fatalf("got %s, want dropped", rcodeName(got))
	}
	lines = rec.with(msgRateLimited)
	if len(lines) != logLinesPerSecond+1 {
		t.Fatalf("%d lines after the budget refilled one, want %d", len(lines), logLinesPerSecond+1)
	}
	if got, want := lines[len(lines)-1]["lines_left_out"], fmt.Sprint(clients-logLinesPerSecond); got != want {
		t.Errorf("lines_left_out = %q, want %s", got, want)
	}
}
