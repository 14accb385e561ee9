package resolver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// EncryptedOptions configures DNS over TLS (RFC 7858) and DNS over HTTPS
// (RFC 8484) for clients. Their queries take the same path as plain ones
// (ServeDNS): the same ACL, rate limit, policy, firewall push and query
// log, and the TCP connection limits, counted per listener.
type EncryptedOptions struct {
	TLSListen   []string // IP:PORT, DNS over TLS
	HTTPSListen []string // IP:PORT, DNS over HTTPS (HTTP/2 and HTTP/1.1)
	HTTPSPath   string   // "" picks DefaultHTTPSPath
	// Certificate serves both; SetCertificate replaces it.
	Certificate *tls.Certificate
}

// DefaultHTTPSPath is where DNS over HTTPS is served unless configured.
const DefaultHTTPSPath = "/dns-query"

// dotMaxPipelined bounds the queries of one DNS-over-TLS connection being
// answered at once; beyond it the connection is not read until one is
// answered. With the per-client connection limit it bounds one client's
// goroutines.
const dotMaxPipelined = 64

// dohMaxStreams bounds the concurrent HTTP/2 streams of one DNS-over-HTTPS
// connection, like dotMaxPipelined.
const dohMaxStreams = dotMaxPipelined

// encrypted is the Server's DNS-over-TLS and DNS-over-HTTPS state.
type encrypted struct {
	cert        atomic.Pointer[tls.Certificate]
	byTransport *transportCounters
	ddr         atomic.Pointer[ddrRecords] // nil until listening

	mu  sync.Mutex
	dot []*dotListener
	doh []*dohListener
}

// SetCertificate makes cert the certificate of every TLS handshake from
// now on; open connections keep theirs.
func (s *Server) SetCertificate(cert *tls.Certificate) {
	if cert == nil {
		return
	}
	s.enc.cert.Store(cert)
	s.enc.mu.Lock()
	defer s.enc.mu.Unlock()
	if len(s.enc.dot)+len(s.enc.doh) > 0 { // the discovery target is the certificate's name
		dot, doh := s.enc.endpoints()
		s.enc.ddr.Store(newDDRRecords(dot, doh, s.dohPath(), cert))
	}
}

// tlsConfig is the TLS server configuration of both listeners; nextProtos
// are the ALPN protocols offered.
func (s *Server) tlsConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.enc.cert.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("resolver: no certificate")
		},
	}
}

// connLimits are the TCP idle timeout and connection limits (see
// tcpServer), which DNS over TLS and HTTPS share.
func (s *Server) connLimits() (time.Duration, tcpLimits) {
	idle := s.opts.TCPIdleTimeout
	if idle <= 0 {
		idle = DefaultTCPIdleTimeout
	}
	limits := tcpLimits{
		max: s.opts.TCPMaxConns, perClient: s.opts.TCPMaxConnsPerClient,
		outsiders: outsiderTCPMaxConns, perOutsider: outsiderTCPPerPrefix,
	}
	if limits.max <= 0 {
		limits.max = DefaultTCPMaxConns
	}
	if limits.perClient <= 0 {
		limits.perClient = DefaultTCPMaxConnsPerClient
	}
	return idle, limits
}

// boundEncrypted are the encrypted listeners bound by Start, not yet
// serving.
type boundEncrypted struct {
	dot []*dotListener
	doh []*dohListener
}

func (b *boundEncrypted) close() {
	for _, l := range b.dot {
		l.ln.Close()
	}
	for _, l := range b.doh {
		l.ln.Close()
	}
}

// bindEncrypted binds every DNS-over-TLS and DNS-over-HTTPS address; on
// an error it closes what it bound.
func (s *Server) bindEncrypted() (*boundEncrypted, error) {
	b := &boundEncrypted{}
	eo := s.opts.Encrypted
	if len(eo.TLSListen)+len(eo.HTTPSListen) > 0 && s.enc.cert.Load() == nil {
		return nil, errors.New("resolver: DNS over TLS or HTTPS needs a certificate")
	}
	idle, limits := s.connLimits()
	for _, addr := range eo.TLSListen {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			b.close()
			return nil, listenError("tls", addr, err)
		}
		b.dot = append(b.dot, s.newDoTListener(newConnLimiter(l, limits, s.clientAllowed, s.log), idle))
	}
	for _, addr := range eo.HTTPSListen {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			b.close()
			return nil, listenError("https", addr, err)
		}
		member := func(a netip.Addr) bool { return s.clientAllowed(a) || s.trustedProxy(a) }
		b.doh = append(b.doh, s.newDoHListener(newConnLimiter(l, limits, member, s.log), idle))
	}
	return b, nil
}

// serveEncrypted starts serving what bindEncrypted bound and publishes
// the endpoints for discovery (DDR).
func (s *Server) serveEncrypted(b *boundEncrypted) {
	s.enc.mu.Lock()
	defer s.enc.mu.Unlock()
	s.enc.dot, s.enc.doh = b.dot, b.doh
	for _, l := range b.dot {
		go l.serve()
	}
	for _, l := range b.doh {
		go l.serve()
	}
	dot, doh := s.enc.endpoints()
	s.enc.ddr.Store(newDDRRecords(dot, doh, s.dohPath(), s.enc.cert.Load()))
}

// endpoints are the bound DNS-over-TLS and DNS-over-HTTPS addresses.
// Called with mu held.
func (e *encrypted) endpoints() (dot, doh []netip.AddrPort) {
	for _, l := range e.dot {
		dot = append(dot, l.ln.Addr().(*net.TCPAddr).AddrPort())
	}
	for _, l := range e.doh {
		doh = append(doh, l.ln.Addr().(*net.TCPAddr).AddrPort())
	}
	return dot, doh
}

// EncryptedAddrs returns the bound DNS-over-TLS and DNS-over-HTTPS
// addresses.
func (s *Server) EncryptedAddrs() (dot, doh []net.Addr) {
	s.enc.mu.Lock()
	defer s.enc.mu.Unlock()
	for _, l := range s.enc.dot {
		dot = append(dot, l.ln.Addr())
	}
	for _, l := range s.enc.doh {
		doh = append(doh, l.ln.Addr())
	}
	return dot, doh
}

// encryptedLimiters are the connection limiters of the encrypted
// listeners, which TCPConnections and TCPRejected count in.
func (s *Server) encryptedLimiters() []*connLimiter {
	s.enc.mu.Lock()
	defer s.enc.mu.Unlock()
	var out []*connLimiter
	for _, l := range s.enc.dot {
		out = append(out, l.ln)
	}
	for _, l := range s.enc.doh {
		out = append(out, l.ln)
	}
	return out
}

// shutdownEncrypted closes the encrypted listeners, lets the queries
// already read finish, and closes the connections, up to ctx.
func (s *Server) shutdownEncrypted(ctx context.Context) error {
	s.enc.mu.Lock()
	dot, doh := s.enc.dot, s.enc.doh
	s.enc.dot, s.enc.doh = nil, nil
	s.enc.mu.Unlock()
	s.enc.ddr.Store(nil)
	var errs []error
	for _, l := range dot {
		errs = append(errs, l.shutdown(ctx))
	}
	for _, l := range doh {
		errs = append(errs, l.shutdown(ctx))
	}
	return errors.Join(errs...)
}

// encryptedWriter is the dns.ResponseWriter ServeDNS answers a DNS-over-TLS
// or DNS-over-HTTPS query through.
type encryptedWriter struct {
	transport     transport
	local, remote net.Addr
	write         func([]byte) error
}

func (w *encryptedWriter) LocalAddr() net.Addr  { return w.local }
func (w *encryptedWriter) RemoteAddr() net.Addr { return w.remote }
func (w *encryptedWriter) Write(b []byte) (int, error) {
	if err := w.write(b); err != nil {
		return 0, err
	}
	return len(b), nil
}
func (w *encryptedWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	return w.write(b)
}
func (w *encryptedWriter) Close() error        { return nil }
func (w *encryptedWriter) TsigStatus() error   { return nil }
func (w *encryptedWriter) TsigTimersOnly(bool) {}
func (w *encryptedWriter) Hijack()             {}

// serveWire answers one query message read from an encrypted transport
// the way miekg/dns answers plain ones: responses are dropped (answering
// them could start a loop), a message that does not parse gets FORMERR
// when its header does, and everything else goes to ServeDNS.
func (s *Server) serveWire(w *encryptedWriter, msg []byte) {
	if len(msg) < headerLen || msg[2]&0x80 != 0 { // QR
		return
	}
	req := new(dns.Msg)
	if err := req.Unpack(msg); err != nil {
		var h dns.Msg
		h.Id = uint16(msg[0])<<8 | uint16(msg[1])
		h.Response, h.Rcode = true, dns.RcodeFormatError
		w.WriteMsg(&h)
		return
	}
	s.ServeDNS(w, req)
}

// trustedProxy reports whether a is a trusted proxy now.
func (s *Server) trustedProxy(a netip.Addr) bool {
	for _, p := range s.settings().TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *Server) dohPath() string {
	if p := s.opts.Encrypted.HTTPSPath; p != "" {
		return p
	}
	return DefaultHTTPSPath
}
