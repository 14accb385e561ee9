package upstream

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
)

func TestHTTPSUpstreamAnswersOverOneConnection(t *testing.T) {
	pki := dnstest.NewPKI(t)
	d := dnstest.StartDoH(t, pki, dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil), nil)
	u := newTestUpstreams(t, Options{RootCAs: pki.Roots}, d.URL("127.0.0.1", "/dns-query"))[0]
	const queries = 5
	for i := range queries {
		q := NewQuery("a.example.", dns.TypeA, dns.ClassINET, false, false)
		q.Id = uint16(1000 + i)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := u.Exchange(ctx, q)
		cancel()
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if got := dnstest.AnswerData(resp); !slices.Equal(got, []string{"192.0.2.1"}) {
			t.Fatalf("query %d: answers %v", i, got)
		}
		if resp.Id != q.Id {
			t.Errorf("query %d: reply ID %d, want the query's %d back", i, resp.Id, q.Id)
		}
	}
	reqs := d.Seen()
	if len(reqs) != queries {
		t.Fatalf("server saw %d requests, want %d", len(reqs), queries)
	}
	for i, r := range reqs {
		want := dnstest.DoHRequest{Method: http.MethodPost, Path: "/dns-query", ContentType: dnsMessageType, ProtoMajor: 2, ID: 0, Size: paddingBlock}
		if r != want {
			t.Errorf("request %d: %+v, want %+v", i, r, want)
		}
	}
	if n := d.Accepted.Load(); n != 1 {
		t.Errorf("server accepted %d connections for %d queries, want 1", n, queries)
	}
}

// Queries at once share one HTTP/2 connection, or a few: a burst before
// any connection is up must not dial one each. Over HTTP/1.1 (one query
// per connection at a time) the burst waits for the few connections the
// upstream may open rather than opening more.
func TestHTTPSUpstreamBurstSharesConnections(t *testing.T) {
	tests := []struct {
		name      string
		http2     bool
		wantProto int
	}{
		{"HTTP/2", true, 2},
		{"HTTP/1.1 only", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pki := dnstest.NewPKI(t)
			answer := dnstest.AddressFor(t, "192.0.2.1")
			d := dnstest.StartDoHServer(t, pki, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
				time.Sleep(20 * time.Millisecond) // keep the queries overlapping
				answer(w, r, udp)
			}, nil, tt.http2)
			u := newTestUpstreams(t, Options{RootCAs: pki.Roots}, d.URL("127.0.0.1", "/dns-query"))[0]
			const queries = 40
			replies, errs := exchangeBurst(u, queries, 3*time.Second)
			checkBurstReplies(t, replies, errs)
			first := d.Accepted.Load()
			if first < 1 || first > maxHTTPSConns {
				t.Errorf("%d connections for %d queries, want 1 to %d", first, queries, maxHTTPSConns)
			}
			replies, errs = exchangeBurst(u, queries, 3*time.Second)
			checkBurstReplies(t, replies, errs)
			if n := d.Accepted.Load(); n != first {
				t.Errorf("a second burst opened %d more connections, want the open ones reused", n-first)
			}
			for _, r := range d.Seen() {
				if r.ProtoMajor != tt.wantProto {
					t.Fatalf("request over HTTP/%d, want HTTP/%d", r.ProtoMajor, tt.wantProto)
				}
			}
		})
	}
}

// Host names in https:// upstreams are verified against the certificate
// (the test server's certificate is for dns.test and 127.0.0.1 only).
func TestHTTPSUpstreamErrors(t *testing.T) {
	pki := dnstest.NewPKI(t)
	good := dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)
	wrongQuestion := func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Question[0].Name = "evil.example."
		m.Answer = dnstest.MustRRs(t, []string{"evil.example. 300 IN A 198.51.100.66"})
		w.WriteMsg(m)
	}
	withType := func(status int, contentType string) dnstest.DoHReply {
		return func(w http.ResponseWriter, packed []byte) {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			w.Write(packed)
		}
	}
	tests := []struct {
		name    string
		handler dnstest.Handler
		reply   dnstest.DoHReply
		errText string
	}{
		{"server error", good, withType(http.StatusInternalServerError, dnsMessageType), "HTTP status 500"},
		{"not found", good, withType(http.StatusNotFound, "text/plain"), "HTTP status 404"},
		{"wrong content type", good, withType(http.StatusOK, "text/html"), "content type"},
		{"no content type", good, func(w http.ResponseWriter, packed []byte) {
			w.Header()["Content-Type"] = nil
			w.Write(packed)
		}, "content type"},
		{"body is not DNS", good, func(w http.ResponseWriter, _ []byte) {
			w.Header().Set("Content-Type", dnsMessageType)
			w.Write([]byte{1, 2, 3})
		}, "reply"},
		{"larger than a DNS message", good, func(w http.ResponseWriter, packed []byte) {
			w.Header().Set("Content-Type", dnsMessageType)
			w.Write(append(packed, bytes.Repeat([]byte{0}, dns.MaxMsgSize)...))
		}, "larger"},
		{"reply to another question", wrongQuestion, nil, "does not answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dnstest.StartDoH(t, pki, tt.handler, tt.reply)
			u := newTestUpstreams(t, Options{RootCAs: pki.Roots}, d.URL("127.0.0.1", "/dns-query"))[0]
			resp, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA)
			if err == nil {
				t.Fatalf("accepted %v", resp)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %q does not mention %q", err, tt.errText)
			}
			if got := classify(nil, err); got != resultError {
				t.Errorf("classified %s, want %s", got, resultError)
			}
		})
	}
}

func TestHTTPSUpstreamVerifiesCertificate(t *testing.T) {
	pki, other := dnstest.NewPKI(t), dnstest.NewPKI(t)
	d := dnstest.StartDoH(t, pki, dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil), nil)
	u := newTestUpstreams(t, Options{RootCAs: other.Roots}, d.URL("127.0.0.1", "/dns-query"))[0]
	_, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("error %v, want a certificate verification failure", err)
	}
	if n := len(d.Seen()); n != 0 {
		t.Errorf("%d queries reached an unverified server", n)
	}
}

func TestHTTPSUpstreamTimeout(t *testing.T) {
	pki := dnstest.NewPKI(t)
	release := make(chan struct{})
	d := dnstest.StartDoH(t, pki, func(w dns.ResponseWriter, r *dns.Msg, _ bool) { <-release }, nil)
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for the handler
	u := newTestUpstreams(t, Options{RootCAs: pki.Roots}, d.URL("127.0.0.1", "/dns-query"))[0]
	const timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := exchangeWithin(u, timeout, "a.example.", dns.TypeA)
	if got := classify(nil, err); got != resultTimeout {
		t.Errorf("error %v classified %s, want %s", err, got, resultTimeout)
	}
	if elapsed := time.Since(start); elapsed > timeout+200*time.Millisecond {
		t.Errorf("took %v with a %v timeout", elapsed, timeout)
	}
}
