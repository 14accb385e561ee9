package resolver

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

// Upstream is one server queries are forwarded to. Exchange must not
// modify query, must verify that the reply answers it, and must return by
// ctx's deadline.
type Upstream interface {
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
	addr   string
	dialer net.Dialer
	log    *slog.Logger
}

func newPlainUpstream(addr string, mark uint32, log *slog.Logger) *plainUpstream {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &plainUpstream{addr: addr, log: log}
	if mark != 0 {
		u.dialer.Control = markControl(mark, log)
	}
	return u
}

func (u *plainUpstream) String() string { return u.addr }

// udpBuffers holds read buffers big enough for any datagram: an upstream
// may ignore the size egressd advertises.
var udpBuffers = sync.Pool{New: func() any { b := make([]byte, dns.MaxMsgSize); return &b }}

// Exchange sends query with a fresh random ID from a fresh socket (so a
// fresh random source port). Datagrams that do not parse or do not answer
// the question are ignored and reading goes on until the deadline: a
// spoofed or broken packet must not end the exchange.
func (u *plainUpstream) Exchange(ctx context.Context, query *dns.Msg) (*dns.Msg, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, errNoDeadline
	}
	q := *query
	q.Id = dns.Id()
	packed, err := q.Pack()
	if err != nil {
		return nil, err
	}
	conn, err := u.dialer.DialContext(ctx, "udp", u.addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn.SetDeadline(deadline)
	if _, err := conn.Write(packed); err != nil {
		return nil, err
	}
	bufp := udpBuffers.Get().(*[]byte)
	defer udpBuffers.Put(bufp)
	for {
		n, err := conn.Read(*bufp)
		if err != nil {
			return nil, contextError(ctx, err)
		}
		reply := new(dns.Msg)
		if err := reply.Unpack((*bufp)[:n]); err != nil {
			u.log.Debug("ignored unparsable datagram", "upstream", u.addr, "err", err)
			continue
		}
		if !answers(reply, &q) {
			u.log.Debug("ignored reply to another query", "upstream", u.addr, "id", reply.Id, "want_id", q.Id)
			continue
		}
		if reply.Truncated {
			return u.exchangeTCP(ctx, &q, deadline)
		}
		return reply, nil
	}
}

// exchangeTCP retries a truncated exchange over TCP with the same server.
func (u *plainUpstream) exchangeTCP(ctx context.Context, q *dns.Msg, deadline time.Time) (*dns.Msg, error) {
	c, err := u.dialer.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
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
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && equalName(a.Name, b.Name)
}

// contextError prefers the context's reason over the socket's.
func contextError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w: %w", ctxErr, err)
	}
	return err
}
