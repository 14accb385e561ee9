package upstream

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// A pooled socket is retired after this many exchanges or this long after
// it was opened, whichever comes first, so the source port an off-path
// attacker would have to guess keeps changing; in between, a query costs
// a write and a read instead of also socket, connect and close.
const (
	udpSocketMaxUses = 100
	udpSocketMaxAge  = 5 * time.Second
	// udpSocketsIdle bounds the sockets kept open between bursts. It is
	// above the exchanges usually in flight at once (misses a second times
	// the upstream's round trip), so a busy pool rarely opens sockets for
	// any other reason than retiring old ones.
	udpSocketsIdle = 512
)

// udpSockets keeps connected UDP sockets to one upstream between
// exchanges. A socket serves one exchange at a time, so the reader is the
// query that wrote; the kernel only delivers datagrams from the connected
// address, and the ID and question still have to match.
type udpSockets struct {
	dial func(ctx context.Context) (net.Conn, error)

	mu   sync.Mutex
	idle []*udpSocket // most recently used last
}

type udpSocket struct {
	conn   net.Conn
	uses   int
	opened time.Time
}

func newUDPSockets(dial func(ctx context.Context) (net.Conn, error)) *udpSockets {
	return &udpSockets{dial: dial}
}

// get returns an idle socket young enough to use, else a new one.
func (p *udpSockets) get(ctx context.Context, now time.Time) (*udpSocket, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		s := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.Sub(s.opened) < udpSocketMaxAge {
			return s, nil
		}
		s.conn.Close()
	}
	conn, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	return &udpSocket{conn: conn, opened: now}, nil
}

// put returns s after an exchange. A socket whose exchange did not end
// with its reply (a timeout, an error) is closed: a late reply must not
// wait in it for the next query.
func (p *udpSockets) put(s *udpSocket, clean bool, now time.Time) {
	s.uses++
	if !clean || s.uses >= udpSocketMaxUses || now.Sub(s.opened) >= udpSocketMaxAge {
		s.conn.Close()
		return
	}
	var stale *udpSocket
	p.mu.Lock()
	// The least recently used socket is picked last; retire it here once
	// it is too old, so idle sockets beyond the current load close too.
	if len(p.idle) > 0 && now.Sub(p.idle[0].opened) >= udpSocketMaxAge {
		stale = p.idle[0]
		p.idle = slices.Delete(p.idle, 0, 1)
	}
	if len(p.idle) < udpSocketsIdle {
		p.idle = append(p.idle, s)
		s = nil
	}
	p.mu.Unlock()
	for _, c := range []*udpSocket{stale, s} {
		if c != nil {
			c.conn.Close()
		}
	}
}

// closeIdle closes every idle socket.
func (p *udpSockets) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, s := range idle {
		s.conn.Close()
	}
}

// exchange writes packed, the wire form of q, and reads until a datagram
// answers q or the deadline passes. Datagrams that do not parse or do not
// answer the question are ignored: a spoofed or broken packet must not end
// the exchange.
func (u *plainUpstream) exchangeUDP(ctx context.Context, q *dns.Msg, packed []byte, deadline time.Time) (*dns.Msg, error) {
	s, err := u.sockets.get(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	conn := s.conn
	stop := func() bool { return true }
	if ctx.Done() != nil { // not deadlineOnly
		stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	}
	clean := false
	defer func() {
		// A cancellation already under way may still move the deadline.
		if !stop() {
			clean = false
		}
		u.sockets.put(s, clean, time.Now())
	}()
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
		if !answers(reply, q) {
			u.log.Debug("ignored reply to another query", "upstream", u.addr, "id", reply.Id, "want_id", q.Id)
			continue
		}
		clean = true
		return reply, nil
	}
}

// closeIdle closes the sockets kept between exchanges.
func (u *plainUpstream) closeIdle() { u.sockets.closeIdle() }
