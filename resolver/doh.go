package resolver

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dohMediaType is RFC 8484's media type for DNS messages.
const dohMediaType = "application/dns-message"

// dohListener serves DNS over HTTPS (RFC 8484) on one address: GET with
// ?dns=BASE64URL and POST with the message as body, over HTTP/2 and
// HTTP/1.1.
type dohListener struct {
	s    *Server
	ln   *connLimiter
	http *http.Server
}

func (s *Server) newDoHListener(ln *connLimiter, idle time.Duration) *dohListener {
	l := &dohListener{s: s, ln: ln}
	l.http = &http.Server{
		Handler:           l,
		TLSConfig:         s.tlsConfig("h2", "http/1.1"),
		ReadHeaderTimeout: idle,
		ReadTimeout:       idle,
		WriteTimeout:      idle + tcpWriteTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(slogWriter{s.log}, "", 0),
		// Bound the streams one client can open on one connection, like
		// the queries of one DNS-over-TLS connection.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: dohMaxStreams},
	}
	return l
}

func (l *dohListener) serve() {
	if err := l.http.ServeTLS(l.ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.s.log.Error("dns over https stopped", "err", err)
	}
}

func (l *dohListener) shutdown(ctx context.Context) error {
	err := l.http.Shutdown(ctx)
	if err != nil {
		l.http.Close()
	}
	// http.Server closes only the listeners its Serve has taken over: if
	// serve's goroutine has not got that far yet, the socket would stay
	// bound after Shutdown returns.
	l.ln.Close()
	return err
}

// ServeHTTP answers one DNS-over-HTTPS request.
func (l *dohListener) ServeHTTP(hw http.ResponseWriter, r *http.Request) {
	s := l.s
	if r.URL.Path != s.dohPath() {
		http.NotFound(hw, r)
		return
	}
	var msg []byte
	switch r.Method {
	case http.MethodGet:
		b64 := r.URL.Query().Get("dns")
		if b64 == "" {
			http.Error(hw, "missing dns parameter", http.StatusBadRequest)
			return
		}
		var err error
		// RFC 8484 section 6: base64url without padding; accept padding too.
		if msg, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(b64, "=")); err != nil {
			http.Error(hw, "dns parameter is not base64url", http.StatusBadRequest)
			return
		}
	case http.MethodPost:
		if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != dohMediaType {
			http.Error(hw, "content type must be "+dohMediaType, http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(hw, r.Body, dns.MaxMsgSize))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				http.Error(hw, "message too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(hw, "cannot read body", http.StatusBadRequest)
			return
		}
		msg = body
	default:
		hw.Header().Set("Allow", "GET, POST")
		http.Error(hw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if len(msg) > dns.MaxMsgSize {
		http.Error(hw, "message too large", http.StatusRequestEntityTooLarge)
		return
	}
	client := s.dohClient(r)
	if len(msg) < headerLen || msg[2]&0x80 != 0 || !s.admitMessageFrom(msg, client) {
		http.Error(hw, "not a DNS query", http.StatusBadRequest)
		return
	}
	if !s.clientAllowed(client) {
		// Outsiders get one REFUSED per connection, as over TCP: the
		// connection closes after it (HTTP/2: a graceful GOAWAY).
		hw.Header().Set("Connection", "close")
	}
	var out []byte
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	w := &encryptedWriter{
		transport: transportHTTPS,
		local:     local,
		remote:    net.TCPAddrFromAddrPort(netip.AddrPortFrom(client, 0)),
		write: func(b []byte) error {
			out = append(out[:0], b...)
			return nil
		},
	}
	s.serveWire(w, msg)
	if out == nil {
		http.Error(hw, "no answer", http.StatusServiceUnavailable)
		return
	}
	h := hw.Header()
	h.Set("Content-Type", dohMediaType)
	h.Set("Content-Length", strconv.Itoa(len(out)))
	h.Set("Cache-Control", "max-age="+strconv.FormatUint(uint64(minTTL(out)), 10))
	hw.Write(out)
}

// dohClient is the client a DNS-over-HTTPS request is answered for: the
// connection's source, or, when that is a trusted proxy, the address
// X-Forwarded-For names last that is not one (the proxies append to it,
// so addresses left of the first untrusted one are the client's to
// choose and never believed).
func (s *Server) dohClient(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	client := ap.Addr().Unmap()
	if !s.trustedProxy(client) {
		return client
	}
	hops := r.Header.Values("X-Forwarded-For")
	var all []string
	for _, h := range hops {
		all = append(all, strings.Split(h, ",")...)
	}
	for i := len(all) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(all[i]))
		if err != nil {
			return client // a hop we cannot read: stop at the last one we could
		}
		client = a.Unmap()
		if !s.trustedProxy(client) {
			return client
		}
	}
	return client
}

// minTTL is the smallest TTL of the records in a rendered answer, for
// Cache-Control (RFC 8484 section 5.1); 0 when it has none or does not
// parse. A negative answer's SOA carries its negative TTL (RFC 2308).
func minTTL(wire []byte) uint32 {
	var m dns.Msg
	if m.Unpack(wire) != nil {
		return 0
	}
	var ttl uint32
	first := true
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			t := h.Ttl
			if soa, ok := rr.(*dns.SOA); ok && soa.Minttl < t {
				t = soa.Minttl
			}
			if first || t < ttl {
				ttl, first = t, false
			}
		}
	}
	return ttl
}

// slogWriter sends net/http's error log (TLS handshake errors and the
// like) to the server's logger at debug level.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("dns over https", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}
