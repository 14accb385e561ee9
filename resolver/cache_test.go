package resolver

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// cacheStep queries after advancing the clock and says what should happen.
type cacheStep struct {
	advance  time.Duration
	upstream int32  // upstream queries seen so far, after this step
	ttl      uint32 // TTL of the first record the client gets
	cached   bool
}

func runCacheSteps(t *testing.T, env *testEnv, up *testUpstream, qname string, steps []cacheStep) {
	t.Helper()
	for i, st := range steps {
		env.clock.Advance(st.advance)
		resp := env.serve(t, "127.0.0.1", question(qname, dns.TypeA))
		if n := up.queries.Load(); n != st.upstream {
			t.Errorf("step %d: upstream saw %d queries, want %d", i, n, st.upstream)
		}
		var rrs []dns.RR
		rrs = append(append(rrs, resp.Answer...), resp.Ns...)
		if len(rrs) == 0 {
			t.Fatalf("step %d: empty response %v", i, resp)
		}
		if got := rrs[0].Header().Ttl; got != st.ttl {
			t.Errorf("step %d: TTL %d, want %d", i, got, st.ttl)
		}
		if e := env.log.last(t); e.Cached != st.cached {
			t.Errorf("step %d: logged cached=%v, want %v", i, e.Cached, st.cached)
		}
	}
}

func TestCachePositiveTTL(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
	runCacheSteps(t, env, up, "a.example.", []cacheStep{
		{0, 1, 300, false},
		{100 * time.Second, 1, 200, true},
		{1500 * time.Millisecond, 1, 199, true}, // whole seconds only
		{198 * time.Second, 1, 1, true},
		{time.Second, 2, 300, false}, // expired at exactly the TTL
	})
}

func TestCacheMaxTTLCapsLifetime(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 3600 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, Settings: Settings{CacheMaxTTL: time.Minute, MaxTTL: 5 * time.Minute}})
	runCacheSteps(t, env, up, "a.example.", []cacheStep{
		{0, 1, 300, false}, // clamped to MaxTTL for the client
		{59 * time.Second, 1, 300, true},
		{time.Second, 2, 300, false},
	})
}

// RFC 2308: negative answers live for min(SOA TTL, SOA MINIMUM).
func TestCacheNegativeBySOAMinimum(t *testing.T) {
	tests := []struct {
		name  string
		rcode int
		soa   string
	}{
		{"nxdomain, minimum smaller", dns.RcodeNameError, "example. 900 IN SOA ns. host. 1 2 3 4 30"},
		{"nodata, TTL smaller", dns.RcodeSuccess, "example. 30 IN SOA ns. host. 1 2 3 4 900"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, tt.rcode, nil, []string{tt.soa}))
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
			first := env.serve(t, "127.0.0.1", question("gone.example.", dns.TypeA))
			if first.Rcode != tt.rcode {
				t.Fatalf("rcode %s", dns.RcodeToString[first.Rcode])
			}
			env.clock.Advance(29 * time.Second)
			env.serve(t, "127.0.0.1", question("gone.example.", dns.TypeA))
			if n := up.queries.Load(); n != 1 {
				t.Errorf("after 29s upstream saw %d queries, want 1 (cached)", n)
			}
			env.clock.Advance(time.Second)
			env.serve(t, "127.0.0.1", question("gone.example.", dns.TypeA))
			if n := up.queries.Load(); n != 2 {
				t.Errorf("after 30s upstream saw %d queries, want 2 (expired)", n)
			}
		})
	}
}

func TestCacheSkipsUncacheable(t *testing.T) {
	tests := []struct {
		name    string
		handler func(t *testing.T) upstreamHandler
		rcode   int
	}{
		{"negative without SOA", func(t *testing.T) upstreamHandler {
			return staticAnswer(t, dns.RcodeNameError, nil, nil)
		}, dns.RcodeNameError},
		{"nodata without SOA", func(t *testing.T) upstreamHandler {
			return staticAnswer(t, dns.RcodeSuccess, nil, nil)
		}, dns.RcodeSuccess},
		{"servfail", func(t *testing.T) upstreamHandler {
			return staticAnswer(t, dns.RcodeServerFailure, nil, nil)
		}, dns.RcodeServerFailure},
		{"zero TTL", func(t *testing.T) upstreamHandler {
			return staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 0 IN A 192.0.2.1"}, nil)
		}, dns.RcodeSuccess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, tt.handler(t))
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
			for range 2 {
				if resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA)); resp.Rcode != tt.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
				}
			}
			if n := up.queries.Load(); n != 2 {
				t.Errorf("upstream saw %d queries, want 2 (nothing cached)", n)
			}
			if env.srv.cache.len() != 0 {
				t.Errorf("cache holds %d entries", env.srv.cache.len())
			}
		})
	}
}

// The key folds case but keeps DO apart; every client still sees its own
// spelling of the name and its own ID.
func TestCacheKeyAndSpelling(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
	env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))

	resp := env.serve(t, "127.0.0.1", question("A.eXample.", dns.TypeA))
	if resp.Question[0].Name != "A.eXample." {
		t.Errorf("question %q, want the client's spelling", resp.Question[0].Name)
	}
	if n := up.queries.Load(); n != 1 {
		t.Errorf("case variant missed the cache: %d upstream queries", n)
	}
	withDO := question("a.example.", dns.TypeA)
	withDO.SetEdns0(1232, true)
	env.serve(t, "127.0.0.1", withDO)
	if n := up.queries.Load(); n != 2 {
		t.Errorf("DO query shared the non-DO entry: %d upstream queries", n)
	}
}

func TestRewriteTTLs(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("a.example.", dns.TypeA)
	m.Answer = mustRRs(t, []string{"a.example. 300 IN CNAME b.example.", "b.example. 50 IN A 192.0.2.1"})
	m.Ns = mustRRs(t, []string{"example. 7200 IN NS ns.example."})
	m.SetEdns0(1232, true)
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if err := rewriteTTLs(wire, func(ttl uint32) uint32 { return ageTTL(ttl, 60, 3600) }); err != nil {
		t.Fatal(err)
	}
	var got dns.Msg
	if err := got.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	want := []uint32{240, 0, 3600}
	for i, rr := range append(got.Answer, got.Ns...) {
		if rr.Header().Ttl != want[i] {
			t.Errorf("record %d TTL %d, want %d", i, rr.Header().Ttl, want[i])
		}
	}
	if opt := got.IsEdns0(); opt == nil || !opt.Do() {
		t.Error("OPT flags (in its TTL field) were rewritten")
	}
	for _, cut := range []int{5, 20, len(wire) - 3} {
		if err := rewriteTTLs(wire[:cut], func(ttl uint32) uint32 { return ttl }); err == nil {
			t.Errorf("message cut at %d bytes accepted", cut)
		}
	}
}

// Entries that expired (and left the stale window) are dropped from the
// least recently used end as new answers are stored, so a stream of
// one-off names with short TTLs does not keep the cache at its bound;
// entries in use, or still within the stale window, stay.
func TestCachePutDropsExpiredTail(t *testing.T) {
	t0 := time.Unix(1000, 0)
	key := func(prefix string, i int) cacheKey {
		return cacheKey{name: fmt.Sprintf("%s%d.example.", prefix, i), qtype: dns.TypeA, qclass: dns.ClassINET}
	}
	tests := []struct {
		name     string
		stale    uint32
		later    time.Duration // when the new answers are stored
		wantKept int           // of the 100 one-off answers
	}{
		{"expired", 0, 2 * time.Second, 0},
		{"not yet expired", 0, 500 * time.Millisecond, 100},
		{"within the stale window", 60, 2 * time.Second, 100},
		{"past the stale window", 60, 62 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newAnswerCache(1000, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			c.stale.Store(tt.stale)
			hot := key("hot", 0)
			c.put(hot, &answer{cacheTTL: 3600}, t0)
			for i := range 100 {
				c.put(key("once", i), &answer{cacheTTL: 1}, t0)
			}
			for i := range 50 {
				now := t0.Add(tt.later)
				if _, _, ok := c.get(hot, now); !ok {
					t.Fatal("the hot entry is gone")
				}
				c.put(key("new", i), &answer{cacheTTL: 1}, now)
			}
			if got, want := c.len(), 1+50+tt.wantKept; got != want {
				t.Errorf("%d entries, want %d", got, want)
			}
			var want int64
			for _, k := range c.lru.Keys() {
				e, _ := c.lru.Peek(k)
				want += e.size
			}
			if c.bytes() != want {
				t.Errorf("accounted %d bytes, entries hold %d", c.bytes(), want)
			}
		})
	}
}
