package resolver

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// TCP defaults, used when Options leaves a value zero. The config package
// takes its defaults from here, so there is one set.
const (
	DefaultTCPIdleTimeout       = 10 * time.Second
	DefaultTCPMaxConns          = 1024
	DefaultTCPMaxConnsPerClient = 64
)

// Connections from addresses outside Clients are answered REFUSED (one
// query, then closed) from a pool of their own, so they never take a slot
// a client could use: at most outsiderTCPMaxConns in total and
// outsiderTCPPerPrefix from one /24 (IPv4) or /64 (IPv6).
const (
	outsiderTCPMaxConns  = 64
	outsiderTCPPerPrefix = 2
	outsiderPrefixV4     = 24
	outsiderPrefixV6     = 64
)

// rejectWarnInterval spaces out the warning about rejected connections.
const rejectWarnInterval = 10 * time.Second

// tcpLimits are the bounds a connLimiter enforces.
type tcpLimits struct {
	max, perClient         int // clients (addresses inside the ACL)
	outsiders, perOutsider int // everyone else, per outsiderPrefix
}

// connLimiter is a net.Listener that admits at most max connections from
// clients at a time, and at most perClient from one client address.
// Outsiders, told apart by the ACL as soon as they are accepted, count in
// their own pool and never against the clients' limits. Connections over a
// limit are closed at once rather than left queued in the backlog: a
// client told no early can retry or fall back, and one address (or one
// outside network) cannot take every slot.
type connLimiter struct {
	net.Listener
	limits tcpLimits
	member func(netip.Addr) bool
	log    *slog.Logger

	mu        sync.Mutex
	total     int
	byClient  map[netip.Addr]int
	outsiders int
	byPrefix  map[netip.Prefix]int
	// closed over a limit since the last warning, and ever
	rejectedClients, rejectedOutsiders           int
	totalRejectedClients, totalRejectedOutsiders uint64
	lastWarn                                     time.Time
}

func newConnLimiter(l net.Listener, limits tcpLimits, member func(netip.Addr) bool, log *slog.Logger) *connLimiter {
	return &connLimiter{
		Listener: l, limits: limits, member: member, log: log,
		byClient: make(map[netip.Addr]int), byPrefix: make(map[netip.Prefix]int),
	}
}

// outsiderPrefix is the network an outsider's connections are counted by.
func outsiderPrefix(a netip.Addr) netip.Prefix {
	bits := outsiderPrefixV6
	if a.Is4() {
		bits = outsiderPrefixV4
	}
	p, _ := a.Prefix(bits) // an invalid address gives the zero prefix: one shared bucket
	return p
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
		if cc := l.admit(client); cc != nil {
			cc.Conn = c
			return cc, nil
		}
		c.Close()
	}
}

// admit counts a connection from client and returns its countedConn
// (without the net.Conn), or nil when it is over a limit.
func (l *connLimiter) admit(client netip.Addr) *countedConn {
	member := l.member(client)
	l.mu.Lock()
	defer l.mu.Unlock()
	if member {
		if l.total >= l.limits.max || l.byClient[client] >= l.limits.perClient {
			l.rejectedClients++
			l.totalRejectedClients++
			l.warn(client)
			return nil
		}
		l.total++
		l.byClient[client]++
		return &countedConn{limiter: l, client: client}
	}
	prefix := outsiderPrefix(client)
	if l.outsiders >= l.limits.outsiders || l.byPrefix[prefix] >= l.limits.perOutsider {
		l.rejectedOutsiders++
		l.totalRejectedOutsiders++
		l.warn(client)
		return nil
	}
	l.outsiders++
	l.byPrefix[prefix]++
	return &countedConn{limiter: l, client: client, outsider: true, prefix: prefix}
}

// warn logs the connections closed over a limit at most every
// rejectWarnInterval. Called with mu held.
func (l *connLimiter) warn(client netip.Addr) {
	if now := time.Now(); now.Sub(l.lastWarn) >= rejectWarnInterval {
		l.log.Warn("tcp connection limit reached; closing new connections",
			"max", l.limits.max, "per_client", l.limits.perClient,
			"outsiders_max", l.limits.outsiders, "per_outsider_prefix", l.limits.perOutsider,
			"client", client, "rejected_clients", l.rejectedClients, "rejected_outsiders", l.rejectedOutsiders)
		l.lastWarn, l.rejectedClients, l.rejectedOutsiders = now, 0, 0
	}
}

func (l *connLimiter) release(c *countedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.outsider {
		l.outsiders--
		if n := l.byPrefix[c.prefix] - 1; n > 0 {
			l.byPrefix[c.prefix] = n
		} else {
			delete(l.byPrefix, c.prefix)
		}
		return
	}
	l.total--
	if n := l.byClient[c.client] - 1; n > 0 {
		l.byClient[c.client] = n
	} else {
		delete(l.byClient, c.client)
	}
}

// open reports the client connections counted now.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// rejectedTotals reports the connections closed over a limit, per pool.
func (l *connLimiter) rejectedTotals() (clients, outsiders uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.totalRejectedClients, l.totalRejectedOutsiders
}

// TCPConnections reports the open TCP connections from clients and from
// outsiders, over every listener (DNS over TLS and HTTPS included); zero
// once Shutdown has begun.
func (s *Server) TCPConnections() (clients, outsiders int) {
	for _, l := range s.tcpLimiters() {
		clients += l.open()
		outsiders += l.outsidersOpen()
	}
	return clients, outsiders
}

// TCPRejected reports the TCP connections closed over a limit, per pool,
// since Start.
func (s *Server) TCPRejected() (clients, outsiders uint64) {
	for _, l := range s.tcpLimiters() {
		c, o := l.rejectedTotals()
		clients += c
		outsiders += o
	}
	return clients, outsiders
}

func (s *Server) tcpLimiters() []*connLimiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*connLimiter
	for _, srv := range s.servers {
		if l, ok := srv.Listener.(*connLimiter); ok {
			out = append(out, l)
		}
	}
	return append(out, s.encryptedLimiters()...)
}

// outsidersOpen reports the outsider connections counted now.
func (l *connLimiter) outsidersOpen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.outsiders
}

// countedConn gives its slot back on the first Close. An outsider's
// connection carries one query: the reader ends it after that.
type countedConn struct {
	net.Conn
	limiter  *connLimiter
	client   netip.Addr
	outsider bool
	prefix   netip.Prefix // outsiders only
	read     bool         // a message was read (outsiders only; one reader goroutine)
	once     sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.limiter.release(c) })
	return err
}
