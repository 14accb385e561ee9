package resolver

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// errOutsiderGarbage ends a TCP connection from outside the ACL that sent
// a message that does not parse.
var errOutsiderGarbage = errors.New("unparsable message from a client outside the ACL")

// errOutsiderDone ends a TCP connection from outside the ACL after its
// first message.
var errOutsiderDone = errors.New("one message per connection from a client outside the ACL")

// outsiderFilter wraps miekg/dns's reader. miekg/dns answers FORMERR
// itself to a message it cannot parse, before egressd's handler and its
// ACL see it; the filter drops such messages from addresses outside
// Clients, so they get nothing from egressd but REFUSED. Clients inside
// the ACL pay one prefix check per message; only outsiders' messages are
// parsed an extra time.
func (s *Server) outsiderFilter(r dns.Reader) dns.Reader {
	return outsiderReader{Reader: r, s: s}
}

type outsiderReader struct {
	dns.Reader
	s *Server
}

var _ dns.PacketConnReader = outsiderReader{}

func (r outsiderReader) ReadUDP(conn *net.UDPConn, timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	for {
		m, session, err := r.Reader.ReadUDP(conn, timeout)
		if err != nil || r.s.admitMessage(m, session.RemoteAddr()) {
			return m, session, err
		}
	}
}

func (r outsiderReader) ReadPacketConn(conn net.PacketConn, timeout time.Duration) ([]byte, net.Addr, error) {
	pcr, ok := r.Reader.(dns.PacketConnReader)
	if !ok {
		return nil, nil, errors.New("resolver: reader cannot read a net.PacketConn")
	}
	for {
		m, from, err := pcr.ReadPacketConn(conn, timeout)
		if err != nil || r.s.admitMessage(m, from) {
			return m, from, err
		}
	}
}

// ReadTCP gives an outsider's connection one message, read within
// tcpReadTimeout (not the clients' idle timeout): the answer is REFUSED
// anyway, and the slot goes back to the outsiders' pool at once.
func (r outsiderReader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	if c, ok := conn.(*countedConn); ok && c.outsider {
		if c.read {
			return nil, errOutsiderDone
		}
		c.read = true
		timeout = min(timeout, tcpReadTimeout)
	}
	m, err := r.Reader.ReadTCP(conn, timeout)
	if err == nil && !r.s.admitMessage(m, conn.RemoteAddr()) {
		return nil, errOutsiderGarbage
	}
	return m, err
}

// admitMessage reports whether m from addr may go on to miekg/dns and the
// handler: always for clients, and for outsiders only when it parses (and
// will be answered REFUSED).
func (s *Server) admitMessage(m []byte, addr net.Addr) bool {
	client, _ := remote(addr)
	return s.admitMessageFrom(m, client)
}

func (s *Server) admitMessageFrom(m []byte, client netip.Addr) bool {
	if s.clientAllowed(client) {
		return true
	}
	var msg dns.Msg
	return msg.Unpack(m) == nil
}
