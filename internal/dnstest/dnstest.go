// Package dnstest provides scripted fake upstream DNS servers for tests:
// plain DNS over UDP and TCP, DNS over TLS and DNS over HTTPS, all on
// loopback ports, with a throw-away PKI and handlers for common scripts.
// Any package of the module can import it; nothing outside tests should.
package dnstest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Handler answers one query; udp tells the transport it came over.
type Handler func(w dns.ResponseWriter, r *dns.Msg, udp bool)

// Server is an in-process DNS server on one loopback port, UDP and TCP,
// answering with the handler a test gives it.
type Server struct {
	Addr    string       // host:port, the same port on UDP and TCP
	Queries atomic.Int32 // queries received, both transports

	mu   sync.Mutex
	seen []*dns.Msg // every query received, in order
}

// Start serves h on 127.0.0.1 until the test ends.
func Start(t testing.TB, h Handler) *Server {
	t.Helper()
	tcp, udp, err := bindPair()
	if err != nil {
		t.Fatal(err)
	}
	u := &Server{Addr: tcp.Addr().String()}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.Queries.Add(1)
		u.mu.Lock()
		u.seen = append(u.seen, r.Copy())
		u.mu.Unlock()
		_, isUDP := w.RemoteAddr().(*net.UDPAddr)
		h(w, r, isUDP)
	})
	servers := []*dns.Server{
		{PacketConn: udp, Handler: handler, UDPSize: dns.MaxMsgSize},
		{Listener: tcp, Handler: handler, ReadTimeout: time.Second},
	}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

// bindPair binds a free loopback port on TCP and then the same port on
// UDP, retrying when UDP has it taken.
func bindPair() (net.Listener, net.PacketConn, error) {
	for range 10 {
		tcp, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		udp, err := net.ListenPacket("udp", tcp.Addr().String())
		if err == nil {
			return tcp, udp, nil
		}
		tcp.Close()
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("dnstest: no loopback port free on both udp and tcp")
}

// LastQuery is the last query received, nil before the first.
func (u *Server) LastQuery() *dns.Msg {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

// Forget drops the copies of the queries received so far, which a test
// that sends many may not want counted as its own memory.
func (u *Server) Forget() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seen = nil
}

// StaticAnswer answers every query with rcode and the given records (zone
// file syntax), in the answer and authority sections.
func StaticAnswer(t testing.TB, rcode int, answer, authority []string) Handler {
	t.Helper()
	an, ns := MustRRs(t, answer), MustRRs(t, authority)
	return func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		m.Answer, m.Ns = an, ns
		w.WriteMsg(m)
	}
}

// Silent never answers, so the client times out.
func Silent(dns.ResponseWriter, *dns.Msg, bool) {}

// AddressFor answers every query with an A record of ip for the name
// asked.
func AddressFor(t testing.TB, ip string) Handler {
	return func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = MustRRs(t, []string{r.Question[0].Name + " 60 IN A " + ip})
		w.WriteMsg(m)
	}
}

// BootstrapAnswers answers ServerName through a CNAME to edge.test with
// 127.0.0.1 (TTL 5) and no AAAA, and NXDOMAIN for any other name; while
// mute is set it does not answer at all.
func BootstrapAnswers(t testing.TB, mute *atomic.Bool) Handler {
	chain := MustRRs(t, []string{ServerName + ". 5 IN CNAME edge.test.", "edge.test. 5 IN A 127.0.0.1", "other.test. 5 IN A 198.51.100.66"})
	return func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		if mute != nil && mute.Load() {
			return
		}
		m := new(dns.Msg)
		m.SetReply(r)
		switch {
		case dns.CanonicalName(r.Question[0].Name) != ServerName+".":
			m.Rcode = dns.RcodeNameError
		case r.Question[0].Qtype == dns.TypeA:
			m.Answer = chain
		default:
			m.Answer = chain[:1]
		}
		w.WriteMsg(m)
	}
}

// Spoofing answers a.example. with a burst of replies a client must all
// ignore (wrong ID, name, type, class, no QR bit, no question, garbage),
// carrying 198.51.100.66, and then, with genuine, the real reply with
// 192.0.2.1 and the name in other case.
func Spoofing(t testing.TB, genuine bool) Handler {
	evil := MustRRs(t, []string{"a.example. 300 IN A 198.51.100.66"})
	good := MustRRs(t, []string{"a.example. 300 IN A 192.0.2.1"})
	return func(w dns.ResponseWriter, r *dns.Msg, _ bool) {
		send := func(mutate func(m *dns.Msg)) {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Answer = evil
			mutate(m)
			w.WriteMsg(m)
		}
		send(func(m *dns.Msg) { m.Id++ })
		send(func(m *dns.Msg) { m.Question[0].Name = "evil.example." })
		send(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA })
		send(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
		send(func(m *dns.Msg) { m.Response = false })
		send(func(m *dns.Msg) { m.Question = nil })
		w.Write([]byte{0xde, 0xad, 0xbe, 0xef, 0x81, 0x80, 0, 1}) // does not parse
		if genuine {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Question[0].Name = "A.EXAMPLE." // case differs: still a match
			m.Answer = good
			w.WriteMsg(m)
		}
	}
}

// MustRRs parses records in zone file syntax.
func MustRRs(t testing.TB, texts []string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	for _, s := range texts {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad test record %q: %v", s, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

// AnswerData lists the answer records' data (addresses), for comparisons.
func AnswerData(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		default:
			out = append(out, rr.String())
		}
	}
	return out
}

// WaitFor polls cond until it holds, failing the test after 3 seconds.
func WaitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
