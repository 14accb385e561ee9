package upstream

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/internal/dnstest"
	"github.com/egressd/egressd/metrics"
)

func TestSpoofedRepliesOnlyTimeOut(t *testing.T) {
	up := dnstest.Start(t, dnstest.Spoofing(t, false))
	u := newPlainUpstream(up.Addr, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	resp, err := u.Exchange(ctx, NewQuery("a.example.", dns.TypeA, dns.ClassINET, false, false))
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

func TestUpstreamFailover(t *testing.T) {
	const timeout = 200 * time.Millisecond
	good := func(t *testing.T) string {
		return dnstest.Start(t, dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil)).Addr
	}
	rcode := func(rc int) func(t *testing.T) string {
		return func(t *testing.T) string { return dnstest.Start(t, dnstest.StaticAnswer(t, rc, nil, nil)).Addr }
	}
	quiet := func(t *testing.T) string { return dnstest.Start(t, dnstest.Silent).Addr }
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
		firstResult string
		minT, maxT  time.Duration
		answeredBy  int // index of the server that answered, -1 for none
	}{
		{"first answers", []func(*testing.T) string{good, quiet}, resultOK, 0, timeout, 0},
		{"first silent", []func(*testing.T) string{quiet, good}, resultTimeout, timeout, 2 * timeout, 1},
		{"first servfail", []func(*testing.T) string{rcode(dns.RcodeServerFailure), good}, resultServfail, 0, timeout, 1},
		{"first refused", []func(*testing.T) string{rcode(dns.RcodeRefused), good}, resultRefused, 0, timeout, 1},
		{"first port closed", []func(*testing.T) string{closed, good}, resultError, 0, timeout, 1},
		{"all silent", []func(*testing.T) string{quiet, quiet}, resultTimeout, 2 * timeout, 3 * timeout, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addrs []string
			for _, s := range tt.servers {
				addrs = append(addrs, s(t))
			}
			m := metrics.New()
			set := newTestSet(t, Options{Servers: addrs, Timeout: timeout, Metrics: m})
			start := time.Now()
			resp, server, err := set.Exchange(context.Background(), NewQuery("a.example.", dns.TypeA, dns.ClassINET, false, false))
			elapsed := time.Since(start)
			if tt.answeredBy < 0 && err == nil {
				t.Errorf("got %v from %s, want an error", resp, server)
			}
			if tt.answeredBy >= 0 && (err != nil || resp.Rcode != dns.RcodeSuccess) {
				t.Errorf("got %v (%v), want an answer", resp, err)
			}
			if elapsed < tt.minT || elapsed > tt.maxT+100*time.Millisecond {
				t.Errorf("took %v, want %v to %v", elapsed, tt.minT, tt.maxT)
			}
			if got := testutil.ToFloat64(m.UpstreamRequests.WithLabelValues(addrs[0], tt.firstResult)); got != 1 {
				t.Errorf("upstream_requests_total{server=first,result=%s} = %v, want 1", tt.firstResult, got)
			}
			want := ""
			if tt.answeredBy >= 0 {
				want = addrs[tt.answeredBy]
			}
			if server != want {
				t.Errorf("answered by %q, want %q", server, want)
			}
		})
	}
}

// newTestSet builds a Set, closing its idle connections when the test ends.
func newTestSet(t testing.TB, o Options) *Set {
	t.Helper()
	set, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.CloseIdle)
	return set
}

// A server that stopped answering goes to the back of the order for a
// while, so not every miss pays its timeout; it is tried again afterwards.
func TestDeadUpstreamBacksOff(t *testing.T) {
	const timeout = 150 * time.Millisecond
	dead := dnstest.Start(t, dnstest.Silent)
	good := dnstest.Start(t, dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	set := newTestSet(t, Options{Servers: []string{dead.Addr, good.Addr}, Timeout: timeout, Now: func() time.Time { return clock }})

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
		clock = clock.Add(st.advance)
		start := time.Now()
		resp, _, err := set.Exchange(context.Background(), NewQuery("a.example.", dns.TypeA, dns.ClassINET, false, false))
		elapsed := time.Since(start)
		if err != nil || resp.Rcode != dns.RcodeSuccess {
			t.Fatalf("step %d: %v (%v)", i, resp, err)
		}
		if n := dead.Queries.Load(); n != st.deadSeen {
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

// An upstream that ignores the advertised UDP size: a reply that fits the
// read buffer is taken over UDP; a bigger one is asked for again over
// TCP, whole, and never taken cut.
func TestReplyBiggerThanReadBuffer(t *testing.T) {
	for _, tt := range []struct {
		name    string
		records int
		queries int32 // UDP, then TCP when it did not fit
	}{
		{"fits", 100, 1},
		{"too big", 2 * udpReadSize / 16, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.records*16 <= udpReadSize && tt.queries == 2 {
				t.Fatalf("%d records fit %d bytes", tt.records, udpReadSize)
			}
			up := dnstest.Start(t, func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
				m := new(dns.Msg)
				m.SetReply(r)
				for i := range tt.records {
					m.Answer = append(m.Answer, &dns.A{
						Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
						A:   net.IPv4(10, 0, byte(i>>8), byte(i)),
					})
				}
				w.WriteMsg(m) // whatever size the query advertised
			})
			u := newPlainUpstream(up.Addr, 0, nil)
			for _, wire := range []bool{false, true} {
				up.Queries.Store(0)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				reply, raw, err := u.exchange(ctx, NewQuery("big.example.", dns.TypeA, dns.ClassINET, false, false), wire)
				cancel()
				if err != nil {
					t.Fatalf("wire %t: %v", wire, err)
				}
				if raw != nil {
					reply = new(dns.Msg)
					if err := reply.Unpack(raw); err != nil {
						t.Fatal(err)
					}
				}
				if len(reply.Answer) != tt.records {
					t.Errorf("wire %t: %d records, want %d", wire, len(reply.Answer), tt.records)
				}
				if got := up.Queries.Load(); got != tt.queries {
					t.Errorf("wire %t: upstream asked %d times, want %d", wire, got, tt.queries)
				}
			}
		})
	}
}
