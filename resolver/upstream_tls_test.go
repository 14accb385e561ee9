package resolver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testServerName is the name in the test certificate, beside 127.0.0.1
// and ::1.
const testServerName = "dns.test"

// testPKI is a throw-away CA and a server certificate it signed.
type testPKI struct {
	roots *x509.CertPool
	cert  tls.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "egressd test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: testServerName},
		DNSNames:     []string{testServerName},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &testPKI{roots: roots, cert: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}}
}

func (p *testPKI) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS12}
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepted *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// dotServer is an in-process DNS-over-TLS server on a loopback port.
type dotServer struct {
	port     string
	accepted atomic.Int32
	queries  atomic.Int32
}

func startDoT(t testing.TB, pki *testPKI, h upstreamHandler) *dotServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dotServer{}
	_, s.port, _ = net.SplitHostPort(ln.Addr().String())
	srv := &dns.Server{
		Net:      "tcp-tls",
		Listener: tls.NewListener(countingListener{ln, &s.accepted}, pki.serverConfig()),
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			s.queries.Add(1)
			h(w, r, false)
		}),
		ReadTimeout: 5 * time.Second,
		// Unlimited: by default miekg/dns closes a connection after 128
		// queries, which would hide how connections are reused.
		MaxTCPQueries: -1,
	}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return s
}

// url is the server's address as an upstream, with an optional #name.
func (s *dotServer) url(host, serverName string) string {
	u := "tls://" + net.JoinHostPort(host, s.port)
	if serverName != "" {
		u += "#" + serverName
	}
	return u
}

// newTestUpstreams builds upstreams the way New does, closing their idle
// connections when the test ends.
func newTestUpstreams(t testing.TB, o Options, addrs ...string) []Upstream {
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

func exchangeWithin(u Upstream, d time.Duration, name string, qtype uint16) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return u.Exchange(ctx, upstreamQuery(&query{qname: name, qtype: qtype, qclass: dns.ClassINET}))
}

func TestTLSUpstreamAnswersOverOneConnection(t *testing.T) {
	pki := newTestPKI(t)
	srv := startDoT(t, pki, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil))
	u := newTestUpstreams(t, Options{RootCAs: pki.roots}, srv.url("127.0.0.1", testServerName))[0]
	const queries = 5
	for i := range queries {
		resp, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if got := answerData(resp); !slices.Equal(got, []string{"192.0.2.1"}) {
			t.Fatalf("query %d: answers %v", i, got)
		}
	}
	if n := srv.queries.Load(); n != queries {
		t.Errorf("server saw %d queries, want %d", n, queries)
	}
	if n := srv.accepted.Load(); n != 1 {
		t.Errorf("server accepted %d connections for %d sequential queries, want 1", n, queries)
	}
}

// A server that closes the connection after each answer: the pooled
// connection fails and the query is retried once on a fresh one.
func TestTLSUpstreamReconnectsAfterServerClose(t *testing.T) {
	pki := newTestPKI(t)
	answer := staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)
	srv := startDoT(t, pki, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		answer(w, r, udp)
		w.Close()
	})
	u := newTestUpstreams(t, Options{RootCAs: pki.roots}, srv.url("127.0.0.1", testServerName))[0]
	for i := range 3 {
		if _, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}
	if n := srv.accepted.Load(); n != 3 {
		t.Errorf("%d connections, want one per query", n)
	}
}

// Replies with another ID or question, and frames that do not parse, are
// skipped on the stream; the genuine reply after them is taken.
func TestTLSUpstreamSkipsMismatchedReplies(t *testing.T) {
	pki := newTestPKI(t)
	srv := startDoT(t, pki, spoofingUpstream(t, true))
	u := newTestUpstreams(t, Options{RootCAs: pki.roots}, srv.url("127.0.0.1", testServerName))[0]
	resp, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if got := answerData(resp); !slices.Equal(got, []string{"192.0.2.1"}) {
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
	pki := newTestPKI(t)
	good := staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)
	tests := []struct {
		name    string
		handler upstreamHandler
		url     func(s *dotServer) string
		roots   *x509.CertPool
		result  string // as classified for metrics
		errText string
	}{
		{"wrong server name", good, func(s *dotServer) string { return s.url("127.0.0.1", "other.test") }, pki.roots, resultError, "certificate"},
		{"unknown authority", good, func(s *dotServer) string { return s.url("127.0.0.1", testServerName) }, x509.NewCertPool(), resultError, "certificate"},
		{"only spoofed replies", spoofingUpstream(t, false), func(s *dotServer) string { return s.url("127.0.0.1", testServerName) }, pki.roots, resultTimeout, ""},
		{"silent", silent, func(s *dotServer) string { return s.url("127.0.0.1", testServerName) }, pki.roots, resultTimeout, ""},
		{"only garbage", garbage, func(s *dotServer) string { return s.url("127.0.0.1", testServerName) }, pki.roots, resultError, "unusable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startDoT(t, pki, tt.handler)
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

// Through the whole server: the first DoT upstream fails certificate
// verification, the second answers, and the answer reaches the firewall.
func TestServerDoTFailover(t *testing.T) {
	pki := newTestPKI(t)
	srv := startDoT(t, pki, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil))
	bad, good := srv.url("127.0.0.1", "other.test"), srv.url("127.0.0.1", testServerName)
	env := newEnv(t, Options{Upstreams: []string{bad, good}, RootCAs: pki.roots, CacheSize: 10})
	t.Cleanup(env.srv.closeIdleUpstreams)
	addr := env.start(t)
	resp := exchange(t, "udp", addr, question("a.example.", dns.TypeA))
	if resp.Rcode != dns.RcodeSuccess || !slices.Equal(answerData(resp), []string{"192.0.2.1"}) {
		t.Fatalf("got %v", resp)
	}
	waitFor(t, func() bool { // the log entry is written after the answer
		env.log.mu.Lock()
		defer env.log.mu.Unlock()
		return len(env.log.entries) > 0
	})
	if e := env.log.last(t); e.Upstream != good {
		t.Errorf("logged upstream %q, want %q", e.Upstream, good)
	}
	if allows := env.enforcer.allowances(); len(allows) != 1 || allows[0].IPs[0].String() != "192.0.2.1" {
		t.Errorf("firewall got %v", allows)
	}
	if n := srv.queries.Load(); n != 1 {
		t.Errorf("DoT server answered %d queries, want 1 (the bad name must fail before any query)", n)
	}
}

// BenchmarkUpstreamExchange measures upstream round trips over loopback:
// plain UDP against DoT and DoH over reused connections, one query at a
// time and many at once. conns/run is how many connections the server
// accepted from the upstream during one run.
func BenchmarkUpstreamExchange(b *testing.B) {
	pki := newTestPKI(b)
	answer := staticAnswer(b, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)
	dot, doh := startDoT(b, pki, answer), startDoH(b, pki, answer, nil)
	for _, bc := range []struct {
		name, addr string
		accepted   *atomic.Int32 // nil for plain DNS
	}{
		{"plain", startUpstream(b, answer).addr, nil},
		{"tls", dot.url("127.0.0.1", testServerName), &dot.accepted},
		{"https", doh.url("127.0.0.1", "/dns-query"), &doh.accepted},
	} {
		run := func(b *testing.B, loop func(b *testing.B, u Upstream)) {
			u := newTestUpstreams(b, Options{RootCAs: pki.roots}, bc.addr)[0]
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
			run(b, func(b *testing.B, u Upstream) {
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
			run(b, func(b *testing.B, u Upstream) {
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
	withPadding := upstreamQuery(&query{qname: "a.example.", qtype: dns.TypeA, qclass: dns.ClassINET})
	withPadding.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_PADDING{Padding: make([]byte, 7)}}
	noOPT := question("a.example.", dns.TypeA)
	tests := []struct {
		name    string
		q       *dns.Msg
		wantLen int // 0: a multiple of paddingBlock with one padding option
	}{
		{"short name", upstreamQuery(&query{qname: "a.example.", qtype: dns.TypeA, qclass: dns.ClassINET}), 0},
		{"long name", upstreamQuery(&query{qname: long, qtype: dns.TypeAAAA, qclass: dns.ClassINET}), 0},
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
