package dnstest

import (
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepted *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// DoTServer is an in-process DNS-over-TLS server on a loopback port.
type DoTServer struct {
	Port     string
	Accepted atomic.Int32 // connections
	Queries  atomic.Int32
}

// StartDoT serves h over TLS with pki's certificate until the test ends.
// Connections are never closed after a number of queries.
func StartDoT(t testing.TB, pki *PKI, h Handler) *DoTServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &DoTServer{}
	_, s.Port, _ = net.SplitHostPort(ln.Addr().String())
	srv := &dns.Server{
		Net:      "tcp-tls",
		Listener: tls.NewListener(countingListener{ln, &s.Accepted}, pki.ServerConfig()),
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			s.Queries.Add(1)
			h(w, r, false)
		}),
		ReadTimeout: 5 * time.Second,
		// Unlimited: by default miekg/dns closes a connection after 128
		// queries, which would hide how connections are reused.
		MaxTCPQueries: -1,
	}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return s
}

// URL is the server's address as a tls:// upstream, with host in place of
// the listening IP and an optional #serverName.
func (s *DoTServer) URL(host, serverName string) string {
	u := "tls://" + net.JoinHostPort(host, s.Port)
	if serverName != "" {
		u += "#" + serverName
	}
	return u
}
