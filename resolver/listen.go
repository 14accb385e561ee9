package resolver

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
)

// bindAttempts bounds the retries when port 0 gives TCP a port that is
// already taken on UDP.
const bindAttempts = 10

// bindPair binds addr on TCP and then UDP on the same port, so an address
// with port 0 still serves both transports on one port.
func bindPair(addr string) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("resolver: listen %q: %w", addr, err)
	}
	for range bindAttempts {
		tcp, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("resolver: listen tcp %s: %w", addr, err)
		}
		bound := tcp.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, fmt.Sprint(bound)))
		if err == nil {
			return tcp, udp, nil
		}
		tcp.Close()
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("resolver: listen udp %s: %w", addr, err)
		}
	}
	return nil, nil, fmt.Errorf("resolver: listen %s: no port free on both udp and tcp", addr)
}

func (s *Server) udpServer(pc net.PacketConn) *dns.Server {
	return &dns.Server{
		PacketConn:    pc,
		Handler:       s,
		UDPSize:       dns.MaxMsgSize,
		MsgAcceptFunc: acceptQueries,
	}
}

// tcpServer caps concurrent connections: miekg/dns starts a goroutine per
// connection without limit and answers one query per connection at a time.
func (s *Server) tcpServer(l net.Listener) *dns.Server {
	return &dns.Server{
		Listener:      netutil.LimitListener(l, maxTCPConns),
		Handler:       s,
		ReadTimeout:   tcpReadTimeout,
		WriteTimeout:  tcpReadTimeout,
		IdleTimeout:   func() time.Duration { return tcpIdleTimeout },
		MaxTCPQueries: maxTCPQueries,
		MsgAcceptFunc: acceptQueries,
	}
}

// acceptQueries drops responses (answering them could start a loop) and
// passes everything else to ServeDNS, which applies the ACL before judging
// opcode and question count, so unknown clients learn nothing more than
// REFUSED.
func acceptQueries(h dns.Header) dns.MsgAcceptAction {
	if h.Bits&(1<<15) != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}
