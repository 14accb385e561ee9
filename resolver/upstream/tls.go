package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// A DNS-over-TLS upstream keeps a few connections open and pipelines
// queries on them (RFC 7766 section 6.2.1.1, RFC 7858 section 3.4): up to
// maxTLSPending queries wait for replies on one connection, a second
// connection opens only when the first is full, and at most maxTLSConns
// exist, so a burst of misses costs a handshake or two, not one each.
// A connection idle for tlsIdleTimeout is closed; servers commonly close
// theirs after 10 to 30 seconds anyway.
const (
	maxTLSConns    = 8
	maxTLSPending  = 64
	tlsIdleTimeout = 20 * time.Second
	// maxTLSBadFrames consecutive frames that do not parse, or that carry
	// a pending ID with the wrong question, end a connection: the server
	// is broken or something is injecting into the stream.
	maxTLSBadFrames = 8
	// maxTLSAttempts bounds how often one query is sent when connections
	// end under it.
	maxTLSAttempts = 3
)

var (
	// errTLSConnLost is why a query's connection ended under it (see
	// tlsConnLostError); such a query is sent again.
	errTLSConnLost = errors.New("DNS-over-TLS connection lost")
	errTLSStalled  = errors.New("no reply on the connection within a query's timeout")
	errTLSIdle     = errors.New("closed after being idle")
	errTLSGarbage  = errors.New("upstream sent too many unusable replies over TLS")
)

// tlsUpstream speaks DNS over TLS (RFC 7858): length-prefixed messages as
// over TCP, many queries in flight per connection, replies matched by ID
// and question in whatever order they come.
type tlsUpstream struct {
	name string // as configured, for logs and metrics
	ep   *endpoint
	conf *tls.Config
	log  *slog.Logger

	// Limits, fixed before the first query (tests make them smaller).
	maxConns    int
	maxPending  int
	idleTimeout time.Duration

	mu      sync.Mutex
	conns   []*dotConn    // open or opening, oldest first
	waiting int           // queries waiting for a free slot
	freed   chan struct{} // closed, then replaced, when a slot frees up
}

func newTLSUpstream(name string, ep *endpoint, serverName string, roots *x509.CertPool, log *slog.Logger) *tlsUpstream {
	return &tlsUpstream{
		name: name,
		ep:   ep,
		conf: &tls.Config{
			ServerName:         serverName,
			RootCAs:            roots,
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(maxTLSConns),
		},
		log:         log,
		maxConns:    maxTLSConns,
		maxPending:  maxTLSPending,
		idleTimeout: tlsIdleTimeout,
		freed:       make(chan struct{}),
	}
}

func (u *tlsUpstream) String() string { return u.name }

// tlsConnLostError says when and why a connection ended with queries on it.
type tlsConnLostError struct {
	at    time.Time
	cause error
}

func newTLSConnLostError(cause error) *tlsConnLostError {
	return &tlsConnLostError{at: time.Now(), cause: cause}
}

func (e *tlsConnLostError) Error() string        { return errTLSConnLost.Error() + ": " + e.cause.Error() }
func (e *tlsConnLostError) Unwrap() error        { return e.cause }
func (e *tlsConnLostError) Is(target error) bool { return target == errTLSConnLost }

// Exchange sends query, padded and with an ID unique on its connection,
// and waits for the reply. A query whose connection ends before the reply
// (the server closed it, a read or write failed) is sent again on a
// connection opened after that happened, up to maxTLSAttempts times in
// all: a server may close after a fixed number of queries (miekg/dns-based
// ones after 128 by default), and under load a retried query can land past
// that number on its new connection too.
func (u *tlsUpstream) Exchange(ctx context.Context, query *dns.Msg) (*dns.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errNoDeadline
	}
	packed, err := packPadded(query)
	if err != nil {
		return nil, err
	}
	var reply *dns.Msg
	var openedAfter time.Time
	for attempt := 1; ; attempt++ {
		reply, err = u.attempt(ctx, query, packed, openedAfter)
		lost := (*tlsConnLostError)(nil)
		if !errors.As(err, &lost) || ctx.Err() != nil || attempt == maxTLSAttempts {
			break
		}
		u.log.Debug("DNS-over-TLS connection lost under a query; retrying", "upstream", u.name, "err", err)
		openedAfter = lost.at
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		return nil, err
	}
	return reply, nil
}

// attempt sends the query once, on a connection with a free slot opened
// after openedAfter if the pool has room for one.
func (u *tlsUpstream) attempt(ctx context.Context, query *dns.Msg, packed []byte, openedAfter time.Time) (*dns.Msg, error) {
	c, pq, err := u.reserve(ctx, query, openedAfter)
	if err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		u.abandon(c, pq)
		return nil, err
	}
	if err := c.write(ctx, pq, packed); err != nil {
		u.abandon(c, pq)
		return nil, err
	}
	select {
	case r := <-pq.done:
		return r.reply, r.err
	case <-ctx.Done():
		u.abandon(c, pq)
		return nil, fmt.Errorf("waiting for the reply: %w", ctx.Err())
	}
}

// reserve registers query on the oldest connection with a free slot,
// opening a new connection when all are full (or, with openedAfter set,
// none was opened after it) and the pool has room, and otherwise waits
// for a slot.
func (u *tlsUpstream) reserve(ctx context.Context, query *dns.Msg, openedAfter time.Time) (*dotConn, *dotQuery, error) {
	for {
		u.mu.Lock()
		c := u.withRoomLocked(openedAfter)
		opening := c == nil && len(u.conns) < u.maxConns
		if c == nil && !opening {
			c = u.withRoomLocked(time.Time{})
		}
		if opening {
			c = newDotConn(u)
			u.conns = append(u.conns, c)
		}
		if c != nil {
			pq := c.addLocked(query)
			u.mu.Unlock()
			if opening {
				// On its own goroutine, so this query can still give up
				// on ctx while the handshake goes on for the others.
				go c.open(ctx)
			}
			return c, pq, nil
		}
		u.waiting++
		freed := u.freed
		u.mu.Unlock()
		select {
		case <-freed:
			u.mu.Lock()
			u.waiting--
			u.mu.Unlock()
		case <-ctx.Done():
			u.mu.Lock()
			u.waiting--
			u.mu.Unlock()
			return nil, nil, fmt.Errorf("waiting for a free DNS-over-TLS connection: %w", ctx.Err())
		}
	}
}

// withRoomLocked returns the oldest connection opened after openedAfter
// with a free slot, or nil.
func (u *tlsUpstream) withRoomLocked(openedAfter time.Time) *dotConn {
	for _, c := range u.conns {
		if len(c.pending) < u.maxPending && c.opened.After(openedAfter) {
			return c
		}
	}
	return nil
}

// slotFreedLocked wakes the queries waiting for a slot.
func (u *tlsUpstream) slotFreedLocked() {
	if u.waiting > 0 {
		close(u.freed)
		u.freed = make(chan struct{})
	}
}

// abandon gives up on pq, which timed out or never got sent. If nothing at
// all arrived on the connection since pq was written, the connection is
// taken for dead and closed; its other queries retry elsewhere.
func (u *tlsUpstream) abandon(c *dotConn, pq *dotQuery) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if c.pending[pq.q.Id] != pq {
		return // answered or failed meanwhile
	}
	c.removeLocked(pq.q.Id)
	if c.err == nil && !pq.sent.IsZero() && !c.lastRead.After(pq.sent) {
		c.failLocked(newTLSConnLostError(errTLSStalled))
	}
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

// closeIdle closes every connection without queries in flight.
func (u *tlsUpstream) closeIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range slices.Clone(u.conns) {
		if c.tc != nil && len(c.pending) == 0 {
			c.failLocked(errTLSIdle)
		}
	}
}

// dotFrame returns packed with its two-byte length prefix and id in place
// of the ID it was packed with.
func dotFrame(packed []byte, id uint16) []byte {
	f := make([]byte, 2+len(packed))
	binary.BigEndian.PutUint16(f, uint16(len(packed)))
	copy(f[2:], packed)
	binary.BigEndian.PutUint16(f[2:], id)
	return f
}
