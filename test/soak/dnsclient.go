package main

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
	"github.com/miekg/dns"
)

// exchanger sends one query and waits for its reply on a socket opened in
// the client namespace. One exchanger serves one goroutine.
type exchanger struct {
	ns      netnstest.Namespace
	server  netip.AddrPort
	network string // "udp" or "tcp"
	conn    *dns.Conn
	used    bool // the TCP connection has carried a query before
	// reconnects counts TCP connections egressd had closed between
	// queries (it closes one after a fixed number of queries); the query
	// is then sent again on a new connection, as any DNS client would.
	reconnects uint64
}

func newExchanger(ns netnstest.Namespace, server netip.AddrPort, network string) *exchanger {
	return &exchanger{ns: ns, server: server, network: network}
}

func (e *exchanger) dial() error {
	var c net.Conn
	err := e.ns.Do(func() error {
		var err error
		c, err = net.DialTimeout(e.network, e.server.String(), 2*time.Second)
		return err
	})
	if err != nil {
		return err
	}
	e.conn = &dns.Conn{Conn: c, UDPSize: dns.MaxMsgSize}
	e.used = false
	return nil
}

func (e *exchanger) close() {
	if e.conn != nil {
		e.conn.Close()
		e.conn = nil
	}
}

// errNoReply is a query that got no matching reply before its deadline.
var errNoReply = errors.New("no reply")

// exchange sends q and returns the reply whose ID and question match.
// Replies to earlier, timed-out queries are skipped. A TCP connection that
// fails is dropped and redialled on the next call.
func (e *exchanger) exchange(q *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	reused := e.network == "tcp" && e.conn != nil && e.used
	r, err := e.exchangeOnce(q, timeout)
	if reused && closedByPeer(err) {
		e.reconnects++
		return e.exchangeOnce(q, timeout)
	}
	return r, err
}

// closedByPeer is the error of a reused TCP connection the server had
// already closed.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (e *exchanger) exchangeOnce(q *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	if e.conn == nil {
		if err := e.dial(); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(timeout)
	_ = e.conn.SetDeadline(deadline)
	if err := e.conn.WriteMsg(q); err != nil {
		e.close()
		return nil, err
	}
	for {
		r, err := e.conn.ReadMsg()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if e.network == "tcp" {
					e.close()
				}
				return nil, errNoReply
			}
			if e.network == "tcp" {
				e.close()
				return nil, err
			}
			if time.Now().After(deadline) {
				return nil, errNoReply
			}
			continue // a malformed datagram or ICMP error: keep waiting for ours
		}
		if matches(q, r) {
			e.used = true
			return r, nil
		}
	}
}

// matches reports whether r answers q: same ID and same question.
func matches(q, r *dns.Msg) bool {
	if r.Id != q.Id || !r.Response || len(r.Question) != 1 || len(q.Question) != 1 {
		return false
	}
	a, b := q.Question[0], r.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}

// addresses are the A and AAAA records of an answer.
func addresses(r *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
				out = append(out, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok {
				out = append(out, a)
			}
		}
	}
	return out
}
