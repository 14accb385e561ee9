package upstream

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// dotConn is one DNS-over-TLS connection with the queries waiting for
// replies on it. Its reader goroutine owns the connection's lifetime: it
// alone closes it, once the connection failed or was retired.
type dotConn struct {
	up      *tlsUpstream
	ready   chan struct{} // closed once the handshake succeeded or failed
	writing chan struct{} // one token: frames are written whole, one at a time
	idle    *time.Timer   // closes the connection after idleTimeout without queries
	opened  time.Time

	// Guarded by up.mu.
	tc        *tls.Conn // set once the handshake succeeded
	err       error     // why the connection is unusable; nil while usable
	pending   map[uint16]*dotQuery
	lastRead  time.Time // when the last frame arrived
	idleSince time.Time
	badFrames int // consecutive unusable frames
}

// dotQuery is one query in flight on a dotConn.
type dotQuery struct {
	q    *dns.Msg // as sent, with the connection's ID
	sent time.Time
	done chan dotResult // buffered: whoever finishes the query never blocks
}

type dotResult struct {
	reply *dns.Msg
	err   error
}

func newDotConn(u *tlsUpstream) *dotConn {
	c := &dotConn{
		up:      u,
		ready:   make(chan struct{}),
		writing: make(chan struct{}, 1),
		pending: make(map[uint16]*dotQuery),
		opened:  time.Now(),
	}
	c.idle = time.AfterFunc(time.Hour, c.idleExpired)
	c.idle.Stop()
	return c
}

// addLocked registers query under a fresh random ID no other query on the
// connection has.
func (c *dotConn) addLocked(query *dns.Msg) *dotQuery {
	q := *query
	for {
		q.Id = dns.Id()
		if _, taken := c.pending[q.Id]; !taken {
			break
		}
	}
	pq := &dotQuery{q: &q, done: make(chan dotResult, 1)}
	c.pending[q.Id] = pq
	c.idle.Stop()
	return pq
}

// removeLocked forgets the query with id and frees its slot.
func (c *dotConn) removeLocked(id uint16) {
	delete(c.pending, id)
	c.up.slotFreedLocked()
	if len(c.pending) == 0 && c.err == nil && c.tc != nil {
		c.idleSince = time.Now()
		c.idle.Reset(c.up.idleTimeout)
	}
}

// open dials and completes the handshake for the query that created the
// connection. The attempt is bounded by that query's deadline but not cut
// short if it is cancelled earlier: other queries may be waiting on it.
func (c *dotConn) open(ctx context.Context) {
	deadline, _ := ctx.Deadline()
	dctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	tc, err := c.up.connect(dctx)
	u := c.up
	u.mu.Lock()
	if err != nil {
		c.err = err
		u.conns = slices.DeleteFunc(u.conns, func(o *dotConn) bool { return o == c })
		u.slotFreedLocked()
	} else {
		c.tc = tc
		if len(c.pending) == 0 {
			c.idleSince = time.Now()
			c.idle.Reset(u.idleTimeout)
		}
	}
	u.mu.Unlock()
	close(c.ready)
	if err == nil {
		go c.readLoop()
	}
}

// waitReady waits for the handshake and reports its failure.
func (c *dotConn) waitReady(ctx context.Context) error {
	select {
	case <-c.ready:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the TLS handshake: %w", ctx.Err())
	}
	c.up.mu.Lock()
	defer c.up.mu.Unlock()
	if c.tc == nil {
		return c.err
	}
	return nil
}

// write sends pq as one frame. A failed write leaves the stream in an
// unknown state, so it ends the connection.
func (c *dotConn) write(ctx context.Context, pq *dotQuery, packed []byte) error {
	select {
	case c.writing <- struct{}{}:
		defer func() { <-c.writing }()
	case <-ctx.Done():
		return fmt.Errorf("waiting to write: %w", ctx.Err())
	}
	u := c.up
	u.mu.Lock()
	if c.err != nil {
		err := c.err
		u.mu.Unlock()
		return err
	}
	pq.sent = time.Now()
	u.mu.Unlock()
	deadline, _ := ctx.Deadline()
	c.tc.SetWriteDeadline(deadline)
	if _, err := c.tc.Write(dotFrame(packed, pq.q.Id)); err != nil {
		err = newTLSConnLostError(fmt.Errorf("write: %w", err))
		u.mu.Lock()
		c.failLocked(err)
		u.mu.Unlock()
		return err
	}
	return nil
}

// failLocked retires the connection: it leaves the pool, its queries get
// err, and the reader is woken to close it.
func (c *dotConn) failLocked(err error) {
	if c.err != nil {
		return
	}
	u := c.up
	c.err = err
	c.idle.Stop()
	u.conns = slices.DeleteFunc(u.conns, func(o *dotConn) bool { return o == c })
	for id, pq := range c.pending {
		pq.done <- dotResult{err: err}
		delete(c.pending, id)
	}
	u.slotFreedLocked()
	if c.tc != nil {
		// Neither call blocks; the reader sees its read fail and closes.
		c.tc.SetReadDeadline(time.Unix(1, 0))
		c.tc.SetWriteDeadline(time.Unix(1, 0))
	}
}

// idleExpired closes the connection if it is still idle.
func (c *dotConn) idleExpired() {
	u := c.up
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(c.pending) == 0 && time.Since(c.idleSince) >= u.idleTimeout {
		c.failLocked(errTLSIdle)
	}
}

// readLoop reads frames until the connection fails or is retired, hands
// each reply to the query it answers, and then closes the connection.
func (c *dotConn) readLoop() {
	defer c.tc.Close()
	var prefix [2]byte
	for {
		if _, err := io.ReadFull(c.tc, prefix[:]); err != nil {
			c.readFailed(err)
			return
		}
		bufp := udpBuffers.Get().(*[]byte)
		buf := (*bufp)[:binary.BigEndian.Uint16(prefix[:])]
		_, err := io.ReadFull(c.tc, buf)
		var reply *dns.Msg
		if err == nil {
			reply = new(dns.Msg)
			if reply.Unpack(buf) != nil {
				reply = nil
			}
		}
		udpBuffers.Put(bufp)
		if err != nil {
			c.readFailed(err)
			return
		}
		if !c.deliver(reply) {
			return
		}
	}
}

func (c *dotConn) readFailed(err error) {
	c.up.mu.Lock()
	defer c.up.mu.Unlock()
	c.failLocked(newTLSConnLostError(fmt.Errorf("read: %w", err)))
}

// deliver hands reply (nil when the frame did not parse) to its query and
// reports whether the connection is still usable. Replies to queries that
// already gave up are dropped; only frames that cannot be anyone's reply
// count as bad.
func (c *dotConn) deliver(reply *dns.Msg) bool {
	u := c.up
	u.mu.Lock()
	defer u.mu.Unlock()
	if c.err != nil {
		return false
	}
	c.lastRead = time.Now()
	var pq *dotQuery
	if reply != nil {
		pq = c.pending[reply.Id]
	}
	switch {
	case pq != nil && answers(reply, pq.q):
		c.badFrames = 0
		c.removeLocked(reply.Id)
		pq.done <- dotResult{reply: reply}
	case reply != nil && pq == nil:
		// Late: its query timed out.
	default:
		c.badFrames++
		if c.badFrames >= maxTLSBadFrames {
			c.failLocked(errTLSGarbage)
			return false
		}
	}
	return true
}
