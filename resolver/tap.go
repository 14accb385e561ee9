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

// The hooks below cost a nil check when no Tap is set.

// tapWireQuery records a UDP query as read from the socket, before the
// rate limit: what the client asked, whatever becomes of it.
func (s *Server) tapWireQuery(w *udpResponse, msg []byte) {
	if t := s.opts.Tap; t != nil {
		t.ClientQuery(w.peer, addrPortOf(w.LocalAddr()), false, time.Now(), msg)
	}
}

// tapQuery records a query miekg/dns unpacked (TCP).
func (s *Server) tapQuery(w dns.ResponseWriter, req *dns.Msg, c caller) {
	if t := s.opts.Tap; t != nil {
		if msg, err := req.Pack(); err == nil {
			client, local := endpoints(w)
			t.ClientQuery(client, local, !c.udp, c.start, msg)
		}
	}
}

// tapResponse records the response written to the client of c.
func (s *Server) tapResponse(w dns.ResponseWriter, c caller, msg []byte) {
	if t := s.opts.Tap; t != nil {
		client, local := endpoints(w)
		t.ClientResponse(client, local, !c.udp, c.start, time.Now(), msg)
	}
}

// endpoints are the client's and egressd's address of the exchange w
// answers.
func endpoints(w dns.ResponseWriter) (client, local netip.AddrPort) {
	if u, ok := w.(*udpResponse); ok {
		return u.peer, addrPortOf(u.LocalAddr())
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
