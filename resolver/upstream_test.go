package resolver

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/metrics"
)

// spoofingUpstream sends a burst of replies that must all be ignored
// before (optionally) the genuine one.
func spoofingUpstream(t *testing.T, genuine bool) upstreamHandler {
	evil := mustRRs(t, []string{"a.example. 300 IN A 198.51.100.66"})
	good := mustRRs(t, []string{"a.example. 300 IN A 192.0.2.1"})
	return func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		send := func(mutate func(m *dns.Msg)) {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Answer = evil
			mutate(m)
			w.WriteMsg(m)
		}
		send(func(m *dns.Msg) { m.Id++ })
		send(func(m *dns.Msg) { m.Question[0].Name = "evil.example." })
		send(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA })
		send(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
		send(func(m *dns.Msg) { m.Response = false })
		send(func(m *dns.Msg) { m.Question = nil })
		w.Write([]byte{0xde, 0xad, 0xbe, 0xef, 0x81, 0x80, 0, 1}) // does not parse
		if genuine {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Question[0].Name = "A.EXAMPLE." // case differs: still a match
			m.Answer = good
			w.WriteMsg(m)
		}
	}
}

func TestSpoofedRepliesIgnored(t *testing.T) {
	up := startUpstream(t, spoofingUpstream(t, true))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
	if got := answerData(resp); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("answers %v, want the genuine reply only", got)
	}
	allows := env.enforcer.allowances()
	if len(allows) != 1 || !slices.Equal(allows[0].IPs, []netip.Addr{netip.MustParseAddr("192.0.2.1")}) {
		t.Errorf("firewall got %v, want only the genuine address", allows)
	}
}

func TestSpoofedRepliesOnlyTimeOut(t *testing.T) {
	up := startUpstream(t, spoofingUpstream(t, false))
	u := newPlainUpstream(up.addr, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	resp, err := u.Exchange(ctx, upstreamQuery(&query{qname: "a.example.", qtype: dns.TypeA, qclass: dns.ClassINET}))
	if err == nil {
		t.Fatalf("accepted a spoofed reply: %v", resp)
	}
	if classify(nil, err) != resultTimeout {
		t.Errorf("error %v not classified as timeout", err)
	}
	if elapsed := time.Since(start); elapsed < 250*time.Millisecond || elapsed > time.Second {
		t.Errorf("gave up after %v, want the deadline", elapsed)
	}
}

func TestTruncatedReplyRetriedOverTCP(t *testing.T) {
	var udpQueries, tcpQueries atomic.Int32
	answer := staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1", "a.example. 300 IN A 192.0.2.2"}, nil)
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		if udp {
			udpQueries.Add(1)
			m := new(dns.Msg)
			m.SetReply(r)
			m.Truncated = true
			w.WriteMsg(m)
			return
		}
		tcpQueries.Add(1)
		answer(w, r, udp)
	})
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 10})
	addr := env.start(t)
	resp := exchange(t, "udp", addr, question("a.example.", dns.TypeA))
	if resp.Truncated || !slices.Equal(answerData(resp), []string{"192.0.2.1", "192.0.2.2"}) {
		t.Fatalf("got %v", resp)
	}
	if udpQueries.Load() != 1 || tcpQueries.Load() != 1 {
		t.Errorf("upstream saw %d UDP and %d TCP queries, want 1 and 1", udpQueries.Load(), tcpQueries.Load())
	}
	if env.srv.cache.len() != 1 {
		t.Error("the full TCP answer was not cached")
	}
}

func TestUpstreamFailover(t *testing.T) {
	const timeout = 200 * time.Millisecond
	good := func(t *testing.T) string {
		return startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil)).addr
	}
	rcode := func(rc int) func(t *testing.T) string {
		return func(t *testing.T) string { return startUpstream(t, staticAnswer(t, rc, nil, nil)).addr }
	}
	quiet := func(t *testing.T) string { return startUpstream(t, silent).addr }
	closed := func(t *testing.T) string {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := c.LocalAddr().String()
		c.Close()
		return addr
	}
	tests := []struct {
		name        string
		servers     []func(t *testing.T) string
		rcode       int
		firstResult string
		minT, maxT  time.Duration
		answeredBy  int // index of the server that answered, -1 for none
	}{
		{"first answers", []func(*testing.T) string{good, quiet}, dns.RcodeSuccess, resultOK, 0, timeout, 0},
		{"first silent", []func(*testing.T) string{quiet, good}, dns.RcodeSuccess, resultTimeout, timeout, 2 * timeout, 1},
		{"first servfail", []func(*testing.T) string{rcode(dns.RcodeServerFailure), good}, dns.RcodeSuccess, resultServfail, 0, timeout, 1},
		{"first refused", []func(*testing.T) string{rcode(dns.RcodeRefused), good}, dns.RcodeSuccess, resultRefused, 0, timeout, 1},
		{"first port closed", []func(*testing.T) string{closed, good}, dns.RcodeSuccess, resultError, 0, timeout, 1},
		{"all silent", []func(*testing.T) string{quiet, quiet}, dns.RcodeServerFailure, resultTimeout, 2 * timeout, 3 * timeout, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addrs []string
			for _, s := range tt.servers {
				addrs = append(addrs, s(t))
			}
			m := metrics.New()
			env := newEnv(t, Options{Upstreams: addrs, Timeout: timeout, Metrics: m})
			start := time.Now()
			resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
			elapsed := time.Since(start)
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if elapsed < tt.minT || elapsed > tt.maxT+100*time.Millisecond {
				t.Errorf("took %v, want %v to %v", elapsed, tt.minT, tt.maxT)
			}
			if got := testutil.ToFloat64(m.UpstreamRequests.WithLabelValues(addrs[0], tt.firstResult)); got != 1 {
				t.Errorf("upstream_requests_total{server=first,result=%s} = %v, want 1", tt.firstResult, got)
			}
			e := env.log.last(t)
			want := ""
			if tt.answeredBy >= 0 {
				want = addrs[tt.answeredBy]
			}
			if e.Upstream != want {
				t.Errorf("logged upstream %q, want %q", e.Upstream, want)
			}
		})
	}
}

// A server that stopped answering goes to the back of the order for a
// while, so not every miss pays its timeout; it is tried again afterwards.
func TestDeadUpstreamBacksOff(t *testing.T) {
	const timeout = 150 * time.Millisecond
	dead := startUpstream(t, silent)
	good := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{dead.addr, good.addr}, Timeout: timeout})

	steps := []struct {
		advance  time.Duration
		deadSeen int32
		slow     bool
	}{
		{0, 1, true},               // first miss waits for the dead server
		{time.Second, 1, false},    // in backoff: skipped
		{upstreamBackoff, 2, true}, // backoff over: tried again
		{upstreamBackoff - time.Second, 2, false},
	}
	for i, st := range steps {
		env.clock.advance(st.advance)
		start := time.Now()
		resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
		elapsed := time.Since(start)
		if resp.Rcode != dns.RcodeSuccess {
			t.Fatalf("step %d: rcode %s", i, dns.RcodeToString[resp.Rcode])
		}
		if n := dead.queries.Load(); n != st.deadSeen {
			t.Errorf("step %d: dead server asked %d times, want %d", i, n, st.deadSeen)
		}
		if slow := elapsed >= timeout; slow != st.slow {
			t.Errorf("step %d: took %v, want slow=%v", i, elapsed, st.slow)
		}
	}
}

func TestUpstreamOrder(t *testing.T) {
	h := newUpstreamHealth(3)
	now := time.Unix(100, 0)
	h.observe(0, false, now)
	h.observe(1, true, now)
	if got := h.order(now); !slices.Equal(got, []int{1, 2, 0}) {
		t.Errorf("order %v, want the failed server last", got)
	}
	if got := h.order(now.Add(upstreamBackoff)); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("order after backoff %v, want configured order", got)
	}
	h.observe(1, false, now)
	h.observe(0, true, now)
	if got := h.order(now); !slices.Equal(got, []int{0, 2, 1}) {
		t.Errorf("order %v, want server 0 recovered and 1 last", got)
	}
}
