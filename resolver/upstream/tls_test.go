package upstream

import (
	"context"
	"crypto/x509"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
)

// newTestUpstreams builds upstreams the way New does, closing their idle
// connections when the test ends.
func newTestUpstreams(t testing.TB, o Options, addrs ...string) []server {
	t.Helper()
	b, err := newUpstreamBuilder(o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ups, err := b.list(addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, u := range ups {
			if c, ok := u.(idleCloser); ok {
				c.closeIdle()
			}
		}
	})
	return ups
}

func exchangeWithin(u server, d time.Duration, name string, qtype uint16) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return u.Exchange(ctx, NewQuery(name, qtype, dns.ClassINET, false, false))
}

func TestTLSUpstreamAnswersOverOneConnection(t *testing.T) {
	pki := dnstest.NewPKI(t)
	srv := dnstest.StartDoT(t, pki, dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil))
	u := newTestUpstreams(t, Options{RootCAs: pki.Roots}, srv.URL("127.0.0.1", dnstest.ServerName))[0]
	const queries = 5
	for i := range queries {
		resp, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if got := dnstest.AnswerData(resp); !slices.Equal(got, []string{"192.0.2.1"}) {
			t.Fatalf("query %d: answers %v", i, got)
		}
	}
	if n := srv.Queries.Load(); n != queries {
		t.Errorf("server saw %d queries, want %d", n, queries)
	}
	if n := srv.Accepted.Load(); n != 1 {
		t.Errorf("server accepted %d connections for %d sequential queries, want 1", n, queries)
	}
}

// A server that closes the connection after each answer: the pooled
// connection fails and the query is retried once on a fresh one.
func TestTLSUpstreamReconnectsAfterServerClose(t *testing.T) {
	pki := dnstest.NewPKI(t)
	answer := dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)
	srv := dnstest.StartDoT(t, pki, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		answer(w, r, udp)
		w.Close()
	})
	u := newTestUpstreams(t, Options{RootCAs: pki.Roots}, srv.URL("127.0.0.1", dnstest.ServerName))[0]
	for i := range 3 {
		if _, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}
	if n := srv.Accepted.Load(); n != 3 {
		t.Errorf("%d connections, want one per query", n)
	}
}

// Replies with another ID or question, and frames that do not parse, are
// skipped on the stream; the genuine reply after them is taken.
func TestTLSUpstreamSkipsMismatchedReplies(t *testing.T) {
	pki := dnstest.NewPKI(t)
	srv := dnstest.StartDoT(t, pki, dnstest.Spoofing(t, true))
	u := newTestUpstreams(t, Options{RootCAs: pki.Roots}, srv.URL("127.0.0.1", dnstest.ServerName))[0]
	resp, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if got := dnstest.AnswerData(resp); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Errorf("answers %v, want the genuine reply only", got)
	}
}

// garbage answers with frames that do not parse, more than a connection
// puts up with.
func garbage(w dns.ResponseWriter, _ *dns.Msg, _ bool) {
	for range maxTLSBadFrames + 2 {
		w.Write([]byte{0xde, 0xad, 0xbe, 0xef, 0x81, 0x80, 0, 1})
	}
}

func TestTLSUpstreamErrors(t *testing.T) {
	pki := dnstest.NewPKI(t)
	good := dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)
	tests := []struct {
		name    string
		handler dnstest.Handler
		url     func(s *dnstest.DoTServer) string
		roots   *x509.CertPool
		result  string // as classified for metrics
		errText string
	}{
		{"wrong server name", good, func(s *dnstest.DoTServer) string { return s.URL("127.0.0.1", "other.test") }, pki.Roots, resultError, "certificate"},
		{"unknown authority", good, func(s *dnstest.DoTServer) string { return s.URL("127.0.0.1", dnstest.ServerName) }, x509.NewCertPool(), resultError, "certificate"},
		{"only spoofed replies", dnstest.Spoofing(t, false), func(s *dnstest.DoTServer) string { return s.URL("127.0.0.1", dnstest.ServerName) }, pki.Roots, resultTimeout, ""},
		{"silent", dnstest.Silent, func(s *dnstest.DoTServer) string { return s.URL("127.0.0.1", dnstest.ServerName) }, pki.Roots, resultTimeout, ""},
		{"only garbage", garbage, func(s *dnstest.DoTServer) string { return s.URL("127.0.0.1", dnstest.ServerName) }, pki.Roots, resultError, "unusable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := dnstest.StartDoT(t, pki, tt.handler)
			u := newTestUpstreams(t, Options{RootCAs: tt.roots}, tt.url(srv))[0]
			const timeout = 300 * time.Millisecond
			start := time.Now()
			resp, err := exchangeWithin(u, timeout, "a.example.", dns.TypeA)
			if err == nil {
				t.Fatalf("got an answer: %v", resp)
			}
			if got := classify(nil, err); got != tt.result {
				t.Errorf("error %v classified %s, want %s", err, got, tt.result)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %q does not mention %q", err, tt.errText)
			}
			if elapsed := time.Since(start); elapsed > timeout+200*time.Millisecond {
				t.Errorf("took %v with a %v timeout", elapsed, timeout)
			}
		})
	}
}

// BenchmarkUpstreamExchange measures upstream round trips over loopback:
// plain UDP against DoT and DoH over reused connections, one query at a
// time and many at once. conns/run is how many connections the server
// accepted from the upstream during one run.
func BenchmarkUpstreamExchange(b *testing.B) {
	pki := dnstest.NewPKI(b)
	answer := dnstest.StaticAnswer(b, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)
	dot, doh := dnstest.StartDoT(b, pki, answer), dnstest.StartDoH(b, pki, answer, nil)
	for _, bc := range []struct {
		name, addr string
		accepted   *atomic.Int32 // nil for plain DNS
	}{
		{"plain", dnstest.Start(b, answer).Addr, nil},
		{"tls", dot.URL("127.0.0.1", dnstest.ServerName), &dot.Accepted},
		{"https", doh.URL("127.0.0.1", "/dns-query"), &doh.Accepted},
	} {
		run := func(b *testing.B, loop func(b *testing.B, u server)) {
			u := newTestUpstreams(b, Options{RootCAs: pki.Roots}, bc.addr)[0]
			var before int32
			if bc.accepted != nil {
				before = bc.accepted.Load()
			}
			b.ReportAllocs()
			loop(b, u)
			if bc.accepted != nil {
				b.ReportMetric(float64(bc.accepted.Load()-before), "conns/run")
			}
		}
		b.Run(bc.name, func(b *testing.B) {
			run(b, func(b *testing.B, u server) {
				for b.Loop() {
					resp, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA)
					if err != nil || len(resp.Answer) != 1 {
						b.Fatalf("%v %v", resp, err)
					}
				}
			})
		})
		// Many misses at once, as under load: 16 goroutines per core.
		b.Run(bc.name+"-concurrent", func(b *testing.B) {
			run(b, func(b *testing.B, u server) {
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						resp, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA)
						if err != nil || len(resp.Answer) != 1 {
							b.Errorf("%v %v", resp, err)
							return
						}
					}
				})
			})
		})
	}
}

func TestPackPadded(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".example."
	withPadding := NewQuery("a.example.", dns.TypeA, dns.ClassINET, false, false)
	withPadding.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_PADDING{Padding: make([]byte, 7)}}
	noOPT := new(dns.Msg).SetQuestion("a.example.", dns.TypeA)
	tests := []struct {
		name    string
		q       *dns.Msg
		wantLen int // 0: a multiple of paddingBlock with one padding option
	}{
		{"short name", NewQuery("a.example.", dns.TypeA, dns.ClassINET, false, false), 0},
		{"long name", NewQuery(long, dns.TypeAAAA, dns.ClassINET, false, false), 0},
		{"padding already there", withPadding, 0},
		{"no OPT", noOPT, noOPT.Len()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.q.String()
			packed, err := packPadded(tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if tt.q.String() != before {
				t.Error("packPadded modified the query")
			}
			var m dns.Msg
			if err := m.Unpack(packed); err != nil {
				t.Fatal(err)
			}
			if tt.wantLen != 0 {
				if len(packed) != tt.wantLen {
					t.Errorf("length %d, want %d", len(packed), tt.wantLen)
				}
				return
			}
			if len(packed)%paddingBlock != 0 {
				t.Errorf("length %d is not a multiple of %d", len(packed), paddingBlock)
			}
			pads := 0
			for _, o := range m.IsEdns0().Option {
				if o.Option() == dns.EDNS0PADDING {
					pads++
				}
			}
			if pads != 1 {
				t.Errorf("%d padding options, want 1", pads)
			}
			if m.Question[0] != tt.q.Question[0] {
				t.Errorf("question %v, want %v", m.Question[0], tt.q.Question[0])
			}
		})
	}
}
