package resolver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Idle DNS-over-TLS connections are kept for reuse, a few per upstream,
// and dropped once idle longer than servers commonly keep them open. At
// most maxTLSConns queries are on the wire at once per upstream (one per
// connection); more wait for a turn, so a burst of misses cannot turn into
// a burst of handshakes.
const (
	maxIdleTLSConns = 8
	maxTLSConns     = 32
	tlsIdleTimeout  = 20 * time.Second
)

var errTLSMismatch = errors.New("upstream sent no matching reply over TLS")

// tlsUpstream speaks DNS over TLS (RFC 7858): length-prefixed messages as
// over TCP, one query at a time per connection, connections reused.
type tlsUpstream struct {
	name string // as configured, for logs and metrics
	ep   *endpoint
	conf *tls.Config
	log  *slog.Logger
	now  func() time.Time
	busy chan struct{} // one token per connection in use

	mu   sync.Mutex
	idle []idleTLSConn // oldest first
}

type idleTLSConn struct {
	conn  *tls.Conn
	since time.Time
}

func newTLSUpstream(name string, ep *endpoint, serverName string, roots *x509.CertPool, log *slog.Logger) *tlsUpstream {
	return &tlsUpstream{
		name: name,
		ep:   ep,
		conf: &tls.Config{
			ServerName:         serverName,
			RootCAs:            roots,
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(maxIdleTLSConns),
		},
		log:  log,
		now:  time.Now,
		busy: make(chan struct{}, maxTLSConns),
	}
}

func (u *tlsUpstream) String() string { return u.name }

// Exchange sends query, padded and with a fresh random ID, over a pooled
// connection or a new one. A pooled connection may have been closed by the
// server in the meantime, so a failure on one is retried once on a fresh
// connection.
func (u *tlsUpstream) Exchange(ctx context.Context, query *dns.Msg) (*dns.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errNoDeadline
	}
	q := *query
	q.Id = dns.Id()
	packed, err := packPadded(&q)
	if err != nil {
		return nil, err
	}
	select {
	case u.busy <- struct{}{}:
		defer func() { <-u.busy }()
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a connection: %w", ctx.Err())
	}
	if conn := u.pooled(); conn != nil {
		reply, err := u.roundTrip(ctx, conn, packed, &q)
		if err == nil || ctx.Err() != nil {
			return reply, err
		}
		u.log.Debug("reused DNS-over-TLS connection failed; reconnecting", "upstream", u.name, "err", err)
	}
	conn, err := u.connect(ctx)
	if err != nil {
		return nil, err
	}
	return u.roundTrip(ctx, conn, packed, &q)
}

// roundTrip writes one query and reads until the matching reply. The
// connection goes back to the pool after a clean exchange and is closed
// after anything else.
func (u *tlsUpstream) roundTrip(ctx context.Context, conn *tls.Conn, packed []byte, q *dns.Msg) (*dns.Msg, error) {
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	reply, err := exchangeFramed(conn, packed, q)
	if !stop() || err != nil {
		// The context ended (and the deadline was spoiled) or the stream
		// is in an unknown state.
		conn.Close()
		return nil, contextError(ctx, err)
	}
	conn.SetDeadline(time.Time{})
	u.release(conn)
	return reply, nil
}

// exchangeFramed writes packed with its two-byte length prefix and reads
// framed messages until one answers q. Messages that do not parse or
// answer something else are skipped, a few of them.
func exchangeFramed(conn net.Conn, packed []byte, q *dns.Msg) (*dns.Msg, error) {
	frame := make([]byte, 2+len(packed))
	binary.BigEndian.PutUint16(frame, uint16(len(packed)))
	copy(frame[2:], packed)
	if _, err := conn.Write(frame); err != nil {
		return nil, err
	}
	bufp := udpBuffers.Get().(*[]byte)
	defer udpBuffers.Put(bufp)
	buf := *bufp
	for range maxSkippedTCP {
		if _, err := io.ReadFull(conn, buf[:2]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint16(buf)
		if _, err := io.ReadFull(conn, buf[:n]); err != nil {
			return nil, err
		}
		reply := new(dns.Msg)
		if err := reply.Unpack(buf[:n]); err != nil {
			continue
		}
		if answers(reply, q) {
			return reply, nil
		}
	}
	return nil, errTLSMismatch
}

// connect dials the server and completes the TLS handshake, verifying the
// certificate against the configured server name.
func (u *tlsUpstream) connect(ctx context.Context) (*tls.Conn, error) {
	raw, err := u.ep.dial(ctx)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, u.conf)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, contextError(ctx, fmt.Errorf("tls handshake: %w", err))
	}
	return conn, nil
}

// pooled takes the most recently used idle connection, closing those that
// have been idle too long.
func (u *tlsUpstream) pooled() *tls.Conn {
	now := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	for len(u.idle) > 0 && now.Sub(u.idle[0].since) > tlsIdleTimeout {
		u.idle[0].conn.Close()
		u.idle = u.idle[1:]
	}
	if len(u.idle) == 0 {
		return nil
	}
	last := u.idle[len(u.idle)-1]
	u.idle = u.idle[:len(u.idle)-1]
	return last.conn
}

func (u *tlsUpstream) release(conn *tls.Conn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.idle) >= maxIdleTLSConns {
		conn.Close()
		return
	}
	u.idle = append(u.idle, idleTLSConn{conn, u.now()})
}

// closeIdle closes every pooled connection.
func (u *tlsUpstream) closeIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.idle {
		c.conn.Close()
	}
	u.idle = nil
}
