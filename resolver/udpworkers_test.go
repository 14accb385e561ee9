package resolver

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/metrics"
)

// TestUDPWorkersAnswerBurstsAndEnd sends bursts of concurrent queries over
// UDP: every one must be answered with its own ID, and after Shutdown no
// worker goroutine may be left.
func TestUDPWorkersAnswerBurstsAndEnd(t *testing.T) {
	before := runtime.NumGoroutine()
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"burst.example. 300 IN A 192.0.2.9"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
	addr := env.start(t)
	for _, clients := range []int{1, 16, 256} {
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
				m := question("burst.example.", dns.TypeA)
				m.Id = uint16(i + 1)
				resp, _, err := c.Exchange(m, addr)
				if err == nil && (resp.Id != m.Id || len(resp.Answer) != 1) {
					err = net.UnknownNetworkError("wrong answer " + resp.String())
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("%d concurrent clients: %v", clients, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The upstream test server is still running; allow for its goroutines.
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+8 })
}

// A query served in two stages (the reader's answerReady, then a
// worker's) must be rate limited, counted, logged and pushed once, with or
// without a firewall push sending hits to the workers too.
func TestUDPQueriesCountedOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		enforcer enforce.Enforcer
		pushes   int // firewall pushes for the three answered queries
	}{
		{"firewall push", &fakeEnforcer{}, 3},
		{"firewall push, hits not yet in effect", &checkingEnforcer{}, 3},
		// The reader answers the hits itself: only the miss is pushed.
		{"firewall push, hits already in effect", &checkingEnforcer{inEffect: true}, 1},
		{"none backend", &enforce.None{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"once.example. 300 IN A 192.0.2.7"}, nil))
			m := metrics.New()
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, Metrics: m, Enforcer: tc.enforcer, Settings: Settings{RateLimit: 0.001, RateBurst: 3}})
			addr := env.start(t)
			for i := range 3 { // a miss, then two hits
				if resp := exchange(t, "udp", addr, question("once.example.", dns.TypeA)); len(resp.Answer) != 1 {
					t.Fatalf("query %d: %v", i, resp)
				}
			}
			c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
			if resp, _, err := c.Exchange(question("once.example.", dns.TypeA), addr); err == nil {
				t.Fatalf("fourth query over a burst of 3 answered: %v", resp)
			}
			env.log.mu.Lock()
			logged := len(env.log.entries)
			env.log.mu.Unlock()
			for _, c := range []struct {
				name      string
				got, want float64
			}{
				{"cache hits", testutil.ToFloat64(m.CacheHits), 2},
				{"cache misses", testutil.ToFloat64(m.CacheMisses), 1},
				{"rate limited", testutil.ToFloat64(m.RateLimited), 1},
				{"upstream queries", float64(up.queries.Load()), 1},
				{"query log entries", float64(logged), 3},
			} {
				if c.got != c.want {
					t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
				}
			}
			var fe *fakeEnforcer
			switch e := tc.enforcer.(type) {
			case *fakeEnforcer:
				fe = e
			case *checkingEnforcer:
				fe = &e.fakeEnforcer
				if n := e.checks.Load(); n != 2 {
					t.Errorf("InEffect asked %d times, want 2 (once per hit)", n)
				}
			}
			if fe != nil {
				fe.mu.Lock()
				defer fe.mu.Unlock()
				if len(fe.allows) != tc.pushes {
					t.Errorf("firewall pushes: %d, want %d", len(fe.allows), tc.pushes)
				}
			}
		})
	}
}

// The reader answers cache hits itself; a miss waiting for a slow upstream
// must not hold them up.
func TestUDPCacheHitsNotBlockedByMiss(t *testing.T) {
	release := make(chan struct{})
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		if r.Question[0].Name == "slow.example." {
			<-release
		}
		resp := new(dns.Msg)
		resp.SetReply(r)
		resp.Answer = mustRRs(t, []string{r.Question[0].Name + " 300 IN A 192.0.2.8"})
		w.WriteMsg(resp)
	})
	defer close(release)
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, Timeout: 3 * time.Second, Enforcer: &enforce.None{}})
	addr := env.start(t)
	exchange(t, "udp", addr, question("fast.example.", dns.TypeA))

	slow := make(chan error, 1)
	go func() {
		c := &dns.Client{Net: "udp", Timeout: 4 * time.Second}
		_, _, err := c.Exchange(question("slow.example.", dns.TypeA), addr)
		slow <- err
	}()
	waitFor(t, func() bool { return up.queries.Load() == 2 }) // the miss is upstream
	start := time.Now()
	for range 20 {
		if resp := exchange(t, "udp", addr, question("fast.example.", dns.TypeA)); len(resp.Answer) != 1 {
			t.Fatalf("hit answered %v", resp)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("20 cache hits took %v while a miss waited upstream", d)
	}
	select {
	case err := <-slow:
		t.Fatalf("slow query finished before the upstream answered: %v", err)
	default:
	}
}

// A socket bound to one address answers without control messages; a
// wildcard socket must answer from the address the query came to, or the
// client's connected socket drops the answer. Both the reader's cache hits
// and the workers' misses are checked.
func TestUDPAnswersFromQueriedAddress(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"addr.example. 300 IN A 192.0.2.10"}, nil))
	for _, listen := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		t.Run(listen, func(t *testing.T) {
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
			env.startOn(t, listen)
			port := env.srv.Addrs()[0].(*net.UDPAddr).Port
			addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
			for i, want := range []bool{false, true} { // a miss, then a hit
				resp := exchange(t, "udp", addr, question("addr.example.", dns.TypeA))
				if len(resp.Answer) != 1 {
					t.Fatalf("query %d: %v", i, resp)
				}
				waitFor(t, func() bool { // recorded after the answer is sent
					env.log.mu.Lock()
					defer env.log.mu.Unlock()
					return len(env.log.entries) == i+1
				})
				if got := env.log.last(t).Cached; got != want {
					t.Errorf("query %d: cached %v, want %v", i, got, want)
				}
			}
		})
	}
}

// TestUDPWorkersEndWhenIdle: the workers a burst started end once they
// have waited workerIdle for more, while the server keeps serving.
func TestUDPWorkersEndWhenIdle(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"idle.example. 300 IN A 192.0.2.10"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100}) // fakeEnforcer: every answer goes to a worker
	env.srv.workerIdle = 100 * time.Millisecond
	addr := env.start(t)
	exchange(t, "udp", addr, question("idle.example.", dns.TypeA))
	time.Sleep(3 * env.srv.workerIdle) // the first worker has ended
	before := runtime.NumGoroutine()

	const clients = 64
	var wg sync.WaitGroup
	peak := make(chan int, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
			if _, _, err := c.Exchange(question("idle.example.", dns.TypeA), addr); err != nil {
				t.Error(err)
			}
			peak <- runtime.NumGoroutine()
		}()
	}
	wg.Wait()
	close(peak)
	most := 0
	for n := range peak {
		most = max(most, n)
	}
	if most <= before+1 {
		t.Fatalf("the burst started no workers (goroutines %d before, at most %d during)", before, most)
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
	if resp := exchange(t, "udp", addr, question("idle.example.", dns.TypeA)); len(resp.Answer) != 1 {
		t.Fatalf("after the workers ended: %v", resp)
	}
}
