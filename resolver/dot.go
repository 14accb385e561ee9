package resolver

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// dotListener serves DNS over TLS (RFC 7858) on one address. miekg/dns
// answers the queries of one TCP connection one at a time; this loop
// reads every query of a connection as it comes, answers each in its own
// goroutine (at most dotMaxPipelined at once) and writes the answers as
// they are ready, out of order (RFC 7766 section 6.2.1.1).
type dotListener struct {
	s    *Server
	ln   *connLimiter
	tls  *tls.Config
	idle time.Duration

	mu      sync.Mutex
	conns   map[*dotConn]struct{}
	closing bool
	done    sync.WaitGroup // connection goroutines
}

func (s *Server) newDoTListener(ln *connLimiter, idle time.Duration) *dotListener {
	return &dotListener{s: s, ln: ln, tls: s.tlsConfig("dot"), idle: idle, conns: map[*dotConn]struct{}{}}
}

// serve accepts connections until the listener is closed.
func (l *dotListener) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.s.log.Warn("dns over tls: accept failed", "err", err)
			time.Sleep(100 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		cc := c.(*countedConn)
		dc := &dotConn{l: l, raw: cc, tls: tls.Server(cc, l.tls)}
		if !l.add(dc) {
			cc.Close()
			return
		}
		go dc.serve()
	}
}

func (l *dotListener) add(c *dotConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return false
	}
	l.conns[c] = struct{}{}
	l.done.Add(1)
	return true
}

func (l *dotListener) remove(c *dotConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.done.Done()
}

// shutdown stops accepting, stops reading every connection, lets the
// queries already read be answered, and waits for the connections to
// close, up to ctx.
func (l *dotListener) shutdown(ctx context.Context) error {
	l.ln.Close()
	l.mu.Lock()
	l.closing = true
	for c := range l.conns {
		c.stopReading()
	}
	l.mu.Unlock()
	ended := make(chan struct{})
	go func() {
		l.done.Wait()
		close(ended)
	}()
	select {
	case <-ended:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		for c := range l.conns {
			c.tls.Close()
		}
		l.mu.Unlock()
		return ctx.Err()
	}
}

// dotConn is one DNS-over-TLS connection.
type dotConn struct {
	l   *dotListener
	raw *countedConn
	tls *tls.Conn

	readMu  sync.Mutex // stopped and the read deadline
	stopped bool

	writeMu sync.Mutex
	broken  bool // a write failed; the connection is closing
}

// stopReading makes the reader stop at its next read, or now.
func (c *dotConn) stopReading() {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.stopped = true
	c.tls.SetReadDeadline(time.Unix(1, 0))
}

// setReadDeadline arms the idle timeout for the next message, unless the
// connection is stopping.
func (c *dotConn) setReadDeadline(d time.Duration) bool {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.stopped {
		return false
	}
	c.tls.SetReadDeadline(time.Now().Add(d))
	return true
}

func (c *dotConn) serve() {
	defer c.l.remove(c)
	defer c.tls.Close()
	s := c.l.s
	idle := c.l.idle
	if c.raw.outsider {
		// One query, read within tcpReadTimeout; the answer is REFUSED.
		idle = min(idle, tcpReadTimeout)
	}
	if !c.setReadDeadline(idle) {
		return
	}
	c.tls.SetWriteDeadline(time.Now().Add(idle))
	if err := c.tls.Handshake(); err != nil {
		s.log.Debug("dns over tls: handshake failed", "client", c.raw.client, "err", err)
		return
	}
	c.tls.SetWriteDeadline(time.Time{})
	w := &encryptedWriter{transport: transportTLS, local: c.raw.LocalAddr(), remote: c.raw.RemoteAddr(), write: c.write}
	r := bufio.NewReaderSize(c.tls, 4096)
	sem := make(chan struct{}, dotMaxPipelined)
	var answering sync.WaitGroup
	defer answering.Wait() // before the deferred Close: answers in flight are written
	for {
		if !c.setReadDeadline(idle) {
			return
		}
		msg, err := readFramed(r)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.log.Debug("dns over tls: read ends", "client", c.raw.client, "err", err)
			}
			return
		}
		if !s.admitMessageFrom(msg, c.raw.client) {
			return // an outsider's garbage: nothing but REFUSED is ever sent to them
		}
		sem <- struct{}{}
		answering.Add(1)
		go func() {
			defer answering.Done()
			defer func() { <-sem }()
			s.serveWire(w, msg)
		}()
		if c.raw.outsider {
			return
		}
	}
}

// readFramed reads one message with its two-byte length prefix (RFC 1035
// section 4.2.2).
func readFramed(r *bufio.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint16(l[:])
	if n == 0 {
		return nil, errors.New("zero-length message")
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return msg, nil
}

// write sends one answer, framed, whole: answers of concurrent queries
// never interleave.
func (c *dotConn) write(b []byte) error {
	if len(b) > 0xFFFF {
		return errors.New("answer larger than 64 KiB")
	}
	buf := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(buf, uint16(len(b)))
	copy(buf[2:], b)
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.broken {
		return net.ErrClosed
	}
	c.tls.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	if _, err := c.tls.Write(buf); err != nil {
		// A TLS write that failed leaves the stream unusable: end it, which
		// also ends the reader.
		c.broken = true
		c.tls.Close()
		return err
	}
	return nil
}
