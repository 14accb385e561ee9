package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// server is one server queries are forwarded to. Exchange must not
// modify query, must verify that the reply answers it, and must return by
// ctx's deadline.
type server interface {
	Exchange(ctx context.Context, query *dns.Msg) (*dns.Msg, error)
	String() string
}

var (
	errNoDeadline  = errors.New("upstream exchange without deadline")
	errTCPMismatch = errors.New("upstream sent no matching reply over TCP")
)

const maxSkippedTCP = 8

// plainUpstream speaks DNS over UDP, falling back to TCP on truncation.
type plainUpstream struct {
	addr    string
	dialer  net.Dialer
	log     *slog.Logger
	sockets *udpSockets
}

func newPlainUpstream(addr string, mark uint32, log *slog.Logger) *plainUpstream {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &plainUpstream{addr: addr, log: log}
	if mark != 0 {
		u.dialer.Control = markControl(mark, log)
	}
	u.sockets = newUDPSockets(func(ctx context.Context) (net.Conn, error) {
		return u.dialer.DialContext(ctx, "udp", u.addr)
	})
	return u
}

func (u *plainUpstream) String() string { return u.addr }

// keepsDeadline: every read and write has the context's deadline as its
// socket deadline, and the TCP fallback dials with it, so a context
// without a Done channel (deadlineOnly) still ends the exchange in time.
func (u *plainUpstream) keepsDeadline() {}

// udpBuffers holds read buffers big enough for any datagram: an upstream
// may ignore the size egressd advertises.
var udpBuffers = sync.Pool{New: func() any { b := make([]byte, dns.MaxMsgSize); return &b }}

// Exchange sends query with a fresh random ID from a pooled socket whose
// source port changes often (see udpSockets), falling back to TCP when the
// reply is truncated.
func (u *plainUpstream) Exchange(ctx context.Context, query *dns.Msg) (*dns.Msg, error) {
	reply, _, err := u.exchange(ctx, query, false)
	return reply, err
}

// ExchangeWire is Exchange returning a plain reply over UDP (see
// ParsePlain) in wire form, owned by the caller, instead of unpacking it;
// any other reply comes unpacked, as from Exchange.
func (u *plainUpstream) ExchangeWire(ctx context.Context, query *dns.Msg) (*dns.Msg, []byte, error) {
	return u.exchange(ctx, query, true)
}

func (u *plainUpstream) exchange(ctx context.Context, query *dns.Msg, wire bool) (*dns.Msg, []byte, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, nil, errNoDeadline
	}
	q := *query
	q.Id = dns.Id()
	bufp := queryBuffers.Get().(*[]byte)
	defer queryBuffers.Put(bufp)
	packed, ok := appendQuery((*bufp)[:0], &q)
	if ok {
		*bufp = packed[:0] // keep what append grew
	} else {
		var err error
		if packed, err = q.Pack(); err != nil {
			return nil, nil, err
		}
	}
	reply, raw, err := u.exchangeUDP(ctx, &q, packed, deadline, wire)
	if errors.Is(err, errDatagramTooBig) {
		// Too big for the read buffer: as good as truncated.
		err = nil
	} else if err != nil || raw != nil || !reply.Truncated {
		return reply, raw, err
	}
	reply, err = u.exchangeTCP(ctx, &q, deadline)
	return reply, nil, err
}

// exchangeTCP retries a truncated exchange over TCP with the same server.
func (u *plainUpstream) exchangeTCP(ctx context.Context, q *dns.Msg, deadline time.Time) (*dns.Msg, error) {
	c, err := u.dialer.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	c.SetDeadline(deadline)
	conn := &dns.Conn{Conn: c}
	if err := conn.WriteMsg(q); err != nil {
		return nil, contextError(ctx, err)
	}
	// Over TCP a reply that does not parse or match is odd but harmless;
	// skip a few, then give up rather than spin until the deadline.
	for range maxSkippedTCP {
		reply, err := conn.ReadMsg()
		var parseErr *dns.Error
		if errors.As(err, &parseErr) {
			continue
		}
		if err != nil {
			return nil, contextError(ctx, err)
		}
		if answers(reply, q) {
			return reply, nil
		}
	}
	return nil, errTCPMismatch
}

// answers reports whether reply is the response to q: same ID and the same
// question (name compared without case, type and class).
func answers(reply, q *dns.Msg) bool {
	if !reply.Response || reply.Id != q.Id || len(reply.Question) != 1 || len(q.Question) != 1 {
		return false
	}
	a, b := reply.Question[0], q.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && EqualName(a.Name, b.Name)
}

// contextError prefers the context's reason over the socket's.
func contextError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w: %w", ctxErr, err)
	}
	return err
}
