package upstream

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
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
	rc     syscall.RawConn // for raw reads and writes; nil: use conn's
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
	s := &udpSocket{conn: conn, opened: now}
	if sc, ok := conn.(syscall.Conn); ok && rawUDP {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
		}
	}
	return s, nil
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
//
// With wire set, a plain reply (plainAnswers) is returned as a copy of the
// datagram, unparsed, instead of unpacked.
func (u *plainUpstream) exchangeUDP(ctx context.Context, q *dns.Msg, packed []byte, deadline time.Time, wire bool) (*dns.Msg, []byte, error) {
	s, err := u.sockets.get(ctx, time.Now())
	if err != nil {
		return nil, nil, err
	}
	x := udpIOs.Get().(*udpIO)
	e := udpExchange{s: s, x: x}
	clean := false
	defer func() {
		// A cancellation already under way may still move the deadline.
		if e.stop != nil && !e.stop() {
			clean = false
		}
		x.out = nil
		udpIOs.Put(x)
		u.sockets.put(s, clean, time.Now())
	}()
	e.arm(ctx, deadline)
	if err := e.write(packed); err != nil {
		return nil, nil, contextError(ctx, err)
	}
	for {
		msg, err := e.read()
		if errors.Is(err, errDatagramTooBig) {
			// Whether it was the reply or not, TCP will tell; a forged
			// one costs an exchange over TCP, which cannot be forged.
			u.log.Debug("datagram larger than the read buffer; asking over TCP", "upstream", u.addr)
			return nil, nil, err
		}
		if err != nil {
			return nil, nil, contextError(ctx, err)
		}
		if wire && plainAnswers(msg, q) {
			clean = true
			return nil, bytes.Clone(msg), nil
		}
		reply := new(dns.Msg)
		if err := reply.Unpack(msg); err != nil {
			u.log.Debug("ignored unparsable datagram", "upstream", u.addr, "err", err)
			continue
		}
		if !answers(reply, q) {
			u.log.Debug("ignored reply to another query", "upstream", u.addr, "id", reply.Id, "want_id", q.Id)
			continue
		}
		clean = true
		return reply, nil, nil
	}
}

// udpIOs holds read buffers with their raw I/O state. Where a read can
// tell that a datagram did not fit (rawUDP), a buffer holds udpReadSize
// bytes, more than the AdvertisedUDPSize replies should keep to; a bigger
// datagram (an upstream ignoring the size egressd advertises) sends the
// query over TCP. Elsewhere it holds any datagram. Buffers of 64 KiB each,
// one per exchange in flight, were most of the heap after a burst of
// misses.
var udpIOs = sync.Pool{New: func() any { return newUDPIO(udpReadSize) }}

// errDatagramTooBig reports a datagram larger than the read buffer.
var errDatagramTooBig = errors.New("upstream datagram larger than the read buffer")

// udpExchange is one exchange on a pooled socket. Where the socket allows
// (rawUDP, a socket with a RawConn) it reads and writes with raw
// non-blocking system calls and waits in the runtime's poller only when
// the socket is not ready, which for the read is usual: the reply has not
// come yet.
type udpExchange struct {
	s    *udpSocket
	x    *udpIO
	stop func() bool // stops the cancellation; nil without one
}

// arm gives the socket the exchange's deadline and, for a context that can
// be cancelled, a cancellation that moves the deadline to the past. The
// deadline is set before the cancellation is registered, so a context
// cancelled in between still ends the exchange.
func (e *udpExchange) arm(ctx context.Context, deadline time.Time) {
	conn := e.s.conn
	conn.SetDeadline(deadline)
	if ctx.Done() != nil { // not deadlineOnly
		e.stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	}
}

func (e *udpExchange) write(p []byte) error {
	if e.s.rc == nil {
		_, err := e.s.conn.Write(p)
		return err
	}
	e.x.out, e.x.errno = p, 0
	err := e.s.rc.Write(e.x.writeFn)
	if err == nil && e.x.errno != 0 {
		err = os.NewSyscallError("write", e.x.errno)
	}
	return e.opError("write", err)
}

// read returns the next datagram, valid until the next read.
func (e *udpExchange) read() ([]byte, error) {
	if e.s.rc == nil {
		// The socket's own Read cuts a datagram silently: any must fit.
		if len(e.x.buf) < dns.MaxMsgSize {
			e.x.buf = make([]byte, dns.MaxMsgSize)
		}
		n, err := e.s.conn.Read(e.x.buf)
		return e.x.buf[:n], err
	}
	e.x.n, e.x.errno = 0, 0
	err := e.s.rc.Read(e.x.readFn)
	if err == nil && e.x.errno != 0 {
		err = os.NewSyscallError("read", e.x.errno)
	}
	if err == nil && e.x.n > len(e.x.buf) {
		return nil, errDatagramTooBig
	}
	return e.x.buf[:e.x.n], e.opError("read", err)
}

// opError wraps err as the socket's own Read and Write would.
func (e *udpExchange) opError(op string, err error) error {
	if err == nil {
		return nil
	}
	return &net.OpError{Op: op, Net: "udp", Source: e.s.conn.LocalAddr(), Addr: e.s.conn.RemoteAddr(), Err: err}
}

// closeIdle closes the sockets kept between exchanges.
func (u *plainUpstream) closeIdle() { u.sockets.closeIdle() }
