package resolver

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// defaultTCPMaxConnsPerClient applies when Options leaves it zero; the
// total defaults to maxTCPConns.
const defaultTCPMaxConnsPerClient = 64

// rejectWarnInterval spaces out the warning about rejected connections.
const rejectWarnInterval = 10 * time.Second

// connLimiter is a net.Listener that admits at most max connections at a
// time, and at most perClient from one client address. Connections over
// either limit are closed at once rather than left queued in the backlog:
// a client told no early can retry or fall back, and one address cannot
// take every slot.
type connLimiter struct {
	net.Listener
	max, perClient int
	log            *slog.Logger

	mu       sync.Mutex
	total    int
	byClient map[netip.Addr]int
	rejected int
	lastWarn time.Time
}

func newConnLimiter(l net.Listener, max, perClient int, log *slog.Logger) *connLimiter {
	return &connLimiter{Listener: l, max: max, perClient: perClient, log: log, byClient: make(map[netip.Addr]int)}
}

// Accept returns the next connection within the limits, closing the ones
// beyond them.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client, _ := remote(c.RemoteAddr())
		if l.admit(client) {
			return &countedConn{Conn: c, limiter: l, client: client}, nil
		}
		c.Close()
	}
}

func (l *connLimiter) admit(client netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max || l.byClient[client] >= l.perClient {
		l.rejected++
		if now := time.Now(); now.Sub(l.lastWarn) >= rejectWarnInterval {
			l.log.Warn("tcp connection limit reached; closing new connections",
				"max", l.max, "per_client", l.perClient, "client", client, "rejected", l.rejected)
			l.lastWarn, l.rejected = now, 0
		}
		return false
	}
	l.total++
	l.byClient[client]++
	return true
}

func (l *connLimiter) release(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.byClient[client] - 1; n > 0 {
		l.byClient[client] = n
	} else {
		delete(l.byClient, client)
	}
}

// open reports the connections counted now, for tests.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// countedConn gives its slot back on the first Close.
type countedConn struct {
	net.Conn
	limiter *connLimiter
	client  netip.Addr
	once    sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.limiter.release(c.client) })
	return err
}
