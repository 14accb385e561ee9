package resolver

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// bindAttempts bounds the retries when port 0 gives TCP a port that is
// already taken on UDP.
const bindAttempts = 10

// udpReceiveBuffer is the receive buffer asked for on UDP listeners. The
// reader answers cache hits before it reads the next datagram, so a burst
// waits in the socket; the 208 KiB default holds fewer than 200 small
// queries. The kernel caps it at net.core.rmem_max.
const udpReceiveBuffer = 1 << 20

// bindPair binds addr on TCP and then UDP on the same port, so an address
// with port 0 still serves both transports on one port.
func bindPair(addr string) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, listenError("", addr, err)
	}
	for range bindAttempts {
		tcp, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, listenError("tcp", addr, err)
		}
		bound := tcp.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, fmt.Sprint(bound)))
		if err == nil {
			udp.(*net.UDPConn).SetReadBuffer(udpReceiveBuffer) // best effort: the default works, with drops in bursts
			return tcp, udp, nil
		}
		tcp.Close()
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, listenError("udp", addr, err)
		}
	}
	return nil, nil, fmt.Errorf("resolver: listen %s: no port free on both udp and tcp", addr)
}

// bindError is a failed bind, said once: net's errors already name the
// operation and address ("listen tcp A: bind: ..."), which wrapping them
// again would repeat.
type bindError struct {
	network, addr string
	err           error // the cause without net's own prefix
}

func (e *bindError) Error() string {
	where := e.addr
	if e.network != "" {
		where += " (" + e.network + ")"
	}
	msg := "resolver: cannot listen on " + where + ": " + e.err.Error()
	switch {
	case errors.Is(e.err, syscall.EADDRINUSE):
		msg += " (is another DNS server, such as systemd-resolved or dnsmasq, using it?)"
	case errors.Is(e.err, syscall.EACCES):
		msg += " (ports below 1024 need CAP_NET_BIND_SERVICE)"
	}
	return msg
}

func (e *bindError) Unwrap() error { return e.err }

func listenError(network, addr string, err error) error {
	var op *net.OpError
	var ae *net.AddrError
	switch {
	case errors.As(err, &op) && op.Err != nil:
		err = op.Err // e.g. "bind: address already in use"
	case errors.As(err, &ae):
		err = errors.New(ae.Err)
	}
	return &bindError{network: network, addr: addr, err: err}
}

func (s *Server) udpServer(pc net.PacketConn) *dns.Server {
	return &dns.Server{
		PacketConn:     pc,
		Handler:        s,
		UDPSize:        dns.MaxMsgSize,
		MsgAcceptFunc:  acceptQueries,
		DecorateReader: s.udpWorkersFilter,
	}
}

// tcpServer caps concurrent connections, in total and per client, with
// outsiders in a pool of their own: miekg/dns starts a goroutine per
// connection without limit and answers one query per connection at a time.
// The first query may take as long as a later one (the idle timeout);
// outsider.go shortens both for outsiders.
func (s *Server) tcpServer(l net.Listener) *dns.Server {
	idle, limits := s.connLimits()
	return &dns.Server{
		Listener:       newConnLimiter(l, limits, s.clientAllowed, s.log),
		Handler:        s,
		ReadTimeout:    idle,
		WriteTimeout:   tcpWriteTimeout,
		IdleTimeout:    func() time.Duration { return idle },
		MaxTCPQueries:  maxTCPQueries,
		MsgAcceptFunc:  acceptQueries,
		DecorateReader: s.outsiderFilter,
	}
}

// acceptQueries drops responses (answering them could start a loop) and
// passes everything else to ServeDNS, which applies the ACL before judging
// opcode and question count, so unknown clients learn nothing more than
// REFUSED.
func acceptQueries(h dns.Header) dns.MsgAcceptAction {
	if h.Bits&flagQR != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}
