package dnstest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// DoHServer is an in-process DNS-over-HTTPS server (HTTP/2 or HTTP/1.1
// over TLS) on a loopback port. It records what each request looked like.
type DoHServer struct {
	srv      *httptest.Server
	Accepted atomic.Int32 // connections

	mu       sync.Mutex
	requests []DoHRequest
}

// DoHRequest is what a DNS-over-HTTPS request looked like.
type DoHRequest struct {
	Method, Path, ContentType string
	ProtoMajor                int
	ID                        uint16 // the DNS message's
	Size                      int    // of the body
}

// DoHReply turns the handler's packed answer into the HTTP response:
// status, content type and body.
type DoHReply func(w http.ResponseWriter, packed []byte)

// StartDoH serves h over HTTP/2 with pki's certificate until the test
// ends. A nil reply sends the handler's answer with status 200 and type
// application/dns-message.
func StartDoH(t testing.TB, pki *PKI, h Handler, reply DoHReply) *DoHServer {
	t.Helper()
	return StartDoHServer(t, pki, h, reply, true)
}

// StartDoHServer is StartDoH speaking HTTP/2 or, without http2, HTTP/1.1
// only.
func StartDoHServer(t testing.TB, pki *PKI, h Handler, reply DoHReply, http2 bool) *DoHServer {
	t.Helper()
	d := &DoHServer{}
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		q := new(dns.Msg)
		if err != nil || q.Unpack(body) != nil {
			http.Error(w, "bad query", http.StatusBadRequest)
			return
		}
		d.mu.Lock()
		d.requests = append(d.requests, DoHRequest{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.ProtoMajor, q.Id, len(body)})
		d.mu.Unlock()
		rec := &Recorder{
			Local:  &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443},
			Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000},
		}
		h(rec, q, false)
		if rec.Out == nil {
			return
		}
		if reply != nil {
			reply(w, rec.Out)
			return
		}
		w.Header().Set("Content-Type", "application/dns-message")
		w.Write(rec.Out)
	}))
	d.srv.EnableHTTP2 = http2
	d.srv.TLS = pki.ServerConfig()
	d.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			d.Accepted.Add(1)
		}
	}
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	return d
}

// URL is the server's address as an https:// upstream, with host in place
// of the listening IP.
func (d *DoHServer) URL(host, path string) string {
	_, port, _ := net.SplitHostPort(d.srv.Listener.Addr().String())
	return "https://" + net.JoinHostPort(host, port) + path
}

// Seen returns the requests received so far.
func (d *DoHServer) Seen() []DoHRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.requests)
}
