package resolver

import (
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/resolver/upstream"
)

// Tap receives copies of the DNS messages egressd exchanges, for dnstap
// (*dnstap.Output implements it): each query from a client as it arrives,
// each response as it is written, and, through upstream.Tap, each query
// to an upstream server and its reply. Every method must return at once
// (enqueue, never wait) and must not keep msg, whose buffer is reused.
type Tap interface {
	ClientQuery(client, local netip.AddrPort, tcp bool, received time.Time, msg []byte)
	ClientResponse(client, local netip.AddrPort, tcp bool, received, sent time.Time, msg []byte)
	upstream.Tap
}

// The hooks below are inlined: a nil check when no Tap is set, and the
// work in a call of its own when one is.

// tapWireQuery records a UDP query as read from the socket, before the
// rate limit: what the client asked, whatever becomes of it.
func (s *Server) tapWireQuery(w *udpResponse, msg []byte) {
	if s.opts.Tap != nil {
		s.tapDatagram(w, msg)
	}
}

func (s *Server) tapDatagram(w *udpResponse, msg []byte) {
	client, local := endpoints(w)
	s.opts.Tap.ClientQuery(client, local, false, time.Now(), msg)
}

// tapQuery records a query miekg/dns unpacked (TCP).
func (s *Server) tapQuery(w dns.ResponseWriter, req *dns.Msg, c caller) {
	if s.opts.Tap != nil {
		s.tapPacked(w, req, c)
	}
}

func (s *Server) tapPacked(w dns.ResponseWriter, req *dns.Msg, c caller) {
	if msg, err := req.Pack(); err == nil {
		client, local := endpoints(w)
		s.opts.Tap.ClientQuery(client, local, !c.udp, c.start, msg)
	}
}

// tapResponse records the response written to the client of c.
func (s *Server) tapResponse(w dns.ResponseWriter, c caller, msg []byte) {
	if s.opts.Tap != nil {
		s.tapWritten(w, c, msg)
	}
}

func (s *Server) tapWritten(w dns.ResponseWriter, c caller, msg []byte) {
	client, local := endpoints(w)
	s.opts.Tap.ClientResponse(client, local, !c.udp, c.start, time.Now(), msg)
}

// endpoints are the client's and egressd's address of the exchange w
// answers.
func endpoints(w dns.ResponseWriter) (client, local netip.AddrPort) {
	if u, ok := w.(*udpResponse); ok {
		if u.conn != nil { // nil only in benchmarks of the reader
			local = addrPortOf(u.conn.LocalAddr())
		}
		return u.peer, local
	}
	return addrPortOf(w.RemoteAddr()), addrPortOf(w.LocalAddr())
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
