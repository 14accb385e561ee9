package resolver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/internal/dnstest"
	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/querylog"
)

// encEnv is a Server with DNS over TLS and HTTPS on loopback ports.
type encEnv struct {
	*testEnv
	pki              *dnstest.PKI
	dotAddr, dohAddr string
}

func startEncrypted(t *testing.T, o Options) *encEnv {
	t.Helper()
	pki := dnstest.NewPKI(t)
	o.Encrypted.TLSListen = []string{"127.0.0.1:0"}
	o.Encrypted.HTTPSListen = []string{"127.0.0.1:0"}
	o.Encrypted.Certificate = &pki.Cert
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	env := newEnv(t, o)
	env.start(t)
	dot, doh := env.srv.EncryptedAddrs()
	if len(dot) != 1 || len(doh) != 1 {
		t.Fatalf("encrypted addresses %v %v", dot, doh)
	}
	return &encEnv{testEnv: env, pki: pki, dotAddr: dot[0].String(), dohAddr: doh[0].String()}
}

func (e *encEnv) tlsClient(protos ...string) *tls.Config {
	return &tls.Config{RootCAs: e.pki.Roots, ServerName: dnstest.ServerName, NextProtos: protos, MinVersion: tls.VersionTLS12}
}

// dialDoT opens a DNS-over-TLS connection from source.
func (e *encEnv) dialDoT(t *testing.T, source string) *dns.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", e.dotAddr, e.tlsClient("dot"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &dns.Conn{Conn: c}
}

// doh sends one DNS-over-HTTPS request and returns the response.
func (e *encEnv) doh(t *testing.T, client *http.Client, method string, m *dns.Msg, header http.Header) *http.Response {
	t.Helper()
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + e.dohAddr + DefaultHTTPSPath
	var req *http.Request
	if method == http.MethodGet {
		req, err = http.NewRequest(method, url+"?dns="+base64.RawURLEncoding.EncodeToString(wire), nil)
	} else {
		req, err = http.NewRequest(method, url, bytes.NewReader(wire))
		req.Header.Set("Content-Type", dohMediaType)
	}
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func dnsBody(t *testing.T, resp *http.Response) *dns.Msg {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s: %s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != dohMediaType {
		t.Fatalf("content type %q", ct)
	}
	m := new(dns.Msg)
	if err := m.Unpack(body); err != nil {
		t.Fatal(err)
	}
	return m
}

func (e *encEnv) httpClient(t *testing.T, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: e.tlsClient(), Protocols: new(http.Protocols)}
	if h2 {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	t.Cleanup(c.CloseIdleConnections) // before the server's shutdown waits for them
	return c
}

// Queries over DNS over TLS and HTTPS take the plain path: policy, firewall
// push for the connection's client, query log and metrics, which name the
// transport.
func TestEncryptedSamePath(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"allowed.example. 120 IN A 192.0.2.7"}, nil))
	m := metrics.New()
	e := startEncrypted(t, Options{Upstreams: []string{up.addr}, Metrics: m})
	e.policy.names = map[string]policy.Decision{"denied.example.": {Verdict: policy.Deny, Group: testGroup, Rule: "denied.example", Mode: policy.ModeEnforce}}

	type exchangeFunc func(t *testing.T, m *dns.Msg) *dns.Msg
	viaDoT := func(t *testing.T, m *dns.Msg) *dns.Msg {
		c := e.dialDoT(t, "127.0.0.1")
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		r, err := c.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	viaDoH := func(h2 bool, method string) exchangeFunc {
		return func(t *testing.T, m *dns.Msg) *dns.Msg {
			resp := e.doh(t, e.httpClient(t, h2), method, m, nil)
			if h2 != (resp.ProtoMajor == 2) {
				t.Errorf("protocol %s, want HTTP/2 %v", resp.Proto, h2)
			}
			r := dnsBody(t, resp)
			wantAge := "max-age=120"
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				wantAge = "max-age=60" // the synthetic SOA's negative TTL
			}
			if cc := resp.Header.Get("Cache-Control"); cc != wantAge {
				t.Errorf("Cache-Control %q, want %q", cc, wantAge)
			}
			return r
		}
	}
	tests := []struct {
		name      string
		transport string
		ex        exchangeFunc
	}{
		{"dot", "tls", viaDoT},
		{"doh h2 get", "https", viaDoH(true, http.MethodGet)},
		{"doh h2 post", "https", viaDoH(true, http.MethodPost)},
		{"doh http/1.1 get", "https", viaDoH(false, http.MethodGet)},
		{"doh http/1.1 post", "https", viaDoH(false, http.MethodPost)},
	}
	// The answer is written before the query is recorded: wait for the
	// record.
	logged := func(t *testing.T, n int) querylog.Entry {
		t.Helper()
		if !wait.Until(5*time.Second, time.Millisecond, func() bool {
			e.log.mu.Lock()
			defer e.log.mu.Unlock()
			return len(e.log.entries) >= n
		}) {
			t.Fatalf("no query log entry %d", n)
		}
		e.log.mu.Lock()
		defer e.log.mu.Unlock()
		return e.log.entries[n-1]
	}
	entries := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(m.QueriesByTransport.WithLabelValues(tc.transport))
			pushes := len(e.enforcer.allowances())
			r := tc.ex(t, question("allowed.example.", dns.TypeA))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("allowed.example: %v", r)
			}
			allows := e.enforcer.allowances()
			if len(allows) != pushes+1 || allows[len(allows)-1].Client != netip.MustParseAddr("127.0.0.1") ||
				allows[len(allows)-1].IPs[0] != netip.MustParseAddr("192.0.2.7") {
				t.Fatalf("firewall pushes %v, want one more for 127.0.0.1 -> 192.0.2.7", allows[pushes:])
			}
			entries++
			if l := logged(t, entries); l.Transport != tc.transport || l.QName != "allowed.example." || l.Client != "127.0.0.1" {
				t.Errorf("query log %+v, want transport %s", l, tc.transport)
			}
			r = tc.ex(t, question("denied.example.", dns.TypeA))
			if r.Rcode != dns.RcodeNameError {
				t.Errorf("denied.example: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
			}
			entries++
			if l := logged(t, entries); l.Transport != tc.transport || l.Decision != decisionDeny {
				t.Errorf("query log %+v, want a deny over %s", l, tc.transport)
			}
			if got := testutil.ToFloat64(m.QueriesByTransport.WithLabelValues(tc.transport)) - before; got != 2 {
				t.Errorf("egressd_queries_by_transport_total{transport=%q} grew by %v, want 2", tc.transport, got)
			}
		})
	}
	if got := testutil.ToFloat64(m.QueriesByTransport.WithLabelValues("udp")); got != 0 {
		t.Errorf("udp counted %v queries", got)
	}
	// Plain UDP is still counted as udp.
	exchange(t, "udp", e.srv.Addrs()[0].String(), question("allowed.example.", dns.TypeA))
	if !wait.Until(5*time.Second, time.Millisecond, func() bool { return testutil.ToFloat64(m.QueriesByTransport.WithLabelValues("udp")) == 1 }) {
		t.Errorf("udp counted %v queries, want 1", testutil.ToFloat64(m.QueriesByTransport.WithLabelValues("udp")))
	}
	entries++
	if l := logged(t, entries); l.Transport != "udp" {
		t.Errorf("udp query logged with transport %q", l.Transport)
	}
}

// RFC 7766 section 6.2.1.1: queries pipelined on one DNS-over-TLS
// connection are answered as each is ready, so a slow one does not hold
// back a fast one behind it.
func TestDoTPipelinedOutOfOrder(t *testing.T) {
	release := make(chan struct{})
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		if r.Question[0].Name == "slow.example." {
			<-release
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = mustRRs(t, []string{r.Question[0].Name + " 60 IN A 192.0.2.1"})
		w.WriteMsg(m)
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	e := startEncrypted(t, Options{Upstreams: []string{up.addr}})
	c := e.dialDoT(t, "127.0.0.1")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	slow, fast := question("slow.example.", dns.TypeA), question("fast.example.", dns.TypeA)
	slow.Id, fast.Id = 1, 2
	for _, m := range []*dns.Msg{slow, fast} {
		if err := c.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	r, err := c.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	if r.Id != 2 {
		t.Fatalf("first answer is for query %d, want the fast one (2) while the slow one waits", r.Id)
	}
	close(release)
	if r, err = c.ReadMsg(); err != nil || r.Id != 1 || len(r.Answer) != 1 {
		t.Fatalf("second answer %v, %v; want the slow one (1)", r, err)
	}
}

// The TCP limits hold for DNS over TLS: per client address, the idle
// timeout, and outsiders get one REFUSED per connection.
func TestDoTLimits(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	t.Run("per client", func(t *testing.T) {
		e := startEncrypted(t, Options{Upstreams: []string{up.addr}, TCPMaxConnsPerClient: 2, TCPIdleTimeout: time.Minute})
		for i := range 2 {
			c := e.dialDoT(t, "127.0.0.1")
			if !askOn(c, uint16(i+1)) {
				t.Fatalf("connection %d not answered", i+1)
			}
		}
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: 3 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", e.dotAddr, e.tlsClient("dot"))
		if err == nil {
			defer c.Close()
			if askOn(&dns.Conn{Conn: c}, 3) {
				t.Fatal("a third connection from one client was served with tcp_max_conns_per_client 2")
			}
		}
		// Another client address still gets in.
		if !askOn(e.dialDoT(t, "127.0.0.2"), 4) {
			t.Error("another client was turned away")
		}
		if clients, _ := e.srv.TCPConnections(); clients < 3 {
			t.Errorf("%d connections counted, want at least 3", clients)
		}
		if rejected, _ := e.srv.TCPRejected(); rejected != 1 {
			t.Errorf("%d connections counted as rejected, want 1", rejected)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		e := startEncrypted(t, Options{Upstreams: []string{up.addr}, TCPIdleTimeout: 150 * time.Millisecond})
		c := e.dialDoT(t, "127.0.0.1")
		if !askOn(c, 1) {
			t.Fatal("not answered")
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second)) // far beyond the idle timeout
		_, err := c.ReadMsg()
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("idle connection still open: read %v", err)
		}
	})
	t.Run("outsider", func(t *testing.T) {
		e := startEncrypted(t, Options{Upstreams: []string{up.addr}, Settings: Settings{Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}})
		c := e.dialDoT(t, "127.0.0.9")
		c.SetDeadline(time.Now().Add(5 * time.Second))
		for id := uint16(1); id <= 2; id++ {
			q := question("a.example.", dns.TypeA)
			q.Id = id
			if err := c.WriteMsg(q); err != nil && id == 1 {
				t.Fatal(err)
			}
		}
		r, err := c.ReadMsg()
		if err != nil || r.Rcode != dns.RcodeRefused {
			t.Fatalf("outsider's first query: %v, %v; want REFUSED", r, err)
		}
		if r, err := c.ReadMsg(); err == nil {
			t.Fatalf("outsider's second query on one connection answered: %v", r)
		}
	})
}

// TLS below 1.2 is refused.
func TestEncryptedTLSMinimum(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, nil, nil))
	e := startEncrypted(t, Options{Upstreams: []string{up.addr}})
	for _, addr := range []string{e.dotAddr, e.dohAddr} {
		cfg := e.tlsClient()
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			c.Close()
			t.Errorf("%s: TLS 1.1 handshake succeeded", addr)
		}
	}
}

// A new certificate applies to new handshakes; an open connection keeps
// working.
func TestEncryptedCertificateReload(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	e := startEncrypted(t, Options{Upstreams: []string{up.addr}})
	open := e.dialDoT(t, "127.0.0.1")
	if !askOn(open, 1) {
		t.Fatal("not answered")
	}
	next := dnstest.NewPKI(t)
	e.srv.SetCertificate(&next.Cert)
	if !askOn(open, 2) {
		t.Error("the open connection stopped working after the certificate changed")
	}
	for _, addr := range []string{e.dotAddr, e.dohAddr} {
		if c, err := tls.Dial("tcp", addr, e.tlsClient()); err == nil {
			c.Close()
			t.Errorf("%s: handshake verified against the old CA after the reload", addr)
		}
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: next.Roots, ServerName: dnstest.ServerName})
		if err != nil {
			t.Errorf("%s: handshake with the new certificate: %v", addr, err)
			continue
		}
		c.Close()
	}
}

// DNS over HTTPS requests that are not DNS queries get HTTP errors.
func TestDoHRequestErrors(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, nil, nil))
	e := startEncrypted(t, Options{Upstreams: []string{up.addr}})
	client := e.httpClient(t, true)
	base := "https://" + e.dohAddr
	tests := []struct {
		name, method, path, ctype, body string
		want                            int
	}{
		{"wrong path", http.MethodGet, "/other?dns=AAAB", "", "", http.StatusNotFound},
		{"no dns parameter", http.MethodGet, DefaultHTTPSPath, "", "", http.StatusBadRequest},
		{"not base64url", http.MethodGet, DefaultHTTPSPath + "?dns=***", "", "", http.StatusBadRequest},
		{"short message", http.MethodGet, DefaultHTTPSPath + "?dns=AAAB", "", "", http.StatusBadRequest},
		{"wrong content type", http.MethodPost, DefaultHTTPSPath, "text/plain", "x", http.StatusUnsupportedMediaType},
		{"too large", http.MethodPost, DefaultHTTPSPath, dohMediaType, strings.Repeat("x", 70000), http.StatusRequestEntityTooLarge},
		{"method", http.MethodPut, DefaultHTTPSPath, dohMediaType, "x", http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// X-Forwarded-For names the client only when the connection comes from a
// trusted proxy, and then only the hops the proxies appended.
func TestDoHForwardedFor(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	tests := []struct {
		name    string
		trusted []netip.Prefix
		xff     []string
		client  string
		rcode   int
	}{
		{"no proxies trusted", nil, []string{"127.0.0.9"}, "127.0.0.1", dns.RcodeSuccess},
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, []string{"127.0.0.9"}, "127.0.0.9", dns.RcodeSuccess},
		{"spoofed hop before the proxy's", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, []string{"127.0.0.7, 127.0.0.9"}, "127.0.0.9", dns.RcodeSuccess},
		{"chain of trusted proxies", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("127.0.0.5/32")}, []string{"127.0.0.9", "127.0.0.5"}, "127.0.0.9", dns.RcodeSuccess},
		{"forwarded outsider", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, []string{"192.0.2.50"}, "192.0.2.50", dns.RcodeRefused},
		{"trusted proxy, no header", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil, "127.0.0.1", dns.RcodeSuccess},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o Options
			o.Upstreams, o.TrustedProxies = []string{up.addr}, tc.trusted
			e := startEncrypted(t, o)
			r := dnsBody(t, e.doh(t, e.httpClient(t, true), http.MethodPost, question("a.example.", dns.TypeA), http.Header{"X-Forwarded-For": tc.xff}))
			if r.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			if l := e.log.last(t); l.Client != tc.client {
				t.Errorf("query logged for client %s, want %s", l.Client, tc.client)
			}
		})
	}
}

// An outsider's DoH connection carries one REFUSED, like its TCP ones; a
// client's stays open.
func TestDoHOutsiderOneQuery(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	var o Options
	o.Upstreams, o.Clients = []string{up.addr}, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	e := startEncrypted(t, o)
	tests := []struct {
		name      string
		xff       []string
		rcode     int
		wantClose bool
	}{
		{"client", nil, dns.RcodeSuccess, false},
		{"outsider", []string{"127.0.0.9"}, dns.RcodeRefused, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.doh(t, e.httpClient(t, false), http.MethodGet, question("a.example.", dns.TypeA), http.Header{"X-Forwarded-For": tc.xff})
			if r := dnsBody(t, resp); r.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			if resp.Close != tc.wantClose {
				t.Errorf("connection closes after the answer: %v, want %v", resp.Close, tc.wantClose)
			}
		})
	}
}

// RFC 9462: _dns.resolver.arpa names egressd's own encrypted endpoints,
// NODATA without them; use-application-dns.net stays NXDOMAIN.
func TestDDR(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, nil, nil))
	e := startEncrypted(t, Options{Upstreams: []string{up.addr}, Settings: Settings{DoHCanary: true}})
	dotPort := netip.MustParseAddrPort(e.dotAddr).Port()
	dohPort := netip.MustParseAddrPort(e.dohAddr).Port()
	r := e.serve(t, "127.0.0.1", question("_dns.resolver.arpa.", dns.TypeSVCB))
	want := []string{
		"_dns.resolver.arpa.\t60\tIN\tSVCB\t1 dns.test. alpn=\"dot\" port=\"" + itoa(dotPort) + "\" ipv4hint=\"127.0.0.1\"",
		"_dns.resolver.arpa.\t60\tIN\tSVCB\t2 dns.test. alpn=\"h2,http/1.1\" port=\"" + itoa(dohPort) + "\" ipv4hint=\"127.0.0.1\" dohpath=\"/dns-query{?dns}\"",
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != len(want) {
		t.Fatalf("_dns.resolver.arpa SVCB: %v", r)
	}
	for i, rr := range r.Answer {
		if rr.String() != want[i] {
			t.Errorf("answer %d:\n got %s\nwant %s", i, rr, want[i])
		}
	}
	if r := e.serve(t, "127.0.0.1", question("_dns.resolver.arpa.", dns.TypeA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("_dns.resolver.arpa A: %v, want NODATA", r)
	}
	if r := e.serve(t, "127.0.0.1", question("use-application-dns.net.", dns.TypeA)); r.Rcode != dns.RcodeNameError {
		t.Errorf("use-application-dns.net: %v, want NXDOMAIN", r)
	}

	// A new certificate names another host: the target follows it.
	next := dnstest.NewPKI(t).Cert
	next.Leaf = &x509.Certificate{DNSNames: []string{"*.wild.test", "Other.Test"}} // what certName reads
	e.srv.SetCertificate(&next)
	r = e.serve(t, "127.0.0.1", question("_dns.resolver.arpa.", dns.TypeSVCB))
	if len(r.Answer) != 2 || r.Answer[0].(*dns.SVCB).Target != "other.test." || r.Answer[1].(*dns.SVCB).Target != "other.test." {
		t.Errorf("after SetCertificate: %v, want target other.test.", r)
	}

	plain := newEnv(t, Options{Upstreams: []string{up.addr}, Settings: Settings{DoHCanary: true}})
	plain.start(t)
	if r := plain.serve(t, "127.0.0.1", question("_dns.resolver.arpa.", dns.TypeSVCB)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("without encrypted listeners _dns.resolver.arpa SVCB: %v, want NODATA", r)
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// Shutdown ends encrypted connections and frees their ports.
func TestEncryptedShutdown(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	e := startEncrypted(t, Options{Upstreams: []string{up.addr}, TCPIdleTimeout: time.Minute})
	c := e.dialDoT(t, "127.0.0.1")
	if !askOn(c, 1) {
		t.Fatal("not answered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.ReadMsg(); err == nil {
		t.Error("connection still open after Shutdown")
	}
	for _, addr := range []string{e.dotAddr, e.dohAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s not freed: %v", addr, err)
			continue
		}
		l.Close()
	}
}

// DNS-over-HTTPS queries are multiplexed on one HTTP/2 connection: as many
// at once as the per-connection stream limit allows are all answered over
// the one connection.
func TestDoHConcurrentStreams(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	e := startEncrypted(t, Options{Upstreams: []string{up.addr}})
	client := e.httpClient(t, true)
	dnsBody(t, e.doh(t, client, http.MethodPost, question("a.example.", dns.TypeA), nil)) // the connection, and the limit it announces
	const n = dohMaxStreams
	errs := make(chan error, n)
	for i := range n {
		go func() {
			m := question("a.example.", dns.TypeA)
			m.Id = uint16(i)
			wire, _ := m.Pack()
			resp, err := client.Post("https://"+e.dohAddr+DefaultHTTPSPath, dohMediaType, bytes.NewReader(wire))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			r := new(dns.Msg)
			if err := r.Unpack(body); err != nil || r.Id != uint16(i) || len(r.Answer) != 1 || resp.ProtoMajor != 2 {
				errs <- errors.New(resp.Status + ": answer does not fit its query")
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if clients, _ := e.srv.TCPConnections(); clients != 1 {
		t.Errorf("%d connections, want all queries on one", clients)
	}
}
