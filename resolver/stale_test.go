package resolver

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// RFC 8767: when every upstream fails, an answer expired for less than
// ServeStale is served with TTL 30, and its addresses are still pushed to
// the firewall, for 30 seconds.
func TestServeStale(t *testing.T) {
	var dead atomic.Bool
	var addr atomic.Value
	addr.Store("192.0.2.1")
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		if dead.Load() {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeServerFailure)
			w.WriteMsg(m)
			return
		}
		staticAnswer(t, dns.RcodeSuccess, []string{
			"www.example. 60 IN CNAME edge.example.",
			"edge.example. 60 IN A " + addr.Load().(string),
		}, nil)(w, r, udp)
	})

	type step struct {
		name    string
		advance time.Duration
		dead    bool
		rcode   int
		ttl     uint32 // of every answer record
		ip      string
		logged  string // query log upstream
	}
	fresh := func(name string, advance time.Duration, ip string) step {
		return step{name, advance, false, dns.RcodeSuccess, 60, ip, up.addr}
	}
	tests := []struct {
		name  string
		stale time.Duration
		steps []step
	}{
		{"serve stale 1h", time.Hour, []step{
			fresh("fresh", 0, "192.0.2.1"),
			{"expired, upstream down", 61 * time.Second, true, dns.RcodeSuccess, staleTTL, "192.0.2.1", upstreamStale},
			{"still down an hour later", 58 * time.Minute, true, dns.RcodeSuccess, staleTTL, "192.0.2.1", upstreamStale},
			fresh("upstream back: fresh answer wins", time.Second, "192.0.2.2"),
			{"down past the stale window", 62*time.Minute + time.Second, true, dns.RcodeServerFailure, 0, "", ""},
		}},
		{"serve stale off", 0, []step{
			fresh("fresh", 0, "192.0.2.1"),
			{"expired, upstream down", 61 * time.Second, true, dns.RcodeServerFailure, 0, "", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr.Store("192.0.2.1")
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, Settings: Settings{ServeStale: tt.stale}})
			for _, st := range tt.steps {
				env.clock.Advance(st.advance)
				dead.Store(st.dead)
				if !st.dead {
					addr.Store(st.ip)
				}
				before := len(env.enforcer.allowances())
				resp := env.serve(t, "127.0.0.1", question("www.example.", dns.TypeA))
				if resp.Rcode != st.rcode {
					t.Fatalf("%s: rcode %s, want %s", st.name, dns.RcodeToString[resp.Rcode], dns.RcodeToString[st.rcode])
				}
				if st.rcode != dns.RcodeSuccess {
					continue
				}
				if len(resp.Answer) != 2 {
					t.Fatalf("%s: answer %v", st.name, resp.Answer)
				}
				for _, rr := range resp.Answer {
					if rr.Header().Ttl != st.ttl {
						t.Errorf("%s: %s has TTL %d, want %d", st.name, rr.Header().Name, rr.Header().Ttl, st.ttl)
					}
				}
				if a := resp.Answer[1].(*dns.A); a.A.String() != st.ip {
					t.Errorf("%s: address %s, want %s", st.name, a.A, st.ip)
				}
				allows := env.enforcer.allowances()
				if len(allows) != before+1 {
					t.Fatalf("%s: %d firewall pushes, want 1", st.name, len(allows)-before)
				}
				if got := allows[len(allows)-1]; got.TTL != time.Duration(st.ttl)*time.Second || len(got.IPs) != 1 || got.IPs[0] != netip.MustParseAddr(st.ip) {
					t.Errorf("%s: allowance %+v, want %s for %ds", st.name, got, st.ip, st.ttl)
				}
				if e := env.log.last(t); e.Upstream != st.logged {
					t.Errorf("%s: logged upstream %q, want %q", st.name, e.Upstream, st.logged)
				}
			}
		})
	}
}

func TestCacheKeepsEntriesForTheStaleWindow(t *testing.T) {
	c, err := newAnswerCache(10, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.stale.Store(100)
	t0 := time.Unix(1000, 0)
	k := cacheKey{name: "a.example.", qtype: dns.TypeA, qclass: dns.ClassINET}
	c.put(k, &answer{cacheTTL: 10}, t0)
	tests := []struct {
		after       time.Duration
		fresh, kept bool
	}{
		{5 * time.Second, true, true},
		{10 * time.Second, false, true},
		{109 * time.Second, false, true},
		{110 * time.Second, false, false},
	}
	for _, tt := range tests {
		_, _, fresh := c.get(k, t0.Add(tt.after))
		_, kept := c.getStale(k, t0.Add(tt.after))
		if fresh != tt.fresh || kept != tt.kept {
			t.Errorf("after %v: fresh=%v stale=%v, want %v %v", tt.after, fresh, kept, tt.fresh, tt.kept)
		}
	}
	if c.len() != 0 {
		t.Error("entry past the stale window not dropped")
	}
}

// RFC 8767's client response timer: with a stale answer at hand, a query
// waits for a slow upstream no longer than staleAnswerTimeout; the
// exchange goes on and refreshes the cache for the next query.
func TestStaleAnswerTimer(t *testing.T) {
	var slow atomic.Bool
	var ip atomic.Value
	ip.Store("192.0.2.1")
	release := make(chan struct{})
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		if slow.Load() {
			<-release
		}
		staticAnswer(t, dns.RcodeSuccess, []string{"slow.example. 60 IN A " + ip.Load().(string)}, nil)(w, r, udp)
	})
	released := false
	t.Cleanup(func() { // before the upstream's own cleanup waits for its handlers
		if !released {
			close(release)
		}
	})
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, Timeout: 5 * time.Second, Settings: Settings{ServeStale: time.Hour}})
	env.serve(t, "127.0.0.1", question("slow.example.", dns.TypeA))

	env.clock.Advance(2 * time.Minute)
	slow.Store(true)
	ip.Store("192.0.2.2")
	start := time.Now()
	resp := env.serve(t, "127.0.0.1", question("slow.example.", dns.TypeA))
	elapsed := time.Since(start)
	if elapsed < staleAnswerTimeout-100*time.Millisecond || elapsed > staleAnswerTimeout+time.Second {
		t.Errorf("stale answer after %v, want about %v", elapsed, staleAnswerTimeout)
	}
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != staleTTL || resp.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Fatalf("got %v, want the stale record with TTL %d", resp.Answer, staleTTL)
	}
	if e := env.log.last(t); e.Upstream != upstreamStale || !e.Cached {
		t.Errorf("logged upstream %q cached %v", e.Upstream, e.Cached)
	}

	close(release)
	released = true
	waitFor(t, func() bool {
		a, _, ok := env.srv.cache.get(keyOf(&query{qname: "slow.example.", qtype: dns.TypeA, qclass: dns.ClassINET}), env.clock.Now())
		return ok && len(a.addrs) == 1 && a.addrs[0].String() == "192.0.2.2"
	})
	resp = env.serve(t, "127.0.0.1", question("slow.example.", dns.TypeA))
	if len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "192.0.2.2" || !env.log.last(t).Cached {
		t.Errorf("after the background refresh got %v, want the new record from the cache", resp.Answer)
	}
	if n := up.queries.Load(); n != 2 {
		t.Errorf("upstream saw %d queries, want 2", n)
	}
}
